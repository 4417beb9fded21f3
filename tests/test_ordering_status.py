"""What the ordering components show /healthz and /metrics (w3gate.ordering.status): records no reader can
change, put together as one shared record would have been (the last report wins). No database, no chain."""

from __future__ import annotations

import dataclasses

import pytest

from w3gate.ordering.status import (
    BudgetStatus,
    ChainStatus,
    LastError,
    OrderingStatus,
    PollerStatus,
    SubmitterStatus,
    sequence,
)

pytestmark = pytest.mark.no_database

HEALTHZ_KEYS = [  # /healthz "ordering", in the order earlier releases wrote them
    "ordering", "ordering_enabled", "chain_connected", "chain_url", "account", "free_balance", "min_balance",
    "below_minimum", "runtime_spec_version", "order_call", "files_map", "last_error", "last_error_ms", "orders",
    "orders_placed", "last_poll_ms", "usable_balance", "paused", "paused_until_ms", "max_file_size", "era_period",
    "renewal", "last_batch_cost", "role", "cru_per_day", "cru_spent_today", "budget_spent"]


def test_an_ordering_off_status_reads_as_before() -> None:
    status = OrderingStatus.combine([ChainStatus()], SubmitterStatus(), chain_url="wss://rpc.example",
                                    min_balance=5, poller=PollerStatus(), budget=BudgetStatus())
    shown = status.as_dict()
    assert list(shown) == HEALTHZ_KEYS
    assert shown["ordering"] == "off" and shown["ordering_enabled"] is False and shown["renewal"] == "reorder"
    assert (shown["min_balance"], shown["cru_per_day"], shown["free_balance"]) == ("5", "0", None)
    assert shown["last_error"] is None and shown["orders"] == {}


def test_the_records_are_read_only() -> None:
    status = OrderingStatus()
    for record, name in ((status, "role"), (status.chain, "connected"), (status.submitter, "paused"),
                         (status.poller, "last_poll_ms"), (status.budget, "budget_spent")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, name, None)


def test_the_connection_and_the_error_reported_last_win() -> None:
    submitter_conn = ChainStatus(connected=True, spec_version=1, max_file_size=10, seq=sequence())
    poller_conn = ChainStatus(connected=False, spec_version=1, error=LastError.now("poller: lost"), seq=sequence())
    submitter = SubmitterStatus(free_balance=7, error=LastError.now("paused: market off"))
    status = OrderingStatus.combine([submitter_conn, poller_conn], submitter, ordering_enabled=True,
                                    poller=PollerStatus(), budget=BudgetStatus(cru_per_day=3, cru_spent_today=1))
    assert status.chain_connected is False  # the poller's connection reported last: lost
    assert status.last_error == "paused: market off"  # the submitter's error came after the poller's
    assert status.last_error_ms == submitter.error.at_ms  # type: ignore[union-attr]
    shown = status.as_dict()
    assert (shown["ordering"], shown["free_balance"], shown["cru_per_day"], shown["cru_spent_today"]) == (
        "on", "7", "3", "1")
    again = ChainStatus(connected=True, spec_version=4, seq=sequence())  # reconnected after an upgrade
    status = OrderingStatus.combine([again, poller_conn], submitter, poller=PollerStatus(), budget=BudgetStatus())
    assert status.chain_connected is True and status.as_dict()["runtime_spec_version"] == 4


def test_an_error_is_cut_to_500_characters() -> None:
    assert len(LastError.now("x" * 900).text) == 500
