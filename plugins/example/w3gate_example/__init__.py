"""A minimal w3gate chain plugin: the template docs/plugins.md walks through.

Its made-up chain ``example`` (token chain types ``example`` and ``exa``) has ed25519 keys; a token is
``exa-<public key hex>:<hex ed25519 signature over utf8(address)>``, signing the address text exactly
as W3Auth tokens of real chains do. The canonical identity is the lower-case hex public key, so that the
same key is the same user whatever case its token used.
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

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
