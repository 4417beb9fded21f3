"""``GET /metrics`` of a ``w3gate serve`` ordering on the real Crust runtime (devchain, through the test relay)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from devchain_fixtures import crust_env
from test_crust_http import cid_for, pin, status_of, wait_for
from test_metrics import samples, value

pytestmark = pytest.mark.devchain


def test_orders_placed_chain_calls_and_balance(start_server: Any, token: str, devchain: Any, relay: Any,
                                               ordering_account: str) -> None:
    server = start_server(env=crust_env(relay))
    relay.fail_next("author_submitExtrinsic", "drop")  # the first submission loses its connection
    cids = [cid_for("metrics-a"), cid_for("metrics-b")]
    rids = [pin(server, token, cid) for cid in cids]
    wait_for(lambda: all(status_of(server, token, rid)["status"] == "pinning" for rid in rids))

    def scrape() -> dict[Any, float]:
        resp = httpx.get(server.base_url + "/metrics")
        assert resp.status_code == 200, resp.text
        return samples(resp.text)

    def chain_free() -> int:
        with devchain.connected() as client:
            return int(client.account().free)

    # the verdicts are counted as they are written: on PostgreSQL a GET may see them a moment before
    found = wait_for(lambda: (s := scrape()) and value(s, "w3gate_orders_total", outcome="placed") == 2 and s)
    assert devchain.orders_of(set(cids)) == {cid: 1 for cid in cids}  # the runtime's own FileSuccess events
    assert value(found, "w3gate_orders_total", outcome="retry") == 0
    assert value(found, "w3gate_orders_total", outcome="failed") == 0
    assert value(found, "w3gate_pins", status="pinning") == 2
    assert value(found, "w3gate_orders_queued") == 0
    assert value(found, "w3gate_crust_ordering_enabled") == 1
    # the dropped submission is one chain error of that call; the calls are timed
    assert value(found, "w3gate_chain_call_errors_total", call="submit", error="unavailable") == 1
    assert value(found, "w3gate_chain_call_duration_seconds_count", call="submit") >= 2
    assert value(found, "w3gate_chain_call_duration_seconds_count", call="account") >= 1
    assert value(found, "w3gate_chain_call_duration_seconds_sum", call="account") > 0
    # the ordering account's balance, as the chain has it once the submitter has read it after paying (a
    # Prometheus sample is a float64: 10**18 units keep 16 digits)
    wait_for(lambda: value(scrape(), "w3gate_crust_account_balance", kind="free") == float(chain_free()))
    assert chain_free() < 10**18  # the orders were paid from it (ordering_account funds it with 10**18)
