"""Unit tests of the example plugin, the way a third party would test theirs: through its Chain."""

import base64
import sys
from pathlib import Path

import pytest
from nacl.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable without installing the plugin

import w3gate_example  # noqa: E402
from w3gate.hookspecs import Chain, InvalidSignature  # noqa: E402
from w3gate.w3auth.token import parse_authorization  # noqa: E402

(CHAIN,) = w3gate_example.w3gate_chains(settings={})


def token(key: SigningKey, address: str, message: bytes | None = None) -> str:
    signature = key.sign(message if message is not None else address.encode()).signature.hex()
    return "Bearer " + base64.b64encode(f"exa-{address}:{signature}".encode()).decode()


def test_is_a_chain():
    assert isinstance(CHAIN, Chain) and CHAIN.name == "example" and "exa" in CHAIN.aliases


def test_valid_token():
    key = SigningKey.generate()
    address = bytes(key.verify_key).hex()
    identity = CHAIN.verify(parse_authorization(token(key, address)))
    assert identity.user_key == f"example:{address}"


def test_wrong_message_and_wrong_key():
    key, other = SigningKey.generate(), SigningKey.generate()
    address = bytes(key.verify_key).hex()
    with pytest.raises(InvalidSignature):
        CHAIN.verify(parse_authorization(token(key, address, b"something else")))
    with pytest.raises(InvalidSignature):
        CHAIN.verify(parse_authorization(token(other, address)))
