// The two token formats: bound (docs/tokens.md, `w3b1.`: a Sign-In-with-X message and its signature) and
// plain W3Auth (base64 of `<chain>-<address>:<signature of the address>`).

import { base64, base64url, fromBase64url, toHex, utf8 } from './encoding';

export type Chain = 'ethereum' | 'substrate' | 'solana';

/** What GET /auth/params says (absent when the server has no bound tokens). */
export interface AuthParams {
  domain: string;
  uri: string;
  psa: string;
  statement: string;
  default_ttl: number;
  max_ttl: number;
  w3auth: boolean;
}

/** A connected wallet account that can sign text. */
export interface Signer {
  chain: Chain;
  address: string;
  label?: string; // how the wallet names the account
  chainId?: number; // Ethereum's chain id (SIWE requires one)
  sign(text: string): Promise<Uint8Array>;
}

export interface Token {
  text: string;
  kind: 'bound' | 'w3auth';
  chain: string; // a wallet's Chain, or what a pasted token names (a plugin's chain too)
  address: string;
  issuedAt?: string;
  expiresAt?: string;
}

const ACCOUNT_NAME: Record<Chain, string> = { ethereum: 'Ethereum', substrate: 'Substrate', solana: 'Solana' };
const W3AUTH_PREFIX: Record<Chain, string> = { ethereum: 'eth', substrate: 'sub', solana: 'sol' };

export function nonce(length = 16): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let out = '';
  while (out.length < length) {
    for (const b of crypto.getRandomValues(new Uint8Array(length))) {
      if (b < 248 && out.length < length) out += alphabet[b % 62]; // 248 = 4 * 62: no bias
    }
  }
  return out;
}

/** The EIP-4361-shaped message (SIWE / SIWS for Substrate / Sign In With Solana). */
export function signInMessage(p: AuthParams, chain: Chain, address: string, issued: Date, ttlSeconds: number,
  chainId?: number): string {
  const lines = [
    `${p.domain} wants you to sign in with your ${ACCOUNT_NAME[chain]} account:`,
    address,
    '',
    p.statement,
    '',
    `URI: ${p.uri}`,
    'Version: 1',
  ];
  if (chain === 'ethereum') lines.push(`Chain ID: ${chainId ?? 1}`);
  lines.push(`Nonce: ${nonce()}`, `Issued At: ${issued.toISOString()}`,
    `Expiration Time: ${new Date(issued.getTime() + ttlSeconds * 1000).toISOString()}`);
  return lines.join('\n');
}

/** A bound token signed now; `issued` dates it later (after a revocation: from the first instant it lets through). */
export async function boundToken(p: AuthParams, signer: Signer, ttlSeconds: number,
  issued: Date = new Date()): Promise<Token> {
  const message = signInMessage(p, signer.chain, signer.address, issued, ttlSeconds, signer.chainId);
  const signature = await signer.sign(message);
  return {
    text: `w3b1.${base64url(utf8(message))}.${base64url(signature)}`,
    kind: 'bound', chain: signer.chain, address: signer.address,
    issuedAt: issued.toISOString(), expiresAt: new Date(issued.getTime() + ttlSeconds * 1000).toISOString(),
  };
}

export async function w3authToken(signer: Signer): Promise<Token> {
  const signature = await signer.sign(signer.address);
  const sig = signer.chain === 'solana' ? toHex(signature) : `0x${toHex(signature)}`;
  const text = base64(utf8(`${W3AUTH_PREFIX[signer.chain]}-${signer.address}:${sig}`));
  return { text, kind: 'w3auth', chain: signer.chain, address: signer.address };
}

const CHAIN_OF_PREFIX: Record<string, string> = { eth: 'ethereum', sub: 'substrate', sol: 'solana' };

/** What a pasted token says of itself (w3gate token's, another browser's): its kind, chain and address, for
 *  display only. Nothing here is trusted: the server checks the signature when the token is used. */
export function describeToken(text: string): Token | null {
  if (text.startsWith('w3b1.')) {
    const parts = text.split('.');
    if (parts.length !== 3) return null;
    let message: string;
    try {
      message = new TextDecoder('utf-8', { fatal: true }).decode(fromBase64url(parts[1]));
    } catch {
      return null;
    }
    const lines = message.split('\n');
    const header = /^\S+ wants you to sign in with your ([A-Za-z]+) account:$/.exec(lines[0]);
    if (!header || !lines[1]) return null;
    const field = (name: string) => lines.find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
    const date = (value?: string) => (value && !Number.isNaN(Date.parse(value)) ? value : undefined);
    return { text, kind: 'bound', chain: header[1].toLowerCase(), address: lines[1],
      issuedAt: date(field('Issued At')), expiresAt: date(field('Expiration Time')) };
  }
  let decoded: string;
  try {
    decoded = new TextDecoder('utf-8', { fatal: true }).decode(fromBase64url(text.replace(/=+$/, '')));
  } catch {
    return null;
  }
  const m = /^([^-:]+)-([^-:]+)[^:]*:./s.exec(decoded); // <chain type>-<address>[-<extra>]:<signature>
  if (!m) return null;
  const type = m[1].trim().toLowerCase();
  return { text, kind: 'w3auth', chain: CHAIN_OF_PREFIX[type] ?? type, address: m[2] };
}

/** The issued-at time of a bound token (for revocation: the server wants one issued in the last 10 minutes). */
export function issuedAtOf(token: string): Date | null {
  if (!token.startsWith('w3b1.')) return null;
  try {
    const message = new TextDecoder().decode(fromBase64url(token.split('.')[1]));
    const m = /^Issued At: (.+)$/m.exec(message);
    return m ? new Date(m[1]) : null;
  } catch {
    return null;
  }
}
