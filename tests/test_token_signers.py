"""``w3gate token``'s keys are the wallets' keys: each secret form gives the address the chain's own library (or
wallet derivation) gives, and an unreadable secret is refused without being quoted."""

from __future__ import annotations

import json

import pytest
from scalecodec.utils.ss58 import ss58_decode

from w3gate.plugins import load_signers
from w3gate.w3auth.authenticator import Authenticator
from w3gate.w3auth.bound import BoundPolicy, encode_token, make_message

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"  # BIP39 test vector
SIGNERS = load_signers()


def test_the_builtin_chains_offer_signers_through_the_hook() -> None:
    assert {"substrate", "ethereum", "solana"} <= set(SIGNERS)


def test_solana_mnemonic_is_phantoms_first_account() -> None:
    from eth_account.hdaccount import seed_from_mnemonic
    from solders.keypair import Keypair

    phantom = Keypair.from_seed_and_derivation_path(seed_from_mnemonic(MNEMONIC, ""), "m/44'/501'/0'/0'")
    assert SIGNERS["solana"].load(MNEMONIC).address == str(phantom.pubkey())
    assert SIGNERS["solana"].load(str(phantom)).address == str(phantom.pubkey())  # Phantom's base58 export
    assert SIGNERS["solana"].load(json.dumps(list(bytes(phantom)))).address == str(phantom.pubkey())  # keygen


def test_ethereum_forms() -> None:
    from eth_account import Account
    from eth_account.hdaccount import seed_from_mnemonic

    Account.enable_unaudited_hdwallet_features()
    metamask = Account.from_mnemonic(MNEMONIC, account_path="m/44'/60'/0'/0/0")
    assert SIGNERS["ethereum"].load(MNEMONIC).address == metamask.address
    assert SIGNERS["ethereum"].load("  " + MNEMONIC.upper() + "\n").address == metamask.address
    assert SIGNERS["ethereum"].load(metamask.key.hex()).address == metamask.address
    assert SIGNERS["ethereum"].load(seed_from_mnemonic(MNEMONIC, "").hex()).address == metamask.address


def test_substrate_forms() -> None:
    from substrateinterface import Keypair

    for secret in ("//Alice", MNEMONIC, MNEMONIC + "//hard/soft"):
        expected = Keypair.create_from_uri(secret, ss58_format=66).public_key
        assert ss58_decode(SIGNERS["substrate"].load(secret).address) == expected.hex()
    seed = "0x" + "ab" * 32
    assert SIGNERS["substrate"].load(seed).address == Keypair.create_from_seed(seed, ss58_format=66).ss58_address


@pytest.mark.parametrize("chain", ["substrate", "ethereum", "solana"])
def test_a_bad_secret_is_refused_without_quoting_it(chain: str) -> None:
    secret = "legal winner thank year wave sausage worth useful legal winner thank thank"  # bad checksum
    with pytest.raises(ValueError) as caught:
        SIGNERS[chain].load(secret)
    assert "sausage" not in str(caught.value)


@pytest.mark.parametrize("chain", ["substrate", "ethereum", "solana"])
def test_signed_messages_verify_as_the_same_user_as_w3auth(chain: str) -> None:
    from w3gate.plugins import load_chains

    key = SIGNERS[chain].load(MNEMONIC)
    policy = BoundPolicy("pins.example.org", "https://pins.example.org", 86400)
    message = make_message(SIGNERS[chain].sign_in, domain=policy.domain, address=key.address, uri=policy.uri,
                           issued_at_ms=1_700_000_000_000, expires_ms=1_700_000_000_000 + 3_600_000)
    auth = Authenticator(load_chains(), bound_policy=policy)
    claims = auth._finish(b"k", auth._resolve(encode_token(message, key.sign(message.encode())))())
    import base64

    plain = auth.authenticate_sync("Bearer " + base64.b64encode(key.w3auth_credentials().encode()).decode())
    assert claims.identity.user_key == plain.user_key


def test_a_bound_token_is_verified_once_then_served_from_the_cache() -> None:
    import time

    from w3gate.plugins import ChainRegistry, load_chains

    key = SIGNERS["solana"].load(MNEMONIC)
    policy = BoundPolicy("pins.example.org", "https://pins.example.org", 86400)
    now = int(time.time() * 1000)
    message = make_message("Solana", domain=policy.domain, address=key.address, uri=policy.uri,
                           issued_at_ms=now, expires_ms=now + 3_600_000)
    header = "Bearer " + encode_token(message, key.sign(message.encode()))
    auth = Authenticator(load_chains(), bound_policy=policy)
    first = auth.authenticate_sync(header)
    assert auth.cached_tokens == 1
    auth.registry = ChainRegistry()  # no chain left to verify with: only the cache can answer
    assert auth.authenticate_sync(header) == first
