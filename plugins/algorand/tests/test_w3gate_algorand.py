"""The Algorand plugin's Chain against its shared vectors and against keys made here with PyNaCl."""

import base64
from pathlib import Path

import pytest
import w3gate_algorand
from nacl.signing import SigningKey

from w3gate.testing import bearer, check_token, load_vectors

VECTORS = load_vectors(Path(__file__).parent / "vectors.json")
(CHAIN,) = w3gate_algorand.w3gate_chains()


def check(header: str):
    return check_token(CHAIN, header)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector(vector):
    identity = check(vector["header_value"])
    assert (identity is not None) is vector["w3gate_expect_valid"], vector["note"]
    if identity is not None:
        assert identity.user_key == f"algorand:{vector['address']}"


def test_address_codec_round_trip_and_checksum():
    key = bytes(SigningKey.generate().verify_key)
    address = w3gate_algorand.encode_address(key)
    assert len(address) == 58 and w3gate_algorand.decode_address(address) == key
    broken = address[:10] + ("A" if address[10] != "A" else "B") + address[11:]  # a key bit: checksum fails
    with pytest.raises(ValueError):
        w3gate_algorand.decode_address(broken)


def test_fresh_key_sign_bytes():
    key = SigningKey.generate()
    address = w3gate_algorand.encode_address(bytes(key.verify_key))
    signature = base64.b64encode(key.sign(b"MX" + address.encode()).signature).decode()
    assert check(bearer(f"algo-{address}:{signature}")) is not None
    unprefixed = base64.b64encode(key.sign(address.encode()).signature).decode()
    assert check(bearer(f"algo-{address}:{unprefixed}")) is None
