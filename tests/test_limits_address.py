"""Limits per client address, against the service's app (in-process; `w3gate serve` on the binary pass), on SQLite and
(pass 2) PostgreSQL: a key costs nothing to make, so what one address gets through its keys is bounded
(new identities and pins per UTC day, requests per minute), the day counts hold across a restart and
under concurrent requests; a pin's meta is capped in bytes; POST /auth/revoke is a counted request; an
address over auth_failures_per_minute keeps its verified tokens."""

from __future__ import annotations

import concurrent.futures
import threading
from collections import Counter
from typing import Any

import httpx
from helpers import Server, substrate_token
from test_limits import NO_DATABASE_PART, failure, new_cid

PROXY = {"W3GATE_TRUSTED_PROXY_HEADER": "X-Forwarded-For", "W3GATE_TRUSTED_PROXIES": "127.0.0.1/32"}


def post_from(server: Server, address: str, token: str, body: dict[str, Any] | None = None,
              url: str | None = None) -> httpx.Response:
    """A POST (a new pin by default) from client ``address`` as the trusted proxy (127.0.0.1) names it."""
    return server.post(url or server.psa_url + "/pins", json={"cid": new_cid()} if body is None else body,
                      timeout=30, headers={"Authorization": token, "X-Forwarded-For": address})


def at_once(calls: list[Any]) -> list[httpx.Response]:
    """Run ``calls`` in parallel threads released together."""
    barrier = threading.Barrier(len(calls))

    def run(call: Any) -> httpx.Response:
        barrier.wait()
        return call()  # type: ignore[no-any-return]

    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


ADDRESS_LIMITS = {**PROXY, "W3GATE_LIMITS_IDENTITIES_PER_ADDRESS_PER_DAY": "5",
                  "W3GATE_LIMITS_PINS_PER_ADDRESS_PER_DAY": "12", "W3GATE_LIMITS_PINS_PER_USER": "10"}


def test_fresh_keys_from_one_address_pin_for_five_identities_across_a_restart(start_app_server) -> None:
    """The attack: 30 fresh keys from one address, each pinning at pins_per_user = 10. With
    identities_per_address_per_day = 5 pins are accepted for 5 identities only (30 at once: the bound holds
    under concurrency), and pins_per_address_per_day bounds what the address adds through all its keys;
    both are counted in the database, so a restart changes nothing."""
    server = start_app_server(env=ADDRESS_LIMITS)
    keys = [substrate_token(f"//Fresh{i}") for i in range(30)]
    answers = at_once([lambda t=t: post_from(server, "198.51.100.1", t) for t in keys])
    assert Counter(r.status_code for r in answers) == {202: 5, 429: 25}
    for r in answers:
        if r.status_code == 429:
            refused = failure(r, 429, "IDENTITIES_PER_ADDRESS_PER_DAY")
            assert "identities_per_address_per_day" in refused["details"]
            assert 0 < int(r.headers["Retry-After"]) <= 86400
    admitted = [t for t, r in zip(keys, answers, strict=True) if r.status_code == 202]
    # an identity admitted today is not new again: it pins on (until the address's pins of the day run out)
    assert post_from(server, "198.51.100.1", admitted[0]).status_code == 202
    # another address: its own day; its keys together add at most pins_per_address_per_day = 12. Known keys and
    # an address seen today: on PostgreSQL these take the one-statement path, checked there under concurrency
    two = [substrate_token("//Second0"), substrate_token("//Second1")]
    assert [post_from(server, "198.51.100.2", t).status_code for t in two] == [202, 202]
    answers = at_once([lambda t=two[i % 2]: post_from(server, "198.51.100.2", t) for i in range(20)])
    assert Counter(r.status_code for r in answers) == {202: 10, 429: 10}
    for r in answers:
        if r.status_code == 429:
            assert "pins_per_address_per_day" in failure(r, 429, "PINS_PER_ADDRESS_PER_DAY")["details"]

    server.stop()
    server = start_app_server(env=ADDRESS_LIMITS, data_dir=server.data_dir)  # the same database
    failure(post_from(server, "198.51.100.1", substrate_token("//Fresh30")), 429, "IDENTITIES_PER_ADDRESS_PER_DAY")
    assert post_from(server, "198.51.100.1", admitted[1]).status_code == 202
    failure(post_from(server, "198.51.100.2", two[0]), 429, "PINS_PER_ADDRESS_PER_DAY")
    assert post_from(server, "198.51.100.3", substrate_token("//Fresh31")).status_code == 202
    # nothing half-created by the refusals: each admitted key holds exactly what was accepted
    with server.client(admitted[0]) as api:
        assert api.get("/pins", params={"status": "queued,pinning,pinned,failed"}).json()["count"] == 2
    refused_key = next(t for t in keys if t not in admitted)
    with server.client(refused_key) as api:
        assert api.get("/pins", params={"status": "queued,pinning,pinned,failed"}).json()["count"] == 0


@NO_DATABASE_PART
def test_meta_is_capped_in_bytes(start_app_server) -> None:
    """max_meta_bytes counts UTF-8 bytes of keys and values: 400 with the spec's body past it, on a new pin
    and on a replacement; at the cap it is accepted."""
    server = start_app_server(env={"W3GATE_LIMITS_MAX_META_BYTES": "100"})
    with server.client(substrate_token("//Meta")) as api:
        at_cap = api.post("/pins", json={"cid": new_cid(), "meta": {"k": "x" * 99}})
        assert at_cap.status_code == 202, at_cap.text
        over = failure(api.post("/pins", json={"cid": new_cid(), "meta": {"k": "é" * 50}}), 400, "BAD_REQUEST")
        assert "101 bytes" in over["details"] and "max_meta_bytes" in over["details"]
        requestid = at_cap.json()["requestid"]
        failure(api.post(f"/pins/{requestid}", json={"cid": new_cid(), "meta": {"a": "b" * 200}}), 400, "BAD_REQUEST")
        assert api.get("/pins", params={"status": "queued"}).json()["count"] == 1


@NO_DATABASE_PART
def test_auth_revoke_and_every_key_of_an_address_are_counted_requests(start_app_server) -> None:
    """POST /auth/revoke takes a token of the identity's requests_per_minute (it writes), and every
    authenticated request one of its address's requests_per_address_per_minute, whatever key it carries."""
    from test_tokens_http import Wallet, ms

    server = start_app_server(env={**PROXY, "W3GATE_LIMITS_REQUESTS_PER_MINUTE": "5",
                               "W3GATE_LIMITS_REQUESTS_PER_ADDRESS_PER_MINUTE": "8"})
    wallet = Wallet("ethereum")
    revoke = server.base_url + "/auth/revoke"
    first = post_from(server, "198.51.100.4", wallet.token(server), {}, revoke)
    assert first.status_code == 200
    # the next token is dated from revoked_before (docs/tokens.md): 4 more requests fill the 5 a minute
    nxt = wallet.token(server, issued_ms=ms(first.json()["revoked_before"]))
    headers = {"Authorization": nxt, "X-Forwarded-For": "198.51.100.4"}
    assert [server.get(server.psa_url + "/pins", headers=headers).status_code for _ in range(4)] == [200] * 4
    over = post_from(server, "198.51.100.4", nxt, {}, revoke)  # the revoke counted: this is the 6th request
    assert "requests_per_minute" in failure(over, 429, "REQUESTS_PER_MINUTE")["details"]

    def get_from(address: str, uri: str) -> httpx.Response:
        return server.get(server.psa_url + "/pins", headers={"Authorization": substrate_token(uri),
                                                            "X-Forwarded-For": address})

    # 8 requests from one address with 8 keys (one each: under requests_per_minute), then a 9th key
    assert [get_from("198.51.100.5", f"//Many{i}").status_code for i in range(8)] == [200] * 8
    over = get_from("198.51.100.5", "//Many8")
    assert "requests_per_address_per_minute" in failure(over, 429, "REQUESTS_PER_ADDRESS_PER_MINUTE")["details"]
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert get_from("198.51.100.6", "//Many8").status_code == 200  # another address: its own bucket


@NO_DATABASE_PART
def test_an_address_over_auth_failures_keeps_its_verified_tokens(start_app_server) -> None:
    """One misconfigured client behind a NAT must not lock out the others: past auth_failures_per_minute the
    address is refused only new signature checks; tokens verified before from it still get answers."""
    server = start_app_server(env={**PROXY, "W3GATE_LIMITS_AUTH_FAILURES_PER_MINUTE": "3"})
    nat = {"X-Forwarded-For": "203.0.113.50"}
    alice = substrate_token("//Alice")
    assert server.get(server.psa_url + "/pins", headers={**nat, "Authorization": alice}).status_code == 200
    forged = substrate_token("//Mallory")[:-8] + "AAAAAAA="
    for _ in range(3):
        failure(server.get(server.psa_url + "/pins", headers={**nat, "Authorization": forged}), 401, "UNAUTHORIZED")
    failure(server.get(server.psa_url + "/pins", headers={**nat, "Authorization": forged}), 429,
            "AUTH_FAILURES_PER_MINUTE")
    assert server.get(server.psa_url + "/pins", headers={**nat, "Authorization": alice}).status_code == 200
    assert post_from(server, nat["X-Forwarded-For"], alice).status_code == 202
    failure(server.get(server.psa_url + "/pins", headers={**nat, "Authorization": substrate_token("//Ferdie")}),
            429, "AUTH_FAILURES_PER_MINUTE")  # never verified: a signature check, refused

