"""The NEAR plugin's Chain against its shared vectors and against keys made here with PyNaCl."""

from pathlib import Path

import base58
import pytest
import w3gate_near
from nacl.signing import SigningKey

from w3gate.testing import bearer, check_token, load_vectors

VECTORS = load_vectors(Path(__file__).parent / "vectors.json")
(CHAIN,) = w3gate_near.w3gate_chains()


def check(header: str):
    assert CHAIN.name == "near"
    return check_token(CHAIN, header)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector(vector):
    identity = check(vector["header_value"])
    assert (identity is not None) is vector["w3gate_expect_valid"], vector["note"]
    if identity is not None:
        assert identity.chain == "near" and identity.account == vector["address"]


def test_fresh_key_signs_its_public_key():
    key = SigningKey.generate()
    address = base58.b58encode(bytes(key.verify_key)).decode()
    signature = key.sign(address.encode()).signature.hex()
    identity = check(bearer(f"nea-{address}:{signature}"))
    assert identity is not None and identity.user_key == f"near:{address}"
    # upper-case hex is the same signature; any other message is not
    assert check(bearer(f"near-{address}:{signature.upper()}")) == identity
    other = key.sign(b"hello").signature.hex()
    assert check(bearer(f"near-{address}:{other}")) is None


def test_other_key_rejected():
    victim, attacker = SigningKey.generate(), SigningKey.generate()
    address = base58.b58encode(bytes(victim.verify_key)).decode()
    assert check(bearer(f"near-{address}:{attacker.sign(address.encode()).signature.hex()}")) is None
