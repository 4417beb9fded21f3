"""Solana W3Auth verifier, compatible with Crust's tweetnacl + bs58 check (here PyNaCl + base58).

A token is ``sol-<base58 ed25519 public key>:<signature hex>``: the Phantom ``signMessage`` of the
UTF-8 address, hex-encoded. The hex is read the Node way (trailing junk ignored, a ``0x`` prefix makes
it empty). ``near``/``nea`` tokens use the same check in Crust but are served by the separate NEAR plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import base58

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, hookimpl
from w3gate.w3auth.ed25519 import ed25519_valid
from w3gate.w3auth.nodecodec import node_hex

NAME = "solana"
ALIASES = ("solana", "sol")


class SolanaChain:
    """Verifies ``sol-`` tokens; the identity is the base58 public key."""

    name = NAME
    aliases = ALIASES

    def verify(self, credentials: Credentials) -> Identity | None:
        address = credentials.address
        key = _public_key(address)
        sig = node_hex(credentials.signature)
        if len(sig) != 64:
            raise InvalidSignature(f"signature is {len(sig)} bytes, not 64")
        if not ed25519_valid(key, address.encode(), sig):
            return None
        return Identity(chain=NAME, account=base58.b58encode(key).decode(), address=address)

    def identity_of(self, address: str) -> Identity | None:
        """The user of a base58 public key, without a signature."""
        try:
            key = base58.b58decode(address.strip())
        except ValueError:
            return None
        return Identity(chain=NAME, account=base58.b58encode(key).decode(), address=address) if len(key) == 32 else None

    sign_in = "Solana"

    def verify_sign_in(self, address: str, message: bytes, signature: bytes) -> Identity | None:
        """Sign-In with Solana: ed25519 over the message bytes (Phantom's signIn / signMessage)."""
        key = _public_key(address)
        if len(signature) != 64:
            raise InvalidSignature(f"signature is {len(signature)} bytes, not 64")
        if not ed25519_valid(key, message, signature):
            return None
        return Identity(chain=NAME, account=base58.b58encode(key).decode(), address=address)


def _public_key(address: str) -> bytes:
    try:
        key = base58.b58decode(address)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise InvalidSignature("address is not a base58 32-byte public key")
    return key


@hookimpl
def w3gate_chains(settings: Mapping[str, Any]) -> list[SolanaChain]:
    return [SolanaChain()]


@hookimpl
def w3gate_signers(settings: Mapping[str, Any]) -> list[Any]:
    from w3gate.signers.solana import SolanaSigner

    return [SolanaSigner()]
