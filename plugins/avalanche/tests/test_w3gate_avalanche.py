"""The Avalanche plugin's Chain against its shared vectors and against keys made here with coincurve."""

import hashlib
from pathlib import Path

import base58
import pytest
import w3gate_avalanche
from coincurve import PrivateKey

from w3gate.testing import bearer, check_token, load_vectors

VECTORS = load_vectors(Path(__file__).parent / "vectors.json")
(CHAIN,) = w3gate_avalanche.w3gate_chains()


def check(header: str):
    return check_token(CHAIN, header)


def cb58(payload: bytes) -> str:
    return base58.b58encode(payload + hashlib.sha256(payload).digest()[-4:]).decode()


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector(vector):
    identity = check(vector["header_value"])
    assert (identity is not None) is vector["w3gate_expect_valid"], vector["note"]
    if identity is not None:  # upper- and lower-case address text are one user
        assert identity.user_key == "avalanche:avax1q4z7he4mdc2ldjvsct70nuc30m03p2nr4ydfqf"


def test_fresh_key():
    key = PrivateKey()
    address = w3gate_avalanche.address_of(key.public_key)
    signature = key.sign_recoverable(w3gate_avalanche.message_digest(address), hasher=None)
    identity = check(bearer(f"ava-{address}:{cb58(signature)}"))
    assert identity is not None and identity.account == address
    # a broken checksum is refused even though the signature bytes are right
    raw = base58.b58decode(cb58(signature))
    assert check(bearer(f"ava-{address}:{base58.b58encode(raw[:-1] + bytes([raw[-1] ^ 1])).decode()}")) is None
