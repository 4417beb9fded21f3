"""NEAR for w3gate: an ed25519 signature by a NEAR key over the text of its public key.

Token (Crust-compatible): ``near-<base58 public key>:<hex signature>`` (also ``nea-``), made with
near-api-js ``KeyPair.sign(utf8(publicKeyBase58))``. The "address" is the public key *without* the
``ed25519:`` prefix (its ``:`` would split the token); named and implicit (hex) account ids cannot be
used, because nothing offline maps them to a key. The signature is read as Node hex, as Crust did.
Identity: ``("near", base58 public key)``.
"""

from __future__ import annotations

import base58

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, SimpleChain, hookimpl
from w3gate.w3auth.ed25519 import ed25519_valid
from w3gate.w3auth.nodecodec import node_hex

__version__ = "0.1.0"
NAME = "near"
ALIASES = ("near", "nea")


def verify(credentials: Credentials) -> Identity:
    address = credentials.address
    try:
        public_key = base58.b58decode(address)
    except ValueError as exc:
        raise InvalidSignature("near: address is not base58") from exc
    if len(public_key) != 32:
        raise InvalidSignature("near: address is not a 32-byte ed25519 public key")
    signature = node_hex(credentials.signature)
    if len(signature) != 64:
        raise InvalidSignature("near: signature is not 64 bytes of hex")
    if not ed25519_valid(public_key, address.encode(), signature):
        raise InvalidSignature("near: signature does not verify")
    return Identity(NAME, base58.b58encode(public_key).decode(), address)


@hookimpl
def w3gate_chains() -> list[SimpleChain]:
    return [SimpleChain(NAME, ALIASES, verify)]
