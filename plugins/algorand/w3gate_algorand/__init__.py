"""Algorand for w3gate: an algosdk ``signBytes`` signature over the account address.

Token (Crust-compatible): ``algo-<address>:<base64 signature>`` (also ``algorand-``). The address is the
standard 58-character base32 form (upper case, checksum enforced); the signed bytes are ``"MX" + address``,
which is what algosdk ``signBytes(utf8(address))`` signs (the ``MX`` domain prefix keeps such signatures
apart from transactions). The signature is read as Node base64 (padding optional), as Crust did.
Identity: ``("algorand", address)``.

The address codec is the documented one (base32 of the key and the last 4 bytes of its SHA-512/256),
written with the standard library so that the plugin needs nothing the w3gate binary lacks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, SimpleChain, hookimpl
from w3gate.w3auth.ed25519 import ed25519_valid
from w3gate.w3auth.nodecodec import node_base64

__version__ = "0.1.0"
NAME = "algorand"
ALIASES = ("algorand", "algo")
ADDRESS_LENGTH = 58
SIGN_BYTES_PREFIX = b"MX"


def _checksum(public_key: bytes) -> bytes:
    return hashlib.new("sha512_256", public_key).digest()[-4:]


def encode_address(public_key: bytes) -> str:
    return base64.b32encode(public_key + _checksum(public_key)).decode().rstrip("=")


def decode_address(address: str) -> bytes:
    """The public key of a standard Algorand address; ValueError if malformed or the checksum fails."""
    if len(address) != ADDRESS_LENGTH:
        raise ValueError("an Algorand address has 58 characters")
    try:
        raw = base64.b32decode(address + "=" * (-len(address) % 8))
    except binascii.Error as exc:
        raise ValueError("not upper-case base32") from exc
    public_key, checksum = raw[:32], raw[32:]
    if len(public_key) != 32 or checksum != _checksum(public_key):
        raise ValueError("bad address checksum")
    return public_key


def verify(credentials: Credentials) -> Identity:
    try:
        public_key = decode_address(credentials.address)
    except ValueError as exc:
        raise InvalidSignature(f"algorand: {exc}") from exc
    signature = node_base64(credentials.signature)
    if len(signature) != 64:
        raise InvalidSignature("algorand: signature is not 64 bytes of base64")
    if not ed25519_valid(public_key, SIGN_BYTES_PREFIX + credentials.address.encode(), signature):
        raise InvalidSignature("algorand: signature does not verify")
    return Identity(NAME, encode_address(public_key), credentials.address)


@hookimpl
def w3gate_chains() -> list[SimpleChain]:
    return [SimpleChain(NAME, ALIASES, verify)]
