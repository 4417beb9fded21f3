"""Solana W3Auth verifier, compatible with Crust's tweetnacl + bs58 check.

A token is ``sol-<base58 ed25519 public key>:<signature hex>``: the Phantom ``signMessage`` of the
UTF-8 address, hex-encoded. The hex is read the Node way (trailing junk ignored, a ``0x`` prefix makes
it empty). ``near``/``nea`` tokens use the same check in Crust but are served by the separate NEAR plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from solders.pubkey import Pubkey
from solders.signature import Signature

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, hookimpl
from w3gate.w3auth.nodecodec import node_hex

NAME = "solana"
ALIASES = ("solana", "sol")


class SolanaChain:
    """Verifies ``sol-`` tokens; the identity is the base58 public key."""

    name = NAME
    aliases = ALIASES

    def verify(self, credentials: Credentials) -> Identity | None:
        address = credentials.address
        try:
            pubkey = Pubkey.from_string(address)
        except ValueError:
            raise InvalidSignature("address is not a base58 32-byte public key") from None
        sig = node_hex(credentials.signature)
        if len(sig) != 64:
            raise InvalidSignature(f"signature is {len(sig)} bytes, not 64")
        if not Signature.from_bytes(sig).verify(pubkey, address.encode()):
            return None
        return Identity(chain=NAME, account=str(pubkey), address=address)


@hookimpl
def w3gate_chains(settings: Mapping[str, Any]) -> list[SolanaChain]:
    return [SolanaChain()]
