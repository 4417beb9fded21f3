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


def near_cli_credentials(key: SigningKey) -> dict[str, str]:
    """What near-cli writes to ~/.near-credentials/<network>/<account>.json."""
    public = bytes(key.verify_key)
    return {"account_id": "alice.testnet", "public_key": "ed25519:" + base58.b58encode(public).decode(),
            "private_key": "ed25519:" + base58.b58encode(bytes(key) + public).decode()}


def test_signer_reads_near_cli_credentials_and_the_bare_key():
    import json

    (signer,) = w3gate_near.w3gate_signers()
    key = SigningKey.generate()
    credentials = near_cli_credentials(key)
    from_file = signer.load(json.dumps(credentials, indent=2) + "\n")
    from_stdin = signer.load(credentials["private_key"] + "\n")
    assert from_file.address == from_stdin.address == credentials["public_key"].removeprefix("ed25519:")
    identity = check(bearer(from_file.w3auth_credentials()))
    assert identity is not None and identity.user_key == f"near:{from_file.address}"
    message = b"127.0.0.1:8080 wants you to sign in with your NEAR account:\n..."
    assert signer.sign_in == CHAIN.sign_in == "NEAR"
    assert CHAIN.verify_sign_in(from_file.address, message, from_stdin.sign(message)) == identity


@pytest.mark.parametrize("secret, error", [
    ('{"account_id": "a.testnet"}', "has no private_key"),
    ("secp256k1:" + base58.b58encode(bytes(64)).decode(), "starts with 'ed25519:'"),
    ("ed25519:0OIl", "not base58"),
    ("ed25519:" + base58.b58encode(bytes(40)).decode(), "is 64 bytes"),
    ("ed25519:" + base58.b58encode(bytes(64)).decode(), "public half does not match"),
    ("{not json", "not JSON"),
])
def test_signer_errors_never_quote_the_secret(secret: str, error: str):
    (signer,) = w3gate_near.w3gate_signers()
    with pytest.raises(ValueError, match=error) as raised:
        signer.load(secret)
    assert secret not in str(raised.value)


def test_signer_refuses_a_file_whose_public_key_is_another():
    import json

    (signer,) = w3gate_near.w3gate_signers()
    credentials = near_cli_credentials(SigningKey.generate())
    credentials["public_key"] = near_cli_credentials(SigningKey.generate())["public_key"]
    with pytest.raises(ValueError, match="public_key is not its private_key's"):
        signer.load(json.dumps(credentials))


def test_a_sign_in_by_another_key_is_refused():
    from w3gate.hookspecs import InvalidSignature

    victim, attacker = SigningKey.generate(), SigningKey.generate()
    address = base58.b58encode(bytes(victim.verify_key)).decode()
    with pytest.raises(InvalidSignature):
        CHAIN.verify_sign_in(address, b"message", attacker.sign(b"message").signature)
