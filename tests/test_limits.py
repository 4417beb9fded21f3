"""Limits, access lists and `w3gate users` (issue 10), against the service's app (in-process; a `w3gate serve`
process where `w3gate users` changes the running service's users), on SQLite and (pass 2) PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import httpx
import pytest
from conftest import POSTGRES, database_url_for_test
from helpers import UNBINDING_LIMITS, Server, eth_token, start_server_process, substrate_token
from multiformats import CID, multihash
from substrateinterface import Keypair

from w3gate import cli
from w3gate.admission.settings import Limits
from w3gate.clientaddr import client_address, parse_networks
from w3gate.config import load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "w3gate.example.toml"
ETH_KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
# what never reaches the database (access lists, rates, the client address) runs in the SQLite pass only
NO_DATABASE_PART = pytest.mark.skipif(bool(POSTGRES), reason="no database part: the SQLite pass runs it")


def new_cid() -> str:
    return str(CID("base32", 1, "raw", multihash.digest(os.urandom(16), "sha2-256")))


def hex_key(uri: str) -> str:
    return "0x" + Keypair.create_from_uri(uri).public_key.hex()


def failure(resp: httpx.Response, status: int, reason: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["reason"] == reason and body["error"]["details"], body
    return body["error"]


def users_cli(server: Server, *args: str) -> subprocess.CompletedProcess:
    """`w3gate users ...` as its own process, as an operator runs it beside the service."""
    command = os.environ.get("W3GATE_TEST_COMMAND", "").split() or [sys.executable, "-m", "w3gate"]
    env = {k: v for k, v in server.env.items() if k != "W3GATE_PORT"} | {"W3GATE_DATA_DIR": str(server.data_dir)}
    return subprocess.run([*command, "users", *args], env=env, capture_output=True, text=True, timeout=120)


def user_json(server: Server, *args: str) -> dict | list:
    """`w3gate users --json ...` run in this process (the same code as the command, without a Python
    start-up per call) on the server's database."""
    out = io.StringIO()
    env = {k: v for k, v in server.env.items() if k.startswith("W3GATE_")} | {"W3GATE_DATA_DIR": str(server.data_dir)}
    with mock.patch.dict(os.environ, env), contextlib.redirect_stdout(out):
        assert cli.main(["users", "--json", *args]) == 0
    return json.loads(out.getvalue())


def settled(server: Server) -> None:
    """Wait until the service applies every `w3gate users` change made so far: it re-reads all users'
    settings at once, so once a fresh sentinel's requests_per_minute = 1 holds, the earlier changes do."""
    uri = f"//Sentinel{os.urandom(4).hex()}"
    token = substrate_token(uri)
    user_json(server, "set", "substrate:" + hex_key(uri), "requests_per_minute=1")
    until(lambda: server.get(server.psa_url + "/pins", headers={"Authorization": token}).status_code == 429,
          "the sentinel's requests_per_minute applied")


def until(check, what: str, timeout: float = 30) -> None:
    """Wait for a change the service picks up by itself (users' settings are re-read every second)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still not: {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """pins_per_user = 10 for everyone; other limits given per user by `w3gate users set`. A process: the
    tests change its users with the `w3gate users` code run in this one (the ORM has one database a process)."""
    data_dir = tmp_path_factory.mktemp("limited")
    server = start_server_process(data_dir=data_dir, database_url=database_url_for_test(), env={
        "W3GATE_LIMITS_PINS_PER_USER": "10", "W3GATE_CRUST_DEFAULT_FILE_SIZE": "1000"})
    yield server
    server.stop()


@pytest.mark.slow
def test_fifty_parallel_posts_accept_exactly_pins_per_user(limited: Server) -> None:
    token = substrate_token("//Alice")
    clients = [limited.client(token) for _ in range(50)]
    barrier = threading.Barrier(len(clients))

    def post(c: httpx.Client) -> httpx.Response:
        c.get("/pins")  # connected and authenticated before the barrier
        barrier.wait()
        return c.post("/pins", json={"cid": new_cid()})

    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        answers = list(pool.map(post, clients))
    assert Counter(r.status_code for r in answers) == {202: 10, 403: 40}
    for r in answers:
        if r.status_code == 403:
            assert "pins_per_user" in failure(r, 403, "PINS_PER_USER")["details"]
    listed = clients[0].get("/pins", params={"status": "queued,pinning,pinned,failed"}).json()
    assert listed["count"] == 10
    accepted = {r.json()["requestid"] for r in answers if r.status_code == 202}
    assert {p["requestid"] for p in listed["results"]} == accepted
    shown = user_json(limited, "show", "substrate:" + hex_key("//Alice"))
    assert shown["pins"] == 10 and shown["bytes"] == 10 * 1000 and shown["pins_today"] == 10
    # a pin deleted makes room for one more
    clients[0].delete(f"/pins/{listed['results'][0]['requestid']}")
    assert clients[0].post("/pins", json={"cid": new_cid()}).status_code == 202
    failure(clients[0].post("/pins", json={"cid": new_cid()}), 403, "PINS_PER_USER")
    for c in clients:
        c.close()


@pytest.mark.slow
def test_bytes_and_day_quotas_set_per_user_while_running(limited: Server) -> None:
    """`w3gate users set` on a running service: bytes counted at the size the order will be placed for
    (default_file_size here), and a refused pin does not count against the day."""
    bob = "sub:" + Keypair.create_from_uri("//Bob", ss58_format=0).ss58_address
    charlie = "substrate:" + hex_key("//Charlie")
    with limited.client(substrate_token("//Bob")) as api:
        assert api.post("/pins", json={"cid": new_cid()}).status_code == 202
        user_json(limited, "set", bob, "bytes_per_user=2500")
        settled(limited)
        assert api.post("/pins", json={"cid": new_cid()}).status_code == 202
        refused = failure(api.post("/pins", json={"cid": new_cid()}), 403, "BYTES_PER_USER")
        assert "1000 bytes" in refused["details"] and "2000 of the 2500" in refused["details"]
        assert api.get("/pins", params={"status": "queued"}).json()["count"] == 2
        shown = user_json(limited, "show", bob)
        assert (shown["pins"], shown["bytes"], shown["own_limits"]) == (2, 2000, {"bytes_per_user": 2500})
        user_json(limited, "set", bob, "bytes_per_user=default")
        settled(limited)
        assert api.post("/pins", json={"cid": new_cid()}).status_code == 202

    with limited.client(substrate_token("//Charlie")) as api:
        user_json(limited, "set", charlie, "pins_per_user=2", "pins_per_day_per_user=3")
        settled(limited)
        first, second = (api.post("/pins", json={"cid": new_cid()}) for _ in range(2))
        assert first.status_code == second.status_code == 202
        failure(api.post("/pins", json={"cid": new_cid()}), 403, "PINS_PER_USER")
        api.delete(f"/pins/{first.json()['requestid']}")
        # the day's third (the refusal did not count)
        assert api.post("/pins", json={"cid": new_cid()}).status_code == 202
        api.delete(f"/pins/{second.json()['requestid']}")
        over = api.post("/pins", json={"cid": new_cid()})
        failure(over, 429, "PINS_PER_DAY_PER_USER")
        assert 0 < int(over.headers["Retry-After"]) <= 86400
        assert api.get("/pins", params={"status": "queued"}).json()["count"] == 1  # nothing half-created
        shown = user_json(limited, "show", charlie)
        assert (shown["pins"], shown["pins_today"], shown["bytes"]) == (1, 3, 1000)


@pytest.mark.slow
def test_requests_per_minute_block_and_unblock(limited: Server) -> None:
    """An identity named in another address form (hex for an SS58 token, another alias) is the same user."""
    dave = "substrate:" + hex_key("//Dave")
    eve = "cru:" + Keypair.create_from_uri("//Eve", ss58_format=66).ss58_address
    with limited.client(substrate_token("//Dave")) as api:
        assert api.get("/pins").status_code == 200
        user_json(limited, "set", dave, "requests_per_minute=5")
        settled(limited)
        statuses = [api.get("/pins").status_code for _ in range(8)]
        assert statuses[:5] == [200] * 5 and statuses[-1] == 429
        over = api.get("/pins")
        failure(over, 429, "REQUESTS_PER_MINUTE")
        assert 1 <= int(over.headers["Retry-After"]) <= 60
    with limited.client(substrate_token("//Eve", ss58_format=42)) as api:
        assert api.post("/pins", json={"cid": new_cid()}).status_code == 202
        assert user_json(limited, "block", eve, "--note", "abuse")["blocked"] is True
        settled(limited)
        failure(api.post("/pins", json={"cid": new_cid()}), 403, "BLOCKED")
        assert api.get("/pins", params={"status": "queued"}).json()["count"] == 1  # reading is still allowed
        user_json(limited, "unblock", eve)
        settled(limited)
        assert api.post("/pins", json={"cid": new_cid()}).status_code == 202
    by_user = {u["user"]: u for u in user_json(limited, "list", "--limit", "1000")}
    assert by_user["substrate:" + hex_key("//Eve")]["pins"] == 2
    assert by_user["substrate:" + hex_key("//Eve")]["note"] == "abuse"
    assert by_user["substrate:" + hex_key("//Alice")]["pins"] == 10
    until(lambda: user_json(limited, "show", dave)["last_seen"] != "-", "last seen recorded")
    last_seen = user_json(limited, "show", dave)["last_seen"]  # in the API's form of an instant, as `created`
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", last_seen), last_seen
    table = users_cli(limited, "list").stdout
    assert table.splitlines()[0].split() == ["USER", "PINS", "BYTES", "TODAY", "LAST", "SEEN", "STATE"]
    bad = users_cli(limited, "show", "substrate:not-an-address")
    assert bad.returncode == 2 and "not a substrate address" in bad.stderr


@NO_DATABASE_PART
def test_access_lists_proxy_address_and_auth_failures(start_app_server, tmp_path: Path) -> None:
    """A private service (allow list naming keys in other address forms), a deny list winning over it,
    and auth_failures_per_minute per client address as the trusted proxy's header names it."""
    alice_42 = Keypair.create_from_uri("//Alice", ss58_format=42).ss58_address
    from eth_account import Account

    eth_address = Account.from_key(ETH_KEY).address
    config = tmp_path / "w3gate.toml"
    config.write_text(
        'trusted_proxy_header = "X-Forwarded-For"\ntrusted_proxies = ["127.0.0.1/32"]\n'
        "[limits]\nauth_failures_per_minute = 3\n"
        f'[access]\nallow = ["sub:{alice_42}", "eth:{eth_address.upper().replace("0X", "0x")}"]\n'
        f'deny = ["ethereum:{eth_address.lower()}"]\n')
    server = start_app_server(env={"W3GATE_LIMITS_AUTH_FAILURES_PER_MINUTE": None}, args=["--config", str(config)])
    alice, bob = substrate_token("//Alice"), substrate_token("//Bob")
    def pin(token: str) -> httpx.Response:
        return server.post(server.psa_url + "/pins", json={"cid": new_cid()}, headers={"Authorization": token})

    assert pin(alice).status_code == 202
    failure(pin(bob), 403, "NOT_ALLOWED")
    failure(pin(eth_token(ETH_KEY)), 403, "DENIED")
    assert server.get(server.psa_url + "/pins", headers={"Authorization": bob}).status_code == 200  # reading: allowed

    def from_client(address: str, token: str) -> httpx.Response:
        headers = {"Authorization": token, "X-Forwarded-For": f"{address}, 127.0.0.1"}
        return server.get(server.psa_url + "/pins", headers=headers)

    forged = substrate_token("//Mallory")[:-8] + "AAAAAAA="
    for _ in range(3):
        failure(from_client("198.51.100.7", forged), 401, "UNAUTHORIZED")
    over = from_client("198.51.100.7", forged)
    failure(over, 429, "AUTH_FAILURES_PER_MINUTE")
    assert int(over.headers["Retry-After"]) >= 1
    failure(from_client("198.51.100.7", substrate_token("//Ferdie")), 429, "AUTH_FAILURES_PER_MINUTE")  # no check
    assert from_client("198.51.100.7", alice).status_code == 200  # verified before: costs no check, passes
    failure(from_client("198.51.100.8", forged), 401, "UNAUTHORIZED")  # another client behind the proxy


@NO_DATABASE_PART
def test_defaults_refuse_an_auth_flood(start_app_server) -> None:
    """The shipped defaults, untouched: the example file states them, and a server started without any
    limit setting refuses the 61st failed sign-in of a minute from one address."""
    assert load_settings(EXAMPLE, env={}).limits == Limits() and load_settings(None, env={}).limits == Limits()
    server = start_app_server(env=dict.fromkeys(UNBINDING_LIMITS))
    forged = "Bearer " + "c3ViLTVHcnd2YUVGNXpYYjI2Rno5cmNRcERXUzU3Q3RFUkhwTmVoWENQY05vSEdLdXRRWTowMTIz"
    limit = Limits().auth_failures_per_minute
    # no trusted proxy: an X-Forwarded-For a client makes up is not believed (each names another address)
    with server.client(forged) as client:  # the bucket refills 1 a second meanwhile
        statuses = [client.get(server.psa_url + "/pins", headers={"X-Forwarded-For": f"203.0.113.{i % 250}"})
                    .status_code for i in range(3 * limit)]
    assert statuses[:limit] == [401] * limit and 429 in statuses


@pytest.mark.parametrize("peer, header, expected", [
    ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # not a trusted proxy: its header is not believed
    ("10.0.0.2", None, "10.0.0.2"),  # a trusted proxy that names nobody: itself
    ("10.0.0.2", "198.51.100.7", "198.51.100.7"),
    ("10.0.0.2", "1.2.3.4, 198.51.100.7, 10.0.0.3", "198.51.100.7"),  # the client made up 1.2.3.4; hops skipped
    ("10.0.0.2", "[2001:db8::1]:4711", "2001:db8::1"),
    ("10.0.0.2", "198.51.100.7:1234", "198.51.100.7"),
    ("10.0.0.2", "unknown, 10.0.0.3", "10.0.0.3"),  # not an address: stop at the last trusted hop
    ("::ffff:10.0.0.2", "198.51.100.7", "198.51.100.7"),  # an IPv4 proxy seen on a dual-stack socket
])
def test_client_address(peer: str, header: str | None, expected: str) -> None:
    assert client_address(peer, header, parse_networks(["10.0.0.0/8"])) == expected
