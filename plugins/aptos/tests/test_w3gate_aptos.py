"""The Aptos plugin's Chain against its shared vectors and against keys made here with PyNaCl."""

from pathlib import Path

import pytest
import w3gate_aptos
from nacl.signing import SigningKey

from w3gate.testing import bearer, check_token, load_vectors

VECTORS = load_vectors(Path(__file__).parent / "vectors.json")
(CHAIN,) = w3gate_aptos.w3gate_chains()


def check(header: str):
    return check_token(CHAIN, header)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector(vector):
    identity = check(vector["header_value"])
    assert (identity is not None) is vector["w3gate_expect_valid"], vector["note"]
    if identity is not None:  # with or without 0x, one key is one user
        assert identity.user_key == "aptos:0xcf9610963f92b37a76d397e4b0662bf910ca03bc9a2eb45e83f78fbc5424429b"


@pytest.mark.parametrize("style", range(4))
def test_every_wallet_format_with_a_fresh_key(style):
    key = SigningKey.generate()
    address = "0x" + bytes(key.verify_key).hex().upper()
    message = w3gate_aptos.messages(address)[style]
    signature = key.sign(message).signature.hex()
    identity = check(bearer(f"apt-{address}:0x{signature}"))
    assert identity is not None and identity.account == address.lower().replace("0X", "0x")


def test_unrelated_message_rejected():
    key = SigningKey.generate()
    address = "0x" + bytes(key.verify_key).hex()
    signature = key.sign(b"APTOS\nmessage: something else").signature.hex()
    assert check(bearer(f"apt-{address}:{signature}")) is None
