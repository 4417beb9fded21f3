"""The TON plugin's Chain against its shared vectors and against keys made here with PyNaCl.

w3gate accepts a TON signature only over the token's address text (the public key hex), see the
plugin's docstring and docs/plugins.md. The shared vectors are not consistent on TON: v111 and v114 carry
the same key, message and signature bytes (only the chain type's case and the base64 padding differ) yet
v111 says "reject" and v114 "accept"; and v110 (a ton_proof digest) cannot be checked as bound to
anything. DECIDED lists w3gate's deliberate answers for those, with the reason; every other vector is
held to its w3gate_expect_valid."""

import base64
from pathlib import Path

import pytest
import w3gate_ton
from nacl.signing import SigningKey

from w3gate.testing import bearer, check_token, load_vectors

VECTORS = load_vectors(Path(__file__).parent / "vectors.json")
(CHAIN,) = w3gate_ton.w3gate_chains()
DECIDED = {
    "v110": (False, "a ton_proof digest hides the address it covers: not verifiably bound, refused"),
    "v111": (True, "the signed message is exactly the token's address text: bound, accepted (= v114)"),
}


def expected(vector) -> bool:
    return DECIDED[vector["id"]][0] if vector["id"] in DECIDED else vector["w3gate_expect_valid"]


def check(header: str):
    return check_token(CHAIN, header)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector(vector):
    identity = check(vector["header_value"])
    assert (identity is not None) is expected(vector), vector["note"]
    if identity is not None:
        assert identity.user_key == f"ton:{vector['address']}"


def test_fresh_key_bound_and_unbound():
    key = SigningKey.generate()
    address = bytes(key.verify_key).hex()

    def token(message: bytes) -> str:
        signature = base64.b64encode(key.sign(message).signature).decode()
        return bearer(f"ton-{address}-{message.hex()}:{signature}")

    assert check(token(address.encode())).account == address
    # any other message the key signed, e.g. a 32-byte wallet cell hash seen on chain, is refused
    assert check(token(bytes(range(32)))) is None
    assert check(token(address.upper().encode())) is None


def test_upper_case_key_is_the_same_user():
    key = SigningKey.generate()
    address = bytes(key.verify_key).hex().upper()
    signature = base64.b64encode(key.sign(address.encode()).signature).decode()
    identity = check(bearer(f"ton-{address}-{address.encode().hex()}:{signature}"))
    assert identity is not None and identity.account == address.lower()
