"""The Elrond/MultiversX plugin's Chain against its shared vectors and against keys made here.

The plugin departs from Crust on purpose: the signed message must be the wallet's signMessage of the
account's own address (vector v093, accepted by Crust, is refused; see its w3gate_note)."""

from pathlib import Path

import pytest
import w3gate_elrond
from nacl.signing import SigningKey

from w3gate.testing import bearer, check_token, load_vectors

VECTORS = load_vectors(Path(__file__).parent / "vectors.json")
(CHAIN,) = w3gate_elrond.w3gate_chains()
ACCOUNT = "erd1unjavk4dy6p994m55ahp4kc648aqr662ccc25yv9kpt02fclmers9hha3q"


def check(header: str):
    return check_token(CHAIN, header)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector(vector):
    identity = check(vector["header_value"])
    assert (identity is not None) is vector["w3gate_expect_valid"], vector.get("w3gate_note", vector["note"])
    if identity is not None:  # erd1 and hex forms are one user
        assert identity.user_key == f"elrond:{ACCOUNT}"


def test_vector_digest_is_sign_message_of_the_address():
    v091 = next(v for v in VECTORS if v["id"] == "v091")
    assert w3gate_elrond.signed_message_digest(ACCOUNT.encode()).hex() == v091["tx_msg"]


def test_fresh_key_bound_and_unbound():
    key = SigningKey.generate()
    address = w3gate_elrond.encode_address(bytes(key.verify_key))
    bound = w3gate_elrond.signed_message_digest(address.encode())
    good = f"elr-{address}-{bound.hex()}:{key.sign(bound).signature.hex()}"
    assert check(bearer(good)).account == address
    # a genuine signature by the same key over anything else (e.g. a transaction) is refused
    tx = b'{"nonce":7,"value":"0","receiver":"erd1...","data":"transfer"}'
    assert check(bearer(f"elr-{address}-{tx.hex()}:{key.sign(tx).signature.hex()}")) is None
    # the signMessage of ANOTHER address, signed by this key, is not bound to this address
    other = w3gate_elrond.encode_address(bytes(SigningKey.generate().verify_key))
    foreign = w3gate_elrond.signed_message_digest(other.encode())
    assert check(bearer(f"elr-{address}-{foreign.hex()}:{key.sign(foreign).signature.hex()}")) is None


def test_non_erd_hrp_rejected():
    import bech32

    key = SigningKey.generate()
    address = bech32.bech32_encode("xyz", bech32.convertbits(bytes(key.verify_key), 8, 5))
    bound = w3gate_elrond.signed_message_digest(address.encode())
    assert check(bearer(f"elr-{address}-{bound.hex()}:{key.sign(bound).signature.hex()}")) is None
