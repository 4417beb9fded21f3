// The polkadot.js extension family (polkadot.js, Talisman, SubWallet): loaded only when chosen, as its
// own chunk (the SS58 code is most of the page's script).

import { web3Accounts, web3Enable, web3FromAddress } from '@polkadot/extension-dapp';
import { stringToHex } from '@polkadot/util';

export interface Account { address: string; name?: string; source: string }

export async function accounts(appName: string): Promise<Account[]> {
  const extensions = await web3Enable(appName);
  if (!extensions.length) {
    throw new Error('no Polkadot extension answered: install polkadot.js, Talisman or SubWallet and allow this site');
  }
  // Substrate keys only: an extension's Ethereum accounts sign in through the Ethereum button
  const found = await web3Accounts({ accountType: ['sr25519', 'ed25519', 'ecdsa'] });
  return found.map((a) => ({ address: a.address, name: a.meta.name, source: a.meta.source }));
}

/** signRaw of the text's bytes; extensions sign them `<Bytes>`-wrapped, which the server accepts. */
export async function signText(address: string, text: string): Promise<string> {
  const injected = await web3FromAddress(address);
  if (!injected.signer.signRaw) throw new Error(`${injected.name} cannot sign raw messages`);
  const { signature } = await injected.signer.signRaw({ address, data: stringToHex(text), type: 'bytes' });
  return signature;
}
