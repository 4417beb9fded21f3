// Wallet connectors: each returns the accounts a wallet offers, as Signers of text.

import { keccak_256 } from '@noble/hashes/sha3.js';

import { fromHex, toHex, utf8 } from './encoding';
import type { Signer } from './tokens';

const APP_NAME = 'w3gate';

interface Eip1193 { request(args: { method: string; params?: unknown[] }): Promise<unknown> }
interface SolanaProvider {
  publicKey?: { toString(): string } | null;
  connect(): Promise<{ publicKey: { toString(): string } }>;
  signMessage(message: Uint8Array, display?: string): Promise<{ signature: Uint8Array }>;
}
declare global {
  interface Window {
    ethereum?: Eip1193;
    solana?: SolanaProvider;
    phantom?: { solana?: SolanaProvider };
    injectedWeb3?: Record<string, unknown>;
  }
}

export type WalletKind = 'polkadot' | 'ethereum' | 'solana';

export function available(kind: WalletKind): boolean {
  if (kind === 'ethereum') return !!window.ethereum;
  if (kind === 'solana') return !!(window.phantom?.solana ?? window.solana);
  return Object.keys(window.injectedWeb3 ?? {}).length > 0;
}

/** EIP-55 mixed-case checksum: SIWE requires it, and wallets often report lower case. */
export function checksumAddress(address: string): string {
  const lower = address.toLowerCase().replace(/^0x/, '');
  const hash = toHex(keccak_256(utf8(lower)));
  return '0x' + Array.from(lower, (c, i) => (parseInt(hash[i], 16) >= 8 ? c.toUpperCase() : c)).join('');
}

async function ethereumSigners(): Promise<Signer[]> {
  const provider = window.ethereum;
  if (!provider) throw new Error('no Ethereum wallet (window.ethereum) in this browser: install MetaMask or another');
  const addresses = (await provider.request({ method: 'eth_requestAccounts' })) as string[];
  const chainId = parseInt((await provider.request({ method: 'eth_chainId' })) as string, 16) || 1;
  return addresses.map((raw) => {
    const address = checksumAddress(raw);
    return {
      chain: 'ethereum', address, chainId,
      // personal_sign (EIP-191) of the text, passed hex-encoded as MetaMask documents
      sign: async (text: string) => fromHex((await provider.request({
        method: 'personal_sign', params: ['0x' + toHex(utf8(text)), address],
      })) as string),
    };
  });
}

async function solanaSigners(): Promise<Signer[]> {
  const provider = window.phantom?.solana ?? window.solana;
  if (!provider) throw new Error('no Solana wallet (Phantom) in this browser');
  const { publicKey } = await provider.connect();
  const address = publicKey.toString();
  return [{
    chain: 'solana', address,
    sign: async (text: string) => new Uint8Array((await provider.signMessage(utf8(text), 'utf8')).signature),
  }];
}

async function polkadotSigners(): Promise<Signer[]> {
  const polkadot = await import('./polkadot');
  const accounts = await polkadot.accounts(APP_NAME);
  if (!accounts.length) throw new Error('the extension shares no Substrate account with this site');
  return accounts.map((a) => ({
    chain: 'substrate', address: a.address, label: `${a.name ?? a.address} (${a.source})`,
    sign: async (text: string) => fromHex(await polkadot.signText(a.address, text)),
  }));
}

export function connect(kind: WalletKind): Promise<Signer[]> {
  return { polkadot: polkadotSigners, ethereum: ethereumSigners, solana: solanaSigners }[kind]();
}
