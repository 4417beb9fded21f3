"""``GET /metrics`` of a ``w3gate serve`` driving a real IPFS node (js-ipfs): the fetch stage's counters, bytes,
duration and the content held, after one content is fetched and one cannot be."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import httpx
import pytest
from ipfs_fixtures import random_bytes, two_nodes
from test_ipfs_node import ipfs_env, pin, status_of, wait_for
from test_metrics import samples, value


@pytest.fixture(scope="module")
def ipfs_nodes(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from two_nodes(tmp_path_factory)


def test_fetches_are_counted(start_server: Any, token: str, ipfs_nodes: Any) -> None:
    user, node = ipfs_nodes["user"], ipfs_nodes["service"]
    cid = user.add(random_bytes(200_000))
    size = user.cumulative_size(cid)
    missing = user.add(random_bytes(10_000), only_hash=True)  # no node has it
    server = start_server(env=ipfs_env(node, W3GATE_IPFS_FETCH_TIMEOUT="4"))  # no chain: fetched content stays
    fetched, lost = pin(server, token, cid, [user.address]), pin(server, token, missing, [user.address])
    wait_for(lambda: status_of(server, token, fetched)["info"].get("dag_size"))
    wait_for(lambda: status_of(server, token, lost)["status"] == "failed")

    resp = httpx.get(server.base_url + "/metrics", timeout=30)
    assert resp.status_code == 200, resp.text
    found = samples(resp.text)
    assert value(found, "w3gate_ipfs_fetches_succeeded_total") == 1
    assert value(found, "w3gate_ipfs_fetches_failed_total", reason="timeout") == 1
    assert value(found, "w3gate_ipfs_fetches_failed_total", reason="too_large") == 0
    failed = sum(v for (name, _), v in found.items() if name == "w3gate_ipfs_fetches_failed_total")
    assert value(found, "w3gate_ipfs_fetches_started_total") == 1 + failed  # every try ends one way, none running
    assert value(found, "w3gate_ipfs_fetched_bytes_total") == size
    assert value(found, "w3gate_ipfs_fetch_duration_seconds_count") == 1
    assert value(found, "w3gate_ipfs_fetch_duration_seconds_bucket", le="+Inf") == 1
    assert value(found, "w3gate_ipfs_content", state="held") == 1
    assert value(found, "w3gate_ipfs_content", state="fetching") == 0

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("W3GATE_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is missing and W3GATE_REQUIRE_PROMTOOL=1 (Debian package prometheus)")
        return
    check = subprocess.run([promtool, "check", "metrics"], input=resp.text, capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), check.stdout + check.stderr


@pytest.mark.skipif(not os.environ.get("W3GATE_TEST_POSTGRES_URL"), reason="several instances need PostgreSQL")
def test_several_instances_fetch_each_content_once(start_server: Any, token: str, ipfs_nodes: Any) -> None:
    """Two instances on one PostgreSQL database and one node, pins posted to both: every content is fetched once,
    by the instance that leads (the fetcher is the ordering leader's work), never by both."""
    from helpers import new_postgres_database

    user, node = ipfs_nodes["user"], ipfs_nodes["service"]
    url = new_postgres_database(os.environ["W3GATE_TEST_POSTGRES_URL"])
    servers = [start_server(env=ipfs_env(node), database_url=url) for _ in range(2)]
    cids = [user.add(random_bytes(50_000)) for _ in range(4)]
    pins = [(servers[i % 2], pin(servers[i % 2], token, cid, [user.address])) for i, cid in enumerate(cids)]
    for server, rid in pins:
        wait_for(lambda: status_of(server, token, rid)["info"].get("dag_size"))  # noqa: B023 - used at once

    def started(server: Any) -> float:
        return value(samples(httpx.get(server.base_url + "/metrics", timeout=30).text),
                     "w3gate_ipfs_fetches_started_total")

    counts = sorted(started(server) for server in servers)
    assert counts == [0, len(cids)]  # the standby fetched nothing; the leader each content once
