"""TON for w3gate: an ed25519 signature by a TON key over the text of its own public key.

Token (Crust's form): ``ton-<public key hex>-<T hex>:<base64 signature>``. The "address" is the wallet's
32-byte ed25519 public key in hex (not a TON address: which wallet contract a key controls cannot be
known offline). Crust verified the signature over whatever bytes T the client sent, so any signature the
key ever made, e.g. of a wallet's external message (whose signed bytes, a cell hash, are public on chain),
authenticated (FORMAT.md section 5, item 4).

w3gate's rule for a message *bound to the address*: T must be exactly the UTF-8 text of the token's
address (the public key hex as written in the token), the same message every other W3Auth chain signs.
That text is 64 bytes, so it can never be a transaction's 32-byte cell hash, and nothing else a TON
wallet signs starts with it. A TON Connect ``ton_proof`` digest (sha256 of ``0xffff‖"ton-connect"‖...``)
cannot be checked from the digest alone (its address, domain and timestamp are hashed away), so it is
refused; see docs/plugins.md. Identity: ``("ton", lower-case hex public key)``.
"""

from __future__ import annotations

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, SimpleChain, hookimpl
from w3gate.w3auth.ed25519 import ed25519_valid
from w3gate.w3auth.nodecodec import node_base64, node_hex

__version__ = "0.1.0"
NAME = "ton"
ALIASES = ("ton",)


def bound_message(address: str) -> bytes:
    """The only message w3gate accepts a TON signature over: the token's address text."""
    return address.encode()


def verify(credentials: Credentials) -> Identity:
    public_key = node_hex(credentials.address)
    if len(public_key) != 32:
        raise InvalidSignature("ton: address is not a 32-byte hex public key")
    if not credentials.extra or not credentials.extra[0]:
        raise InvalidSignature("ton: the signed message is missing")
    signed = node_hex(credentials.extra[0])
    if signed != bound_message(credentials.address):
        raise InvalidSignature("ton: the signed message is not the token's address")
    signature = node_base64(credentials.signature)
    if len(signature) != 64:
        raise InvalidSignature("ton: signature is not 64 bytes of base64")
    if not ed25519_valid(public_key, signed, signature):
        raise InvalidSignature("ton: signature does not verify")
    return Identity(NAME, public_key.hex(), credentials.address)


@hookimpl
def w3gate_chains() -> list[SimpleChain]:
    return [SimpleChain(NAME, ALIASES, verify)]
