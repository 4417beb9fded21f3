"""``[limits] cru_per_day`` end to end: w3gate serve ordering on the real Crust runtime stops placing new orders
once the day's recorded batches cost the budget; the pins wait queued (not failed), /healthz says so, and the
day's spending is kept in the database across a restart."""

from __future__ import annotations

import time

import pytest
from devchain_fixtures import crust_env
from test_crust_http import cid_for, health, pin, status_of, wait_for

pytestmark = pytest.mark.devchain


def test_orders_wait_queued_once_the_days_cru_is_spent(start_server, token, devchain, relay, ordering_account):
    budget = {"W3GATE_LIMITS_CRU_PER_DAY": "1"}  # one smallest unit: the first batch spends it
    server = start_server(env=crust_env(relay, **budget))
    first = pin(server, token, cid_for("budget-first"))
    wait_for(lambda: status_of(server, token, first)["status"] == "pinning")
    sent = len(relay.submitted)

    second = pin(server, token, cid_for("budget-second"))
    time.sleep(2)  # ten order intervals: the submitter had every chance to claim it
    assert status_of(server, token, second)["status"] == "queued"
    assert len(relay.submitted) == sent
    ordering = health(server)["ordering"]
    assert ordering["budget_spent"] is True and ordering["cru_per_day"] == "1"
    assert int(ordering["cru_spent_today"]) > 1  # the first batch's computed cost
    assert "daily budget" in server.log_text()

    server.stop()
    server = start_server(env=crust_env(relay, **budget), data_dir=server.data_dir)
    wait_for(lambda: health(server)["ordering"]["budget_spent"])  # the day's spending was kept
    time.sleep(1)
    assert status_of(server, token, second)["status"] == "queued"
    assert len(relay.submitted) == sent

    server.stop()
    server = start_server(env=crust_env(relay, W3GATE_LIMITS_CRU_PER_DAY="0"), data_dir=server.data_dir)
    wait_for(lambda: status_of(server, token, second)["status"] == "pinning")  # only the budget held it
    assert health(server)["ordering"]["budget_spent"] is False
