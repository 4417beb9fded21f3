"""The order lifecycle's rules (w3gate.ordering.lifecycle), each transition and each refused one: no database, no
chain, no process. The store tests and the devchain tests check that the store writes what these return."""

from __future__ import annotations

import sqlite3

import pytest

from w3gate.crust.chain import FileRecord
from w3gate.ordering import lifecycle as lc
from w3gate.ordering.lifecycle import (
    UNSET,
    Change,
    Judged,
    OrderStatus,
    PinStatus,
    PollRules,
    RefusedTransition,
    RenewState,
    Verdict,
    WatchedOrder,
)

pytestmark = pytest.mark.no_database  # pure functions: the PostgreSQL pass leaves them out

Q, S, PG, PD, F = (OrderStatus.QUEUED, OrderStatus.SUBMITTING, OrderStatus.PINNING, OrderStatus.PINNED,
                   OrderStatus.FAILED)
RULES = PollRules(replicas=2, renewal_window=100, order_timeout=60.0)
HEAD, NOW = 1_000, 5_000_000


def test_stored_values_are_the_ones_earlier_releases_wrote() -> None:
    assert [s.value for s in OrderStatus] == ["queued", "submitting", "pinning", "pinned", "failed"]
    assert [(s.name, s.value) for s in RenewState] == [
        ("NOT_DUE", 0), ("DUE", 1), ("CLAIMED", 2), ("STOPPED", 3), ("PREPAID", 4)]
    assert {s: s.pin_status for s in OrderStatus} == {Q: PinStatus.QUEUED, S: PinStatus.QUEUED,
                                                      PG: PinStatus.PINNING, PD: PinStatus.PINNED, F: PinStatus.FAILED}
    assert [v.value for v in lc.TxStatus] == ["sent", "included", "dropped"]
    # what the drivers get: plain values a database of an earlier release compares equal
    assert OrderStatus("pinning") is PG and RenewState(3) is RenewState.STOPPED
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (s TEXT, r INTEGER)")
    db.execute("INSERT INTO t VALUES (?, ?)", (PG, RenewState.PREPAID))
    assert db.execute("SELECT s, r, typeof(r) FROM t").fetchone() == ("pinning", 4, "integer")


def test_change_columns_are_plain_values_and_unset_ones_left_out() -> None:
    change = Change(status=Q, renew_due=RenewState.DUE, error=None, attempts=0)
    assert change.columns() == {"renew_due": 1, "error": None, "attempts": 0}
    assert type(change.columns()["renew_due"]) is int
    assert Change().columns() == {} and not Change()
    assert Change(add_renewal=True) and Change(status=F)
    assert Change().error is UNSET and repr(UNSET) == "UNSET"


# creating a pin ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", list(OrderStatus))
@pytest.mark.parametrize("renew", list(RenewState))
def test_repin_changes_only_a_failed_order_or_a_stopped_renewal(status: OrderStatus, renew: RenewState) -> None:
    change = lc.repin(status, renew)
    if status == F:
        assert change == Change(status=Q, attempts=0, next_try_ms=0, error=None,
                                renew_due=RenewState.NOT_DUE if renew == RenewState.STOPPED else None)
    elif renew == RenewState.STOPPED:
        assert change == Change(renew_due=RenewState.NOT_DUE, attempts=0, next_try_ms=0, error=None)
    else:
        assert change is None
    assert lc.NEW_ORDER == Q


@pytest.mark.parametrize("status", list(OrderStatus))
@pytest.mark.parametrize("renew", list(RenewState))
def test_the_one_statement_pin_uses_the_same_rule_as_repin(status: OrderStatus, renew: RenewState) -> None:
    """The SQL condition of the PostgreSQL one-statement pin holds exactly where repin() changes nothing."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE orders (status TEXT, renew_due INTEGER)")
    db.execute("INSERT INTO orders VALUES (?, ?)", (status.value, int(renew)))
    kept = db.execute(f"SELECT COUNT(*) FROM orders o WHERE {lc.repin_keeps_order_sql('o')}").fetchone()[0]
    assert bool(kept) == (lc.repin(status, renew) is None)


@pytest.mark.parametrize("status", list(OrderStatus))
def test_only_unsent_orders_are_dropped_with_their_last_pin(status: OrderStatus) -> None:
    assert (status in lc.UNSENT) == (status in (Q, F))


# claiming -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", list(OrderStatus))
@pytest.mark.parametrize("renew", list(RenewState))
def test_claim_takes_a_queued_order_or_a_due_renewal_and_nothing_else(status: OrderStatus,
                                                                      renew: RenewState) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE orders (status TEXT, renew_due INTEGER)")
    db.execute("INSERT INTO orders VALUES (?, ?)", (status.value, int(renew)))
    claimable = bool(db.execute(f"SELECT COUNT(*) FROM orders o WHERE {lc.CLAIMABLE_SQL}").fetchone()[0])
    if status == Q:
        assert lc.claim(status, renew) == Change(status=S)
    elif status in (PG, PD) and renew == RenewState.DUE:
        assert lc.claim(status, renew) == Change(renew_due=RenewState.CLAIMED)
    else:
        with pytest.raises(RefusedTransition):
            lc.claim(status, renew)
        assert not claimable
        return
    assert claimable


@pytest.mark.parametrize("status", list(OrderStatus))
@pytest.mark.parametrize("renew", list(RenewState))
def test_unclaim_undoes_a_claim_and_refuses_an_order_without_one(status: OrderStatus, renew: RenewState) -> None:
    if status == S:
        assert lc.unclaim(status, renew) == Change(status=Q)
    elif renew == RenewState.CLAIMED:
        assert lc.unclaim(status, renew) == Change(renew_due=RenewState.DUE)
    else:
        with pytest.raises(RefusedTransition):
            lc.unclaim(status, renew)


def test_a_claim_undone_is_the_state_before_it() -> None:
    for status, renew in ((Q, RenewState.NOT_DUE), (PG, RenewState.DUE), (PD, RenewState.DUE)):
        claimed = lc.claim(status, renew)
        after = (claimed.status or status, claimed.renew_due if claimed.renew_due is not None else renew)
        undone = lc.unclaim(*after)
        assert (undone.status or after[0], undone.renew_due if undone.renew_due is not None else after[1]) == (
            status, renew)


@pytest.mark.parametrize("status", list(OrderStatus))
@pytest.mark.parametrize("renew", list(RenewState))
def test_refused_before_sending_fails_a_new_order_and_stops_a_renewal(status: OrderStatus,
                                                                      renew: RenewState) -> None:
    if status == S:
        assert lc.refuse_before_sending(status, renew, "too large") == Change(status=F, error="too large")
    elif renew == RenewState.CLAIMED:
        assert lc.refuse_before_sending(status, renew, "too large") == Change(
            renew_due=RenewState.STOPPED, error="renewal stopped: too large")
    else:
        with pytest.raises(RefusedTransition):
            lc.refuse_before_sending(status, renew, "too large")


@pytest.mark.parametrize("renew", list(RenewState))
def test_prepaid_covers_only_a_claimed_renewal(renew: RenewState) -> None:
    if renew == RenewState.CLAIMED:
        assert lc.prepaid_covers(renew) == Change(renew_due=RenewState.PREPAID, attempts=0, next_try_ms=0,
                                                  error=None)
    else:
        with pytest.raises(RefusedTransition):
            lc.prepaid_covers(renew)


# the chain's verdict ------------------------------------------------------------------------------------------------
def test_judge_charges_an_attempt_only_for_a_failure() -> None:
    assert lc.judge(S, 1, Verdict.FAIL, 3) == Judged(Verdict.FAIL, 2, False)
    assert lc.judge(S, 2, Verdict.FAIL, 3) == Judged(Verdict.FAILED, 3, False)  # the last attempt
    assert lc.judge(S, 2, Verdict.PAUSE, 3) == Judged(Verdict.PAUSE, 2, False)  # kept, not charged
    assert lc.judge(S, 2, Verdict.REQUEUE, 3) == Judged(Verdict.REQUEUE, 0, False)
    assert lc.judge(S, 2, Verdict.OK, 3) == Judged(Verdict.OK, 0, False)
    assert lc.judge(PD, 2, Verdict.TOPPED, 3) == Judged(Verdict.TOPPED, 0, True)
    assert lc.judge(PG, 0, Verdict.FAIL, 1) == Judged(Verdict.FAILED, 1, True)
    # a renewal whose order the poller re-queued meanwhile (its record gone) is still judged as a renewal
    assert lc.judge(Q, 0, Verdict.OK, 3).renewal


def test_judge_refuses_a_top_up_of_a_new_order_and_a_given_failed() -> None:
    with pytest.raises(RefusedTransition):
        lc.judge(S, 0, Verdict.TOPPED, 3)
    with pytest.raises(RefusedTransition):
        lc.judge(S, 0, Verdict.FAILED, 3)


def test_settle_new_orders() -> None:
    def settle(verdict: Verdict, attempts: int = 0) -> Change:
        return lc.settle(Judged(verdict, attempts, False), "why", 777, 42, NOW)

    assert settle(Verdict.OK) == Change(status=PG, placed_block=42, attempts=0, next_try_ms=0, error=None,
                                        submitted_ms=NOW)
    assert settle(Verdict.REQUEUE) == Change(status=Q)
    assert settle(Verdict.PAUSE, 2) == Change(status=Q, error="why")
    assert settle(Verdict.FAIL, 1) == Change(status=Q, attempts=1, next_try_ms=777, error="why")
    assert settle(Verdict.FAILED, 3) == Change(status=F, attempts=3, error="why")


def test_settle_renewals() -> None:
    def settle(verdict: Verdict, attempts: int = 0) -> Change:
        return lc.settle(Judged(verdict, attempts, True), "why", 777, 42, NOW)

    assert settle(Verdict.OK) == Change(renew_due=RenewState.NOT_DUE, add_renewal=True, attempts=0, next_try_ms=0,
                                        error=None)
    assert settle(Verdict.TOPPED) == Change(renew_due=RenewState.PREPAID, attempts=0, next_try_ms=0, error=None)
    assert settle(Verdict.REQUEUE) == Change(renew_due=RenewState.DUE)
    assert settle(Verdict.PAUSE, 1) == Change(renew_due=RenewState.DUE, error="why")
    assert settle(Verdict.FAIL, 1) == Change(renew_due=RenewState.DUE, attempts=1, next_try_ms=777, error="why")
    assert settle(Verdict.FAILED, 3) == Change(renew_due=RenewState.STOPPED, attempts=3,
                                               error="renewal stopped after 3 failed attempts: why")
    for change in (settle(v) for v in (Verdict.OK, Verdict.TOPPED, Verdict.REQUEUE, Verdict.FAIL)):
        assert change.status is None  # a renewal never moves the order's status


def test_the_worst_verdict_of_a_cids_calls_wins() -> None:
    assert lc.worst([Verdict.OK, Verdict.FAIL, Verdict.PAUSE]) == Verdict.FAIL
    assert lc.worst([Verdict.OK, Verdict.REQUEUE]) == Verdict.REQUEUE
    assert lc.worst([Verdict.REQUEUE, Verdict.PAUSE]) == Verdict.PAUSE
    assert lc.worst([Verdict.OK]) == Verdict.OK


# the poller ---------------------------------------------------------------------------------------------------------
def watched(status: OrderStatus = PG, renew: RenewState = RenewState.NOT_DUE, *, size: int | None = None,
            expires: int | None = None, replicas: int | None = None, submitted: int | None = NOW) -> WatchedOrder:
    return WatchedOrder("bafk", status, submitted, renew, size, expires, replicas)


def observe(order: WatchedOrder, record: FileRecord | None, now: int = NOW) -> lc.PollUpdate | None:
    return lc.observe(order, record, HEAD, now, RULES)


def test_poll_pinning_to_pinned_once_enough_replicas() -> None:
    update = observe(watched(), FileRecord(10, 5_000, 2))
    assert update is not None and update.expect == PG
    assert update.change == Change(status=PD, error=None, file_size=10, expires_at=5_000, replicas=2)
    update = observe(watched(), FileRecord(10, 5_000, 1))  # one replica short: the record's fields only
    assert update is not None and update.expect is None
    assert update.change == Change(file_size=10, expires_at=5_000, replicas=1)
    # nothing changed: nothing written; an unreported expiry (0) is stored as NULL
    assert observe(watched(size=10, expires=5_000, replicas=1), FileRecord(10, 5_000, 1)) is None
    assert observe(watched(size=10, replicas=0), FileRecord(10, 0, 0)) is None


def test_poll_pinning_without_a_record_fails_only_after_order_timeout() -> None:
    assert observe(watched(submitted=NOW), None, NOW + 60_000) is None
    update = observe(watched(submitted=NOW), None, NOW + 60_001)
    assert update is not None and update.expect == PG
    assert update.change == Change(status=F, error="no file record on chain 60 s after the order was placed")
    assert observe(watched(submitted=None), None, NOW + 10**9) is None  # no submission time: not timed out


def test_poll_pinned_whose_record_is_gone_is_ordered_again() -> None:
    update = observe(watched(PD, RenewState.STOPPED), None)
    assert update is not None and update.expect == PD
    assert update.change == Change(status=Q, attempts=0, next_try_ms=0, renew_due=RenewState.NOT_DUE,
                                   error="file record expired on chain; ordering again")


def test_poll_renewal_falls_due_within_the_window_only_when_not_due() -> None:
    near = FileRecord(10, HEAD + 100, 2)
    same = {"size": 10, "expires": HEAD + 100, "replicas": 2}
    update = observe(watched(PD, **same), near)
    assert update is not None and update.change == Change(renew_due=RenewState.DUE)
    assert observe(watched(PD, **same), FileRecord(10, HEAD + 101, 2)) is not None  # only the new expiry
    assert observe(watched(PD, RenewState.NOT_DUE, size=10, expires=HEAD + 101, replicas=2),
                   FileRecord(10, HEAD + 101, 2)) is None  # outside the window
    for renew in (RenewState.DUE, RenewState.CLAIMED, RenewState.STOPPED):
        assert observe(watched(PD, renew, **same), near) is None  # already due, claimed or stopped: left as is


def test_poll_prepaid_renewal_due_at_expiry_or_done_by_anyone() -> None:
    expired = FileRecord(10, HEAD, 2)
    update = observe(watched(PD, RenewState.PREPAID, size=10, expires=HEAD, replicas=2), expired)
    assert update is not None and update.change == Change(renew_due=RenewState.DUE)
    renewed = FileRecord(10, HEAD + 101, 2)  # anyone renewed it: expiry moved out of the window
    update = observe(watched(PD, RenewState.PREPAID, size=10, expires=HEAD + 101, replicas=2), renewed)
    assert update is not None and update.change == Change(renew_due=RenewState.NOT_DUE)
    waiting = FileRecord(10, HEAD + 50, 2)  # before expiry, within the window: the pool covers it, wait
    assert observe(watched(PD, RenewState.PREPAID, size=10, expires=HEAD + 50, replicas=2), waiting) is None


@pytest.mark.parametrize("status", [Q, S, F])
def test_poll_refuses_an_order_not_placed(status: OrderStatus) -> None:
    with pytest.raises(RefusedTransition):
        observe(watched(status), None)


# the fetch stage ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", list(OrderStatus))
def test_fetch_failure_fails_only_a_queued_order(status: OrderStatus) -> None:
    if status == Q:
        assert lc.fetch_failed(status, "x" * 2000) == Change(status=F, error="x" * 1000)
    else:
        with pytest.raises(RefusedTransition):
            lc.fetch_failed(status, "gone")


def test_too_large_at_or_over_the_chains_maximum() -> None:
    assert lc.too_large(99, 100) is None and lc.too_large(10**12, None) is None
    assert lc.too_large(100, 100) == ("the content is 100 bytes, at or over the chain's maximum file size "
                                      "(100 bytes): not ordered")
