"""Unit tests of the example plugin, the way a third party would test theirs: through its Chain."""

import base64
import importlib.util
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from w3gate.hookspecs import Chain, InvalidSignature
from w3gate.w3auth.token import parse_authorization


def _load_plugin_source():
    """The plugin from this checkout, without installing it or putting its folder on sys.path (the
    project's HTTP test must see it only where it installs it: in a plugin directory)."""
    path = Path(__file__).resolve().parents[1] / "w3gate_example" / "__init__.py"
    spec = importlib.util.spec_from_file_location("w3gate_example_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


w3gate_example = _load_plugin_source()

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
