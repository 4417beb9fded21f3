"""secp256k1 public-key recovery shared by the ethereum and substrate verifiers.

Recovery is done with coincurve (libsecp256k1) directly: it is the fastest option, and unlike
eth-account it lets us feed exactly the (r, s, recid) the reference libraries derive (EIP-2098 compact
signatures, recid 2/3 for substrate, high-s). libsecp256k1's recovery does not enforce low-s, like
ethers and elliptic.
"""

from __future__ import annotations

import hashlib

import coincurve
from eth_hash.auto import keccak

from w3gate.hookspecs import Identity

__all__ = ["recover", "keccak256", "eth_address_bytes", "key_identity", "substrate_account_id"]


def keccak256(data: bytes) -> bytes:
    return keccak(data)


def recover(msg_hash: bytes, rs: bytes, recid: int) -> coincurve.PublicKey | None:
    """The public key that signed ``msg_hash`` with 64-byte ``r||s`` and ``recid`` 0-3, or None."""
    if len(rs) != 64 or not 0 <= recid <= 3 or len(msg_hash) != 32:
        return None
    try:
        return coincurve.PublicKey.from_signature_and_message(rs + bytes([recid]), msg_hash, hasher=None)
    except Exception:  # r or s out of range, point not on the curve: no key
        return None


def eth_address_bytes(public_key: coincurve.PublicKey) -> bytes:
    """The 20-byte Ethereum address of a key: the last 20 bytes of keccak256(x||y)."""
    return keccak256(public_key.format(compressed=False)[1:])[-20:]


def substrate_account_id(public_key: coincurve.PublicKey) -> bytes:
    """The Substrate account id of an ECDSA key: blake2-256 of its 33-byte compressed form."""
    return hashlib.blake2b(public_key.format(compressed=True), digest_size=32).digest()


def key_identity(public_key: coincurve.PublicKey, address: str) -> Identity:
    """The user of a secp256k1 key, whichever family signed (``eth-``, Substrate ECDSA or Ethereum-style):
    the ``ethereum`` identity of its address; its Substrate ECDSA account id (what such a key was keyed by
    before) is an alias, so the operator's lists and settings naming it still apply."""
    return Identity(chain="ethereum", account="0x" + eth_address_bytes(public_key).hex(), address=address,
                    aliases=(f"substrate:0x{substrate_account_id(public_key).hex()}",))
