"""Several w3gate instances on one PostgreSQL database, ordering on the real Crust runtime (issue 12): exactly one
leads ordering; kill -9 of the leader mid-batch or before inclusion, and a leader cut off from the database, hand
ordering to another instance within ``leader_timeout``, and every CID is ordered exactly once on chain.

Three ``w3gate serve`` processes (one replaced after each kill), the same CIDs posted concurrently to all three;
faults at the JSON-RPC wire (the test relay: a stalled fee query is "mid-batch", a held extrinsic is "before
inclusion") and in PostgreSQL itself (``pg_terminate_backend`` of the leader's lock session)."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import pytest
from devchain_fixtures import ALICE, Relay, crust_env
from helpers import Server, new_postgres_database, start_server_process, substrate_token, wait_for

pytestmark = [pytest.mark.devchain,
              pytest.mark.skipif(not os.environ.get("W3GATE_TEST_POSTGRES_URL"), reason="needs PostgreSQL")]
LEADER_TIMEOUT = 6.0
CIDS_PER_ROUND = 5


class Fleet:
    def __init__(self, relay: Relay, database_url: str, tmp: Any) -> None:
        self.relay, self.database_url, self.tmp = relay, database_url, tmp
        self.env = crust_env(relay, W3GATE_LEADER_TIMEOUT=str(LEADER_TIMEOUT))
        self.servers: list[Server] = []
        self.token = substrate_token(ALICE)

    def start(self, n: int = 1) -> None:
        with ThreadPoolExecutor(n) as pool:
            started = [pool.submit(start_server_process, env=self.env, database_url=self.database_url,
                                   data_dir=self.tmp.mktemp("w3gate")) for _ in range(n)]
        # every server that started is the fleet's (and stopped with it), also when another one failed to
        self.servers += [f.result() for f in started if f.exception() is None]
        for f in started:
            f.result()

    def roles(self) -> list[tuple[Server, str | None]]:
        return [(s, s.health().json()["ordering"]["role"]) for s in self.servers]

    def role(self, server: Server) -> str | None:
        return next(r for s, r in self.roles() if s is server)

    def leader(self, timeout: float = 30, not_: Server | None = None) -> Server:
        """The one leader (waiting for the election); every other instance says standby."""
        def one() -> Server | None:
            roles = self.roles()
            leaders = [s for s, r in roles if r == "leader"]
            assert len(leaders) <= 1, roles
            if leaders and leaders[0] is not not_:
                assert sorted(r for s, r in roles if s is not leaders[0]) == ["standby"] * (len(roles) - 1)
                return leaders[0]
            return None

        return wait_for(one, timeout)

    def kill(self, server: Server) -> None:
        server.kill()
        self.servers.remove(server)

    def post_everywhere(self, cids: list[str]) -> int:
        """Each CID POSTed to every instance at once (one pin per instance; one order per CID); the pins made."""
        jobs = [(s, c) for c in cids for s in self.servers]

        def post(job: tuple[Server, str]) -> None:
            r = httpx.post(job[0].psa_url + "/pins", json={"cid": job[1]}, headers={"Authorization": self.token},
                           timeout=30)
            assert r.status_code == 202, r.text

        with ThreadPoolExecutor(len(jobs)) as pool:
            list(pool.map(post, jobs))
        return len(jobs)

    def statuses(self, cids: list[str]) -> list[str]:
        r = httpx.get(self.servers[0].psa_url + "/pins", headers={"Authorization": self.token}, timeout=30,
                      params={"cid": ",".join(cids), "status": "queued,pinning,pinned,failed", "limit": 1000})
        assert r.status_code == 200, r.text
        return [p["status"] for p in r.json()["results"]]

    def wait_pinning(self, cids: list[str], pins: int, timeout: float = 60) -> None:
        wait_for(lambda: (s := self.statuses(cids)) and set(s) == {"pinning"} and len(s) == pins or None, timeout,
                 every=0.1)


def new_cids(tag: str) -> list[str]:
    from multiformats import CID, multihash

    return [str(CID("base32", 1, "raw", multihash.digest(f"{tag}{i}{time.time_ns()}".encode(), "sha2-256")))
            for i in range(CIDS_PER_ROUND)]


def signed_batches(server: Server) -> int:
    """Batches this instance recorded (and so sent), by its own log."""
    return len(re.findall(r"crust batch of \d+ calls for \d+ CIDs signed", server.log_text()))


def cut_lock_session(database_url: str) -> int:
    """``pg_terminate_backend`` of the session holding the ordering lock in this database; its pid."""
    async def cut() -> int:
        conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
        try:
            pid = await conn.fetchval("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database ="
                                      " (SELECT oid FROM pg_database WHERE datname = current_database())")
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            return int(pid)
        finally:
            await conn.close()

    return asyncio.run(cut())


@pytest.fixture(scope="module")
def fleet(devchain, tmp_path_factory) -> Iterator[Fleet]:
    if devchain.runtime != "rocky":
        pytest.skip("the fleet runs on one runtime (rocky): the chain work it tests is the same on both")
    if devchain.proc is None or devchain.proc.poll() is not None:
        devchain.start()
    from substrateinterface import Keypair

    devchain.fund(Keypair.create_from_uri(ALICE, ss58_format=66).ss58_address, 10**18)
    devchain.market_on()
    relay = Relay(devchain)
    fleet = Fleet(relay, new_postgres_database(os.environ["W3GATE_TEST_POSTGRES_URL"]), tmp_path_factory)
    try:
        fleet.start(3)
        yield fleet
    finally:
        for server in fleet.servers:
            server.kill()
        relay.stop()


def test_one_leader_and_every_instance_serves(fleet, devchain):
    leader = fleet.leader()
    cids = new_cids("lead")
    pins = fleet.post_everywhere(cids)
    fleet.wait_pinning(cids, pins)
    assert devchain.orders_of(set(cids)) == {c: 1 for c in cids}
    assert fleet.leader() is leader


def test_leader_killed_mid_batch(fleet, devchain):
    """Killed after claiming and signing a batch, before recording it (its fee query stalls): the next leader
    frees the claim at once and orders the CIDs, once."""
    leader = fleet.leader()
    fleet.relay.fail_next("state_call", "stall")
    stalls = fleet.relay.stalls
    cids = new_cids("midbatch")
    pins = fleet.post_everywhere(cids)
    wait_for(lambda: fleet.relay.stalls > stalls, 30)
    fleet.kill(leader)
    fleet.relay.unstall()
    fleet.leader(LEADER_TIMEOUT)
    fleet.start()  # three instances again
    fleet.wait_pinning(cids, pins)
    assert devchain.orders_of(set(cids)) == {c: 1 for c in cids}


def test_leader_killed_before_inclusion(fleet, devchain):
    """Killed with its batch sent and not yet in a block: the next leader follows the recorded batch (sends
    the same extrinsic again) instead of ordering anew; released, it is included once."""
    leader = fleet.leader()
    relay = fleet.relay
    relay.hold = True
    sent = len(relay.submitted)
    cids = new_cids("noinclusion")
    pins = fleet.post_everywhere(cids)
    wait_for(lambda: relay.held, 30)
    fleet.kill(leader)
    fleet.leader(LEADER_TIMEOUT)
    wait_for(lambda: len(relay.submitted) > sent + 1, 30)  # the new leader sent it again
    held = relay.held[0]
    relay.hold = False
    relay.release()
    fleet.start()  # three instances again
    fleet.wait_pinning(cids, pins)
    after = relay.submitted[sent:]
    assert after.count(held) == 2 and len(set(after)) == len(after) - 1  # the held one was sent again, as it was
    assert devchain.orders_of(set(cids)) == {c: 1 for c in cids}


def test_leader_cut_off_from_the_database_stops_before_another_starts(fleet, devchain):
    """The leader's lock session is terminated while it is mid-batch (signed, its fee query stalled): answered,
    it finds the lock gone before recording anything and steps down; another instance leads and orders each
    CID once. The cut-off instance keeps serving the API."""
    leader = fleet.leader()
    batches = signed_batches(leader)
    fleet.relay.fail_next("state_call", "stall")
    stalls = fleet.relay.stalls
    cids = new_cids("cutoff")
    pins = fleet.post_everywhere(cids)
    wait_for(lambda: fleet.relay.stalls > stalls, 30)
    cut_lock_session(fleet.database_url)
    fleet.relay.unstall()
    fleet.leader(LEADER_TIMEOUT, not_=leader)
    fleet.wait_pinning(cids, pins)
    assert devchain.orders_of(set(cids)) == {c: 1 for c in cids}
    assert signed_batches(leader) == batches
    assert leader.proc.poll() is None and fleet.role(leader) == "standby"
