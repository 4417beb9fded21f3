"""NEAR for w3gate: an ed25519 signature by a NEAR key over the text of its public key.

Token (Crust-compatible): ``near-<base58 public key>:<hex signature>`` (also ``nea-``), made with
near-api-js ``KeyPair.sign(utf8(publicKeyBase58))``. The "address" is the public key *without* the
``ed25519:`` prefix (its ``:`` would split the token); named and implicit (hex) account ids cannot be
used, because nothing offline maps them to a key. The signature is read as Node hex, as Crust did.
Identity: ``("near", base58 public key)``.

Bound tokens (hookspec 1.1): "... sign in with your NEAR account:" messages naming the base58 public key,
signed with plain ed25519 over the message's UTF-8 bytes (near-api-js ``KeyPair.sign(bytes)``, and
``w3gate token --chain near``); same identity as the key's W3Auth token.

``w3gate token --chain near`` (:class:`NearSigner`) reads the key near-cli keeps in
``~/.near-credentials/<network>/<account>.json`` (``--secret-file``), or the bare ``ed25519:<base58>``
private key.
"""

from __future__ import annotations

import json

import base58
from nacl.signing import SigningKey

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, hookimpl
from w3gate.w3auth.ed25519 import ed25519_valid
from w3gate.w3auth.nodecodec import node_hex

__version__ = "0.1.0"
NAME = "near"
ALIASES = ("near", "nea")
KEY_PREFIX = "ed25519:"


def _public_key(address: str) -> bytes:
    try:
        public_key = base58.b58decode(address)
    except ValueError as exc:
        raise InvalidSignature("near: address is not base58") from exc
    if len(public_key) != 32:
        raise InvalidSignature("near: address is not a 32-byte ed25519 public key")
    return public_key


def verify(credentials: Credentials) -> Identity:
    address = credentials.address
    public_key = _public_key(address)
    signature = node_hex(credentials.signature)
    if len(signature) != 64:
        raise InvalidSignature("near: signature is not 64 bytes of hex")
    if not ed25519_valid(public_key, address.encode(), signature):
        raise InvalidSignature("near: signature does not verify")
    return Identity(NAME, base58.b58encode(public_key).decode(), address)


class NearChain:
    """W3Auth tokens (:func:`verify`) and bound tokens of NEAR ed25519 keys."""

    name = NAME
    aliases = ALIASES
    sign_in = "NEAR"

    def verify(self, credentials: Credentials) -> Identity:
        return verify(credentials)

    def verify_sign_in(self, address: str, message: bytes, signature: bytes) -> Identity:
        public_key = _public_key(address)
        if len(signature) != 64:
            raise InvalidSignature("near: signature is not 64 bytes")
        if not ed25519_valid(public_key, message, signature):
            raise InvalidSignature("near: signature does not verify")
        return Identity(NAME, base58.b58encode(public_key).decode(), address)

    def identity_of(self, address: str) -> Identity | None:
        """The user of a base58 public key (``ed25519:`` prefix allowed), without a signature."""
        try:
            public_key = base58.b58decode(address.strip().removeprefix(KEY_PREFIX))
        except ValueError:
            return None
        if len(public_key) != 32:
            return None
        return Identity(NAME, base58.b58encode(public_key).decode(), address)


class NearKey:
    """A NEAR ed25519 key, as ``w3gate token`` uses it (never printed: only its public key is shown)."""

    def __init__(self, seed: bytes) -> None:
        self._key = SigningKey(seed)
        self.address: str = base58.b58encode(bytes(self._key.verify_key)).decode()

    def __repr__(self) -> str:
        return f"NearKey({self.address})"

    def w3auth_credentials(self) -> str:
        return f"near-{self.address}:{self.sign(self.address.encode()).hex()}"

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)


def _seed(private_key: str) -> bytes:
    """The ed25519 seed of ``ed25519:<base58>``: near-api-js's 64-byte secret||public key (checked against
    its public half), or a bare 32-byte seed."""
    if not private_key.startswith(KEY_PREFIX):
        raise ValueError("a NEAR private key starts with 'ed25519:' (secp256k1 keys cannot sign in)")
    try:
        raw = base58.b58decode(private_key.removeprefix(KEY_PREFIX))
    except ValueError:
        raise ValueError("the NEAR private key is not base58") from None
    if len(raw) == 32:
        return raw
    if len(raw) != 64:
        raise ValueError(f"a NEAR ed25519 private key is 64 bytes (or a 32-byte seed), this is {len(raw)}")
    if bytes(SigningKey(raw[:32]).verify_key) != raw[32:]:
        raise ValueError("the NEAR private key's public half does not match its secret half")
    return raw[:32]


class NearSigner:
    """``w3gate token --chain near``: near-cli's credentials JSON file, or a bare ``ed25519:<base58>`` key."""

    name = NAME
    sign_in: str | None = "NEAR"

    def load(self, secret: str) -> NearKey:
        secret = secret.strip()
        if secret.startswith("{"):
            try:
                fields = json.loads(secret)
            except ValueError:
                raise ValueError("the NEAR credentials file is not JSON") from None
            private_key = fields.get("private_key") or fields.get("secret_key") if isinstance(fields, dict) else None
            if not isinstance(private_key, str):
                raise ValueError("the NEAR credentials file has no private_key")
            key = NearKey(_seed(private_key.strip()))
            public = fields.get("public_key")
            if isinstance(public, str) and public.strip().removeprefix(KEY_PREFIX) != key.address:
                raise ValueError("the NEAR credentials file's public_key is not its private_key's")
            return key
        return NearKey(_seed(secret))


@hookimpl
def w3gate_chains() -> list[NearChain]:
    return [NearChain()]


@hookimpl
def w3gate_signers() -> list[NearSigner]:
    return [NearSigner()]
