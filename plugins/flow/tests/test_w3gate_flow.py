"""The Flow plugin against real P-256 and secp256k1 keys made here, and a loopback access node speaking
the Flow Access REST wire format (flow_access_fake.py); plus its shared (offline) vector."""

import base64
import json
import logging
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import w3gate_flow  # noqa: E402
from flow_access_fake import FlowAccessNode, FlowKey, composite  # noqa: E402

from w3gate.hookspecs import InvalidSignature  # noqa: E402
from w3gate.w3auth.token import parse_authorization  # noqa: E402

VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text())["vectors"]
VICTIM = "0x0123456789abcdef"
ATTACKER = "0xfedcba9876543210"


def bearer(address: str, signatures: list[dict]) -> str:
    sig = base64.b64encode(json.dumps(signatures).encode()).decode()
    return "Bearer " + base64.b64encode(f"flow-{address}:{sig}".encode()).decode()


def chain_for(url: str | None):
    (chain,) = w3gate_flow.w3gate_chains(settings={"flow": {"access_node": url}} if url else {})
    return chain


def check(chain, header: str):
    try:
        return chain.verify(parse_authorization(header))
    except InvalidSignature:
        return None


@pytest.fixture
def node():
    with FlowAccessNode() as running:
        yield running


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector(vector, node):
    assert check(chain_for(node.url), vector["header_value"]) is None
    assert vector["w3gate_expect_valid"] is False
    assert node.requests == []  # refused before any network call


@pytest.mark.parametrize("algorithms", [("ECDSA_P256", "SHA3_256"), ("ECDSA_P256", "SHA2_256"),
                                        ("ECDSA_secp256k1", "SHA3_256"), ("ECDSA_secp256k1", "SHA2_256")])
def test_genuine_signature(node, algorithms):
    key = FlowKey(*algorithms)
    node.accounts[VICTIM] = [FlowKey(), key]  # key index 1
    identity = check(chain_for(node.url), bearer(VICTIM, [composite(VICTIM, 1, key.sign_user_message(VICTIM))]))
    assert identity is not None and identity.user_key == f"flow:{VICTIM}"
    assert node.requests == [f"/v1/accounts/{VICTIM[2:]}?expand=keys"]


def test_impersonation_with_own_account_refused(node):
    """Crust's bug: the attacker signs the victim's address with their own account's key."""
    attacker_key = FlowKey()
    node.accounts[ATTACKER] = [attacker_key]
    node.accounts[VICTIM] = [FlowKey()]
    forged = [composite(ATTACKER, 0, attacker_key.sign_user_message(VICTIM))]
    assert check(chain_for(node.url), bearer(VICTIM, forged)) is None
    assert node.requests == []
    # naming the victim's account does not help: the victim's key 0 did not sign
    forged = [composite(VICTIM, 0, attacker_key.sign_user_message(VICTIM))]
    assert check(chain_for(node.url), bearer(VICTIM, forged)) is None


def test_weights_must_reach_1000(node):
    a, b = FlowKey(weight=500), FlowKey(weight=500)
    node.accounts[VICTIM] = [a, b]
    chain = chain_for(node.url)
    sig_a = composite(VICTIM, 0, a.sign_user_message(VICTIM))
    sig_b = composite(VICTIM, 1, b.sign_user_message(VICTIM))
    assert check(chain, bearer(VICTIM, [sig_a])) is None
    assert check(chain, bearer(VICTIM, [sig_a, sig_a])) is None  # one key counts once
    assert check(chain, bearer(VICTIM, [sig_a, sig_b])) is not None


def test_revoked_key_and_wrong_hash_refused(node):
    revoked, sha3 = FlowKey(revoked=True), FlowKey(hashing_algorithm="SHA3_256")
    node.accounts[VICTIM] = [revoked, sha3]
    chain = chain_for(node.url)
    assert check(chain, bearer(VICTIM, [composite(VICTIM, 0, revoked.sign_user_message(VICTIM))])) is None
    wrong_hash = sha3.sign(w3gate_flow.USER_DOMAIN_TAG + VICTIM.encode(), hashing_algorithm="SHA2_256")
    assert check(chain, bearer(VICTIM, [composite(VICTIM, 1, wrong_hash)])) is None
    untagged = sha3.sign(VICTIM.encode())  # without the user domain tag: could be any other Flow message
    assert check(chain, bearer(VICTIM, [composite(VICTIM, 1, untagged)])) is None


def test_unknown_account_and_unreachable_node(node):
    key = FlowKey()
    token = bearer(VICTIM, [composite(VICTIM, 0, key.sign_user_message(VICTIM))])
    assert check(chain_for(node.url), token) is None  # 404 from the node
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert check(chain_for(closed), token) is None


def test_without_access_node_everything_refused_and_logged_once(node, caplog):
    key = FlowKey()
    node.accounts[VICTIM] = [key]
    with caplog.at_level(logging.WARNING, logger="w3gate_flow"):
        chain = chain_for(None)
    assert [r.message for r in caplog.records if "access_node" in r.message]
    token = bearer(VICTIM, [composite(VICTIM, 0, key.sign_user_message(VICTIM))])
    caplog.clear()
    assert check(chain, token) is None
    assert node.requests == [] and not caplog.records


def test_bad_access_node_setting_is_a_start_up_error():
    with pytest.raises(ValueError):
        w3gate_flow.w3gate_chains(settings={"flow": {"access_node": "file:///etc/passwd"}})
