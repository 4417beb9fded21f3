"""Aptos for w3gate: an ed25519 signature by an Aptos key over its public key, in a wallet's format.

Token (Crust-compatible): ``apt-<public key hex>:<signature hex>`` (also ``aptos-``); both may carry a
``0x`` prefix. The "address" is the ed25519 *public key*, not the account address (which is derived from
an authentication key that can be rotated, so it cannot be checked offline). Accepted messages, with the
token's address text inserted verbatim (what Crust accepted):

* the address itself (raw signing);
* ``APTOS\\nmessage: <A>\\nnonce: crust`` (Petra ``signMessage`` full message, nonce ``crust``);
* ``APTOS\\nmessage: <A>`` (Martian 0.2);
* ``{"message":"<A>"}`` (Martian 0.1).

Identity: ``("aptos", "0x" + lower-case hex public key)``.
"""

from __future__ import annotations

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, SimpleChain, hookimpl
from w3gate.w3auth.ed25519 import ed25519_valid
from w3gate.w3auth.nodecodec import node_hex

__version__ = "0.1.0"
NAME = "aptos"
ALIASES = ("aptos", "apt")


def _hex(text: str) -> bytes:
    """Crust strips one ``0x`` and then decodes with Node's lenient hex."""
    return node_hex(text[2:] if text.startswith("0x") else text)


def messages(address: str) -> list[bytes]:
    """The wallet message formats that carry the address, in the order Crust tried them."""
    return [
        address.encode(),
        f"APTOS\nmessage: {address}\nnonce: crust".encode(),
        f"APTOS\nmessage: {address}".encode(),
        f'{{"message":"{address}"}}'.encode(),
    ]


def verify(credentials: Credentials) -> Identity:
    public_key = _hex(credentials.address)
    signature = _hex(credentials.signature)
    if len(public_key) != 32 or len(signature) != 64:
        raise InvalidSignature("aptos: public key must be 32 bytes and signature 64 bytes of hex")
    for message in messages(credentials.address):
        if not ed25519_valid(public_key, message, signature):
            continue
        return Identity(NAME, "0x" + public_key.hex(), credentials.address)
    raise InvalidSignature("aptos: no accepted message format verifies")


@hookimpl
def w3gate_chains() -> list[SimpleChain]:
    return [SimpleChain(NAME, ALIASES, verify)]
