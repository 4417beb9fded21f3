"""Avalanche for w3gate: a secp256k1 "sign message" signature by an X-/P-chain key over its address.

Token (Crust-compatible): ``ava-<avax1 address>:<cb58 signature>`` (also ``avalanche-``). The address is
the bech32 ``avax1…`` form *without* the ``X-``/``P-`` chain prefix (its ``-`` would split the token).
The digest is the Avalanche wallet's: ``sha256("\\x1AAvalanche Signed Message:\\n" + uint32_be(len(A)) + A)``
over the token's address text; the signature is cb58 (base58 of r‖s‖recovery id plus a 4-byte sha256
checksum). The recovered key's address (``ripemd160(sha256(compressed key))``, bech32, hrp ``avax``) must
equal the token's address, compared case-insensitively. Fuji (``fuji1…``) addresses never pass, as in Crust.
Identity: ``("avalanche", lower-case avax1 address)``.
"""

from __future__ import annotations

import hashlib

import base58
import bech32
from coincurve import PublicKey
from Crypto.Hash import RIPEMD160

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, SimpleChain, hookimpl

__version__ = "0.1.0"
NAME = "avalanche"
ALIASES = ("avalanche", "ava")
HRP = "avax"
MESSAGE_PREFIX = b"\x1aAvalanche Signed Message:\n"


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def cb58_decode(text: str) -> bytes:
    """cb58 (avalanche.js ``bintools.cb58Decode``): base58 with the last 4 bytes of sha256 as checksum."""
    raw = base58.b58decode(text)
    payload, checksum = raw[:-4], raw[-4:]
    if len(raw) < 4 or _sha256(payload)[-4:] != checksum:
        raise ValueError("bad cb58 checksum")
    return payload


def message_digest(address: str) -> bytes:
    text = address.encode()
    return _sha256(MESSAGE_PREFIX + len(text).to_bytes(4, "big") + text)


def address_of(public_key: PublicKey) -> str:
    key_hash = RIPEMD160.new(_sha256(public_key.format(compressed=True))).digest()  # OpenSSL 3 may lack it
    return bech32.bech32_encode(HRP, bech32.convertbits(key_hash, 8, 5))


def verify(credentials: Credentials) -> Identity:
    address = credentials.address
    if len(address.encode()) >= 128:  # Crust's length encoding only matches the wallet's below 128
        raise InvalidSignature("avalanche: address too long")
    try:
        signature = cb58_decode(credentials.signature)
    except ValueError as exc:
        raise InvalidSignature("avalanche: signature is not cb58") from exc
    if len(signature) != 65 or signature[64] > 3:
        raise InvalidSignature("avalanche: signature is not r|s|recovery id")
    try:
        public_key = PublicKey.from_signature_and_message(signature, message_digest(address), hasher=None)
    except ValueError as exc:
        raise InvalidSignature("avalanche: no key recovers from the signature") from exc
    recovered = address_of(public_key)
    if recovered != address.strip().lower():
        raise InvalidSignature("avalanche: signature is by another key")
    return Identity(NAME, recovered, address)


@hookimpl
def w3gate_chains() -> list[SimpleChain]:
    return [SimpleChain(NAME, ALIASES, verify)]
