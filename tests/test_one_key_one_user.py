"""One secp256k1 key is one user whether it signs as ``eth-`` (its address) or as a Substrate ECDSA key (its
33-byte compressed key, or the account id polkadot.js shows, blake2-256 of that key): the same pins, the same
limits, the same ``[access]`` entries, against the service's app (in-process; ``w3gate serve`` on the binary
pass) on the database under test."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import coincurve
import httpx
import pytest
import trio
from eth_account import Account
from helpers import Server, bearer, eth_token
from scalecodec.utils.ss58 import ss58_encode

from w3gate.services.pins import check_cid
from w3gate.store.db import Database
from w3gate.store.pins import NewPin, create_pin
from w3gate.store.revocations import revoke

CIDS = ["QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"]
ALL = {"status": "queued,pinning,pinned,failed"}


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


class Key:
    """One secp256k1 key (eth-account makes it; coincurve signs as a Substrate ECDSA wallet does)."""

    def __init__(self) -> None:
        self.secret = "0x" + secrets.token_hex(32)
        self.address = Account.from_key(self.secret).address
        self.private = coincurve.PrivateKey(bytes.fromhex(self.secret[2:]))
        self.compressed = self.private.public_key.format(compressed=True)
        self.account_id = blake2_256(self.compressed)
        self.forms = {  # the Substrate addresses of this key
            "hex key": "0x" + self.compressed.hex(),
            "ss58 key": ss58_encode(self.compressed, 42),
            "ss58 account id": ss58_encode(self.account_id, 0),
        }

    def eth(self) -> str:
        return eth_token(self.secret)

    def sub(self, form: str) -> str:
        """``sub-<address>:<ECDSA signature of the address text, blake2-256 hashed>`` (polkadot.js ECDSA)."""
        address = self.forms[form]
        signature = self.private.sign_recoverable(address.encode(), hasher=blake2_256)
        return bearer(f"sub-{address}:0x{signature.hex()}")

    def every_token(self) -> list[str]:
        return [self.eth(), *(self.sub(form) for form in self.forms)]


def pin(server: Server, token: str, cid: str) -> httpx.Response:
    with server.client(token) as api:
        return api.post("/pins", json={"cid": cid, "name": cid[-6:]})


def listed(server: Server, token: str) -> list[str]:
    with server.client(token) as api:
        answer = api.get("/pins", params=ALL)
        assert answer.status_code == 200, answer.text
        return sorted(r["pin"]["cid"] for r in answer.json()["results"])


def refused(answer: httpx.Response, status: int, reason: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["reason"] == reason


def test_every_form_of_one_key_has_the_same_pins_and_limits(start_app_server: Any) -> None:
    server = start_app_server(env={"W3GATE_LIMITS_PINS_PER_USER": "2"})
    key = Key()
    assert pin(server, key.eth(), CIDS[0]).status_code == 202
    assert pin(server, key.sub("hex key"), CIDS[1]).status_code == 202
    for token in key.every_token():
        assert listed(server, token) == sorted(CIDS[:2])
    refused(pin(server, key.sub("ss58 account id"), CIDS[2]), 403, "PINS_PER_USER")  # one user's two pins
    refused(pin(server, key.eth(), CIDS[2]), 403, "PINS_PER_USER")
    assert pin(server, Key().sub("ss58 key"), CIDS[2]).status_code == 202  # another key: another user


@pytest.mark.parametrize("entry", ["eth:{address}", "ethereum:{lower}", "substrate:{hex key}", "sub:{ss58 key}",
                                   "substrate:{ss58 account id}", "substrate:0x{account id hex}"])
def test_a_deny_entry_in_any_form_refuses_every_form(start_app_server: Any, entry: str) -> None:
    key = Key()
    names = {"address": key.address, "lower": key.address.lower(), "account id hex": key.account_id.hex(),
             **key.forms}
    server = start_app_server(env={"W3GATE_ACCESS_DENY": entry.format(**names)})
    for token in key.every_token():
        refused(pin(server, token, CIDS[0]), 403, "DENIED")
    assert pin(server, Key().eth(), CIDS[0]).status_code == 202


@pytest.mark.parametrize("entry", ["eth:{address}", "substrate:{ss58 account id}"])
def test_an_allow_entry_in_any_form_admits_every_form(start_app_server: Any, entry: str) -> None:
    key = Key()
    server = start_app_server(env={"W3GATE_ACCESS_ALLOW": entry.format(address=key.address, **key.forms)})
    for i, token in enumerate(key.every_token()):
        assert pin(server, token, CIDS[i % 3]).status_code == 202, token
    refused(pin(server, Key().sub("hex key"), CIDS[0]), 403, "NOT_ALLOWED")


def test_what_an_ecdsa_key_had_under_its_account_id_becomes_its_own(start_app_server: Any) -> None:
    """Pins and a revocation stored under ``substrate:0x<account id>`` (how earlier releases keyed a Substrate
    ECDSA signer) belong to the key's one user once it signs in, in whatever form."""
    key = Key()
    old_owner = "substrate:0x" + key.account_id.hex()
    limits = {"W3GATE_LIMITS_PINS_PER_USER": "2"}
    server = start_app_server(env=limits)
    url = server.env.get("W3GATE_DATABASE_URL") or f"sqlite://{server.data_dir / 'w3gate.sqlite3'}"

    def seed(work: Any) -> None:
        server.stop()

        async def run() -> None:
            db = Database(url)
            await db.open()
            try:
                await work(db)
            finally:
                await db.close()

        trio.run(run)

    async def old_pins(db: Database) -> None:
        for i, cid in enumerate(CIDS[:2]):
            content = check_cid(cid)
            new = NewPin(cid=cid, name=cid[-6:], origins=(), meta={}, key=content.key, order_cid=content.order)
            await db.run(create_pin, old_owner, new, 1_000 + i)

    seed(old_pins)
    server = start_app_server(data_dir=server.data_dir, env=limits)
    assert listed(server, key.eth()) == sorted(CIDS[:2])
    assert listed(server, key.sub("ss58 account id")) == sorted(CIDS[:2])
    refused(pin(server, key.eth(), CIDS[2]), 403, "PINS_PER_USER")  # its usage came along too

    async def old_revocation(db: Database) -> None:
        await db.run(revoke, old_owner, 5_000, 5_000)  # from then on, plain W3Auth tokens are refused

    seed(old_revocation)
    server = start_app_server(data_dir=server.data_dir, env=limits)
    with server.client(key.eth()) as api:
        answer = api.get("/pins", params=ALL)
    refused(answer, 401, "UNAUTHORIZED")
    assert answer.json()["error"]["details"].startswith("revoked")
