"""Solana keys as Phantom and solana-keygen have them: a BIP39 mnemonic on m/44'/501'/0'/0' (Phantom's first
account, SLIP-0010 ed25519 derivation), Phantom's exported base58 64-byte keypair, solana-keygen's JSON array
file, or a 32-byte ed25519 seed in hex (PyNaCl signs)."""

from __future__ import annotations

import hashlib
import hmac
import json

import base58
from eth_account.hdaccount import seed_from_mnemonic
from nacl.signing import SigningKey

from w3gate.signers import HEX_32, from_hex, is_mnemonic, words

PATH = (44, 501, 0, 0)  # every level hardened: ed25519 SLIP-0010 has no other kind


def slip10_ed25519(seed: bytes, path: tuple[int, ...] = PATH) -> bytes:
    """The ed25519 private seed at ``path`` (all hardened) under a BIP39 seed (SLIP-0010)."""
    digest = hmac.new(b"ed25519 seed", seed, hashlib.sha512).digest()
    key, chain_code = digest[:32], digest[32:]
    for index in path:
        data = b"\x00" + key + (index | 0x80000000).to_bytes(4, "big")
        digest = hmac.new(chain_code, data, hashlib.sha512).digest()
        key, chain_code = digest[:32], digest[32:]
    return key


class SolanaKey:
    def __init__(self, seed: bytes) -> None:
        self._key = SigningKey(seed)
        self.address: str = base58.b58encode(bytes(self._key.verify_key)).decode()

    def __repr__(self) -> str:
        return f"SolanaKey({self.address})"

    def w3auth_credentials(self) -> str:
        return f"sol-{self.address}:{self.sign(self.address.encode()).hex()}"

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)


def _keypair(raw: bytes) -> bytes:
    """The seed of a 64-byte secret||public keypair, checked against its public half."""
    if len(raw) != 64:
        raise ValueError(f"a keypair is 64 bytes, this is {len(raw)}")
    if bytes(SigningKey(raw[:32]).verify_key) != raw[32:]:
        raise ValueError("the keypair's public half does not match its secret half")
    return raw[:32]


class SolanaSigner:
    name = "solana"
    sign_in: str | None = "Solana"

    def load(self, secret: str) -> SolanaKey:
        secret = secret.strip()
        try:
            if secret.startswith("["):
                return SolanaKey(_keypair(bytes(json.loads(secret))))
            if HEX_32.fullmatch(secret):
                return SolanaKey(from_hex(secret))
            if is_mnemonic(secret):
                return SolanaKey(slip10_ed25519(seed_from_mnemonic(words(secret), "")))
            return SolanaKey(_keypair(base58.b58decode(secret)))
        except Exception as exc:
            cause = str(exc) if isinstance(exc, ValueError) and "keypair" in str(exc) else "unreadable"
            raise ValueError(
                "not a solana secret: expected a BIP39 mnemonic, a base58 64-byte keypair, a solana-keygen JSON "
                f"array or a 32-byte seed in hex ({cause})"
            ) from None
