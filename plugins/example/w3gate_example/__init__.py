"""A minimal w3gate chain plugin: the template docs/plugins.md walks through.

Its made-up chain ``example`` (token chain types ``example`` and ``exa``) has ed25519 keys; a token is
``exa-<public key hex>:<hex ed25519 signature over utf8(address)>``, signing the address text exactly
as W3Auth tokens of real chains do. The canonical identity is the lower-case hex public key, so that the
same key is the same user whatever case its token used.
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, SimpleChain, hookimpl
from w3gate.w3auth.nodecodec import node_hex

__version__ = "0.1.0"


def verify(credentials: Credentials) -> Identity:
    """Return who signed, or raise InvalidSignature; runs in a worker thread."""
    public_key = node_hex(credentials.address)
    signature = node_hex(credentials.signature)
    if len(public_key) != 32 or len(signature) != 64:
        raise InvalidSignature("example: need a 32-byte hex key and a 64-byte hex signature")
    try:
        VerifyKey(public_key).verify(credentials.address.encode(), signature)
    except BadSignatureError as exc:
        raise InvalidSignature("example: signature does not verify") from exc
    return Identity("example", public_key.hex(), credentials.address)


@hookimpl
def w3gate_chains(settings):
    """Called once at start-up with the operator's [chains] table (``settings.get("example", {})``)."""
    return [SimpleChain("example", ("example", "exa"), verify)]


class ExampleKey:
    """A key of the example chain, as ``w3gate token`` uses it (never print the seed)."""

    def __init__(self, seed: bytes) -> None:
        self._key = SigningKey(seed)
        self.address = bytes(self._key.verify_key).hex()

    def w3auth_credentials(self) -> str:
        return f"exa-{self.address}:{self.sign(self.address.encode()).hex()}"

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)


class ExampleSigner:
    """``w3gate token --chain example``: a 32-byte ed25519 seed in hex; W3Auth tokens only (sign_in None)."""

    name = "example"
    sign_in = None

    def load(self, secret: str) -> ExampleKey:
        try:
            seed = bytes.fromhex(secret.strip().removeprefix("0x"))
        except ValueError:
            seed = b""
        if len(seed) != 32:
            raise ValueError("an example secret is a 32-byte ed25519 seed in hex")
        return ExampleKey(seed)


@hookimpl
def w3gate_signers(settings):
    """Optional (hookspec 1.1): teach ``w3gate token`` to make this chain's tokens."""
    return [ExampleSigner()]
