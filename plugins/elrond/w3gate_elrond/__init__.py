"""MultiversX (Elrond) for w3gate: a wallet ``signMessage`` of the account's own address.

Token (Crust's form): ``elr-<address>-<T hex>:<signature hex>`` (also ``elrond-``). The address is the
bech32 ``erd1…`` form or the 64-hex-digit public key. Crust verified the ed25519 signature over whatever
bytes T the client sent, so any signature the key ever made (say, of a public on-chain transaction)
authenticated (FORMAT.md section 5, item 4). w3gate accepts T only when it is *bound to the address*: T
must be the digest a MultiversX wallet signs for ``signMessage(address)``, i.e.
``keccak256("\\x17Elrond Signed Message:\\n" + len(m) + m)`` with ``m`` the ``erd1…`` address (or the
address text exactly as the token gives it). Identity: ``("elrond", erd1 address)``.
"""

from __future__ import annotations

import bech32
from Crypto.Hash import keccak

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, SimpleChain, hookimpl
from w3gate.w3auth.ed25519 import ed25519_valid
from w3gate.w3auth.nodecodec import node_hex

__version__ = "0.1.0"
NAME = "elrond"
ALIASES = ("elrond", "elr")
HRP = "erd"
MESSAGE_PREFIX = b"\x17Elrond Signed Message:\n"


def signed_message_digest(message: bytes) -> bytes:
    """What a MultiversX wallet/SDK actually signs for ``signMessage(message)``."""
    return keccak.new(digest_bits=256, data=MESSAGE_PREFIX + str(len(message)).encode() + message).digest()


def encode_address(public_key: bytes) -> str:
    return bech32.bech32_encode(HRP, bech32.convertbits(public_key, 8, 5))


def decode_address(address: str) -> bytes:
    """erdjs ``Address``: bech32 with hrp ``erd`` and a 32-byte payload, or 32 bytes of (Node) hex."""
    hrp, data = bech32.bech32_decode(address)
    if hrp is not None and data is not None:
        public_key = bytes(bech32.convertbits(data, 5, 8, False) or b"")
        if hrp != HRP or len(public_key) != 32:
            raise ValueError("not an erd1 address of a 32-byte key")
        return public_key
    public_key = node_hex(address)
    if len(public_key) != 32:
        raise ValueError("neither an erd1 address nor a 32-byte hex public key")
    return public_key


def verify(credentials: Credentials) -> Identity:
    try:
        public_key = decode_address(credentials.address)
    except ValueError as exc:
        raise InvalidSignature(f"elrond: {exc}") from exc
    if not credentials.extra:
        raise InvalidSignature("elrond: the signed message is missing")
    signed = node_hex(credentials.extra[0])
    canonical = encode_address(public_key)
    bound = {signed_message_digest(canonical.encode()), signed_message_digest(credentials.address.encode())}
    if signed not in bound:
        raise InvalidSignature("elrond: the signed message is not signMessage(address)")
    signature = node_hex(credentials.signature)
    if len(signature) != 64:
        raise InvalidSignature("elrond: signature is not 64 bytes of hex")
    if not ed25519_valid(public_key, signed, signature):
        raise InvalidSignature("elrond: signature does not verify")
    return Identity(NAME, canonical, credentials.address)


@hookimpl
def w3gate_chains() -> list[SimpleChain]:
    return [SimpleChain(NAME, ALIASES, verify)]
