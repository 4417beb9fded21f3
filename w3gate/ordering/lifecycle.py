"""The life of a Crust order: its states, the verdicts that move it, and every transition between them.

This module is the one place that says what an order may become. The store writes what these functions return
(:mod:`w3gate.store.orders`, :mod:`w3gate.store.pins`, :mod:`w3gate.store.ipfs_content`, and the one-statement
pin of :mod:`w3gate.store.postgres_direct`, whose SQL condition is :func:`repin_keeps_order_sql`); the submitter,
the poller and the fetch stage decide with them. It imports nothing of the store or the chain client (only the
chain interface's value types), so every rule here is tested without a database or a chain
(``tests/test_order_lifecycle.py``).

The values of the enums are the ones stored in the ``orders`` table (``status``, ``renew_due``), so a database
written by an earlier release reads the same. An order's ``status`` (new orders)::

    queued --claim--> submitting --ok--> pinning --enough replicas--> pinned
      ^  ^               |  |               |                            |
      |  +--requeue/pause/fail (attempts)---+  +--no record in order_timeout--> failed
      |                  |                  |                            |
      |                  +--failed (attempts used up) --> failed         |
      +---------------- record gone from chain (expired) ----------------+
    failed --pinned again by a user--> queued        queued --fetch gave up / too large--> failed

and its renewal (``renew_due``, only while ``pinning`` or ``pinned``)::

    NOT_DUE --expiry within renewal_window--> DUE --claim--> CLAIMED --ok--> NOT_DUE (renewals + 1)
    CLAIMED --requeue/pause/fail--> DUE    CLAIMED --failed--> STOPPED --pinned again--> NOT_DUE
    CLAIMED --topped up / pool covers it--> PREPAID --expired--> DUE;  PREPAID --renewed by anyone--> NOT_DUE
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum, StrEnum
from typing import Any

from w3gate.crust.chain import FileRecord, MarketCall


class OrderStatus(StrEnum):
    """``orders.status``."""

    QUEUED = "queued"  # waiting to be claimed (and, with an IPFS node, fetched first)
    SUBMITTING = "submitting"  # claimed into a batch: signed and recorded before it is sent
    PINNING = "pinning"  # on chain, fewer replicas than wanted so far
    PINNED = "pinned"  # on chain with enough replicas
    FAILED = "failed"  # given up; a user pinning the content again queues it afresh

    @property
    def pin_status(self) -> PinStatus:
        """What every pin of the content shows (the spec's four statuses: a claimed order is still queued)."""
        return PIN_STATUS_OF_ORDER[self]


class PinStatus(StrEnum):
    """``pins.status``: the pinning service spec's statuses."""

    QUEUED = "queued"
    PINNING = "pinning"
    PINNED = "pinned"
    FAILED = "failed"


PIN_STATUS_OF_ORDER: dict[OrderStatus, PinStatus] = {
    OrderStatus.QUEUED: PinStatus.QUEUED, OrderStatus.SUBMITTING: PinStatus.QUEUED,
    OrderStatus.PINNING: PinStatus.PINNING, OrderStatus.PINNED: PinStatus.PINNED, OrderStatus.FAILED: PinStatus.FAILED}
PLACED = (OrderStatus.PINNING, OrderStatus.PINNED)  # on chain: the poller follows them, renewals apply


class RenewState(IntEnum):
    """``orders.renew_due``: where the renewal of a placed order stands."""

    NOT_DUE = 0
    DUE = 1  # expiry within renewal_window: to be claimed
    CLAIMED = 2  # in a batch being signed, recorded or followed
    STOPPED = 3  # failed max_attempts times: stopped until the file is gone or a user pins the CID again
    PREPAID = 4  # (renewal = prepaid) the file's prepaid pool covers it: due again only once the file has expired


class Verdict(StrEnum):
    """What the chain (or the submitter, for a batch it never sent) says about one CID of a batch."""

    OK = "ok"  # placed, or renewed
    TOPPED = "topped"  # a renewal whose calls were only a prepaid top-up: the chain renews it at expiry
    FAIL = "fail"  # the CID's own failure: an attempt is charged, retried later
    FAILED = "failed"  # a FAIL that used up the attempts
    PAUSE = "pause"  # not the CID's doing (market, account, node, runtime upgrade): re-queued, no attempt charged
    REQUEUE = "requeue"  # never included (era ended): re-queued as it was


WORST_FIRST = (Verdict.FAIL, Verdict.PAUSE, Verdict.REQUEUE, Verdict.OK)  # a CID with several calls takes the worst


class TxStatus(StrEnum):
    """``crust_txs.status``."""

    SENT = "sent"  # recorded (and maybe sent): settled with the chain before anything new is claimed
    INCLUDED = "included"
    DROPPED = "dropped"


class RefusedTransition(ValueError):
    """A transition the lifecycle does not allow (a store or caller bug, never the chain's doing)."""


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # a column a change leaves as it is (``None`` writes NULL)


@dataclass(frozen=True)
class Change:
    """The columns a transition writes to an order (``UNSET``: left as it is). A new ``status`` moves the pins of the
    content with it (:attr:`OrderStatus.pin_status`)."""

    status: OrderStatus | None = None
    renew_due: RenewState | None = None
    attempts: int | None = None
    next_try_ms: int | None = None
    error: str | None = UNSET
    placed_block: int | None = UNSET
    submitted_ms: int | None = UNSET
    file_size: int | None = UNSET
    expires_at: int | None = UNSET
    replicas: int | None = UNSET
    add_renewal: bool = False  # renewals + 1 (the store writes it as an increment)

    def columns(self) -> dict[str, Any]:
        """The set columns as plain database values (no enums), ``renewals`` and ``status`` left to the store."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("status", "add_renewal") or value is UNSET or (value is None and f.name in _NOT_NULL):
                continue
            out[f.name] = int(value) if isinstance(value, IntEnum) else value
        return out

    def __bool__(self) -> bool:
        return self.status is not None or self.add_renewal or bool(self.columns())


_NOT_NULL = frozenset({"renew_due", "attempts", "next_try_ms"})  # None there means: unchanged


# creating a pin ----------------------------------------------------------------------------------------------
NEW_ORDER = OrderStatus.QUEUED  # a content's first pin inserts its order so


def repin(status: OrderStatus, renew: RenewState) -> Change | None:
    """A user pins a content whose order exists: a failed order is queued afresh, a stopped renewal gets a fresh set
    of attempts; otherwise the order stays as it is (None). Exactly when :func:`repin_keeps_order_sql` holds."""
    if status == OrderStatus.FAILED:
        return Change(status=OrderStatus.QUEUED, attempts=0, next_try_ms=0, error=None,
                      renew_due=RenewState.NOT_DUE if renew == RenewState.STOPPED else None)
    if renew == RenewState.STOPPED:
        return Change(renew_due=RenewState.NOT_DUE, attempts=0, next_try_ms=0, error=None)
    return None


def repin_keeps_order_sql(alias: str) -> str:
    """:func:`repin` returning None, as an SQL condition on the order row ``alias`` (the one-statement pin)."""
    return f"{alias}.status <> '{OrderStatus.FAILED}' AND {alias}.renew_due <> {int(RenewState.STOPPED)}"


UNSENT = (OrderStatus.QUEUED, OrderStatus.FAILED)  # the last pin of it deleted, such an order is dropped: nothing paid


# claiming a batch ------------------------------------------------------------------------------------------------
CLAIMABLE_SQL = (f"(o.status = '{OrderStatus.QUEUED}' OR (o.renew_due = {int(RenewState.DUE)} AND o.status IN "
                 f"('{OrderStatus.PINNING}', '{OrderStatus.PINNED}')))")  # a new order, or a renewal due


def claim(status: OrderStatus, renew: RenewState) -> Change:
    """A claimable order taken into a batch: a new order is ``submitting``, a renewal ``CLAIMED``."""
    if status == OrderStatus.QUEUED:
        return Change(status=OrderStatus.SUBMITTING)
    if status in PLACED and renew == RenewState.DUE:
        return Change(renew_due=RenewState.CLAIMED)
    raise RefusedTransition(f"an order {status} with renewal {renew.name} cannot be claimed")


def unclaim(status: OrderStatus, renew: RenewState) -> Change:
    """A claim given back before anything was sent: as it was before :func:`claim`."""
    if status == OrderStatus.SUBMITTING:
        return Change(status=OrderStatus.QUEUED)
    if renew == RenewState.CLAIMED:
        return Change(renew_due=RenewState.DUE)
    raise RefusedTransition(f"an order {status} with renewal {renew.name} holds no claim")


def refuse_before_sending(status: OrderStatus, renew: RenewState, reason: str) -> Change:
    """A claimed order the chain would refuse and keep the fee for (e.g. too large): a new order fails, a renewal
    stops; no attempt is used."""
    if status == OrderStatus.SUBMITTING:
        return Change(status=OrderStatus.FAILED, error=reason)
    if renew == RenewState.CLAIMED:
        return Change(renew_due=RenewState.STOPPED, error=f"renewal stopped: {reason}")
    raise RefusedTransition(f"an order {status} with renewal {renew.name} is not claimed")


def prepaid_covers(renew: RenewState) -> Change:
    """A claimed renewal whose prepaid pool already covers it: nothing to send until the file expires."""
    if renew != RenewState.CLAIMED:
        raise RefusedTransition(f"a renewal {renew.name} is not claimed")
    return Change(renew_due=RenewState.PREPAID, attempts=0, next_try_ms=0, error=None)


# the chain's verdict on a batch ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """The chain's verdict on one CID of a batch, with the reason a failure or a pause gives."""

    verdict: Verdict
    reason: str | None = None


@dataclass(frozen=True)
class Judged:
    """A verdict applied to one order: the final verdict (FAIL becomes FAILED when the attempts are used up), its
    attempts so far, and whether it was a renewal."""

    verdict: Verdict
    attempts: int
    renewal: bool


def judge(status: OrderStatus, attempts: int, verdict: Verdict, max_attempts: int) -> Judged:
    """The verdict on an order of a batch (a new order is ``submitting``; any other is a renewal). Only FAIL charges
    an attempt; PAUSE keeps the count; OK, TOPPED and REQUEUE start it afresh."""
    if verdict == Verdict.FAILED:
        raise RefusedTransition("FAILED is judged, not given: give FAIL")
    # a renewal's order may have moved meanwhile (the poller re-queues a file gone from the chain): still a renewal
    renewal = status != OrderStatus.SUBMITTING
    if verdict == Verdict.TOPPED and not renewal:
        raise RefusedTransition("a new order cannot be topped up: only a renewal has a prepaid pool")
    n = attempts + 1 if verdict == Verdict.FAIL else attempts if verdict == Verdict.PAUSE else 0
    if verdict == Verdict.FAIL and n >= max_attempts:
        verdict = Verdict.FAILED
    return Judged(verdict, n, renewal)


def settle(judged: Judged, reason: str | None, retry_at_ms: int, block: int | None, now_ms: int) -> Change:
    """The change a judged verdict makes: the order placed, re-queued, retried at ``retry_at_ms``, failed; or
    its renewal done, topped up, due again or stopped."""
    v, n = judged.verdict, judged.attempts
    if not judged.renewal:
        match v:
            case Verdict.OK:
                return Change(status=OrderStatus.PINNING, placed_block=block, attempts=0, next_try_ms=0, error=None,
                              submitted_ms=now_ms)
            case Verdict.REQUEUE:
                return Change(status=OrderStatus.QUEUED)
            case Verdict.PAUSE:
                return Change(status=OrderStatus.QUEUED, error=reason)
            case Verdict.FAIL:
                return Change(status=OrderStatus.QUEUED, attempts=n, next_try_ms=retry_at_ms, error=reason)
            case Verdict.FAILED:
                return Change(status=OrderStatus.FAILED, attempts=n, error=reason)
    else:
        match v:
            case Verdict.TOPPED:
                return Change(renew_due=RenewState.PREPAID, attempts=0, next_try_ms=0, error=None)
            case Verdict.OK:
                return Change(renew_due=RenewState.NOT_DUE, add_renewal=True, attempts=0, next_try_ms=0, error=None)
            case Verdict.REQUEUE:
                return Change(renew_due=RenewState.DUE)
            case Verdict.PAUSE:
                return Change(renew_due=RenewState.DUE, error=reason)
            case Verdict.FAIL:
                return Change(renew_due=RenewState.DUE, attempts=n, next_try_ms=retry_at_ms, error=reason)
            case Verdict.FAILED:
                return Change(renew_due=RenewState.STOPPED, attempts=n,
                              error=f"renewal stopped after {n} failed attempts: {reason}")
    raise RefusedTransition(f"no transition for {judged}")  # pragma: no cover - judge() lets none through


def worst(verdicts: list[Verdict]) -> Verdict:
    """One verdict for a CID with several calls in a batch: the worst of them."""
    return min(verdicts, key=WORST_FIRST.index)


# the poller: the chain's file record -> the order ------------------------------------------------------------
@dataclass(frozen=True)
class WatchedOrder:
    """A placed order as the poller reads it (:func:`w3gate.store.orders.watched_page`)."""

    cid: str
    status: OrderStatus
    submitted_ms: int | None
    renew_due: RenewState
    file_size: int | None
    expires_at: int | None
    replicas: int | None


@dataclass(frozen=True)
class PollRules:
    """The settings the poller's transitions depend on."""

    replicas: int  # replicas wanted for ``pinned``
    renewal_window: int  # blocks before expiry a renewal falls due
    order_timeout: float  # seconds: a placed order with no file record after this long failed


@dataclass(frozen=True)
class PollUpdate:
    """A change the poller found, conditional on the order's status still being ``expect`` when ``change`` moves
    the status (the submitter may have moved it meanwhile)."""

    cid: str
    change: Change
    expect: OrderStatus | None = None


def observe(order: WatchedOrder, record: FileRecord | None, head: int, now_ms: int,
            rules: PollRules) -> PollUpdate | None:
    """What the chain's file record (or its absence) at block ``head`` changes in a placed order, if anything."""
    if order.status not in PLACED:
        raise RefusedTransition(f"an order {order.status} is not watched")
    moves: dict[str, Any] = {}
    expect: OrderStatus | None = None
    if record is not None:
        expires = record.expires_at or None
        if (order.file_size, order.expires_at, order.replicas) != (record.file_size, expires, record.replicas):
            moves.update(file_size=record.file_size, expires_at=expires, replicas=record.replicas)
        if order.status == OrderStatus.PINNING and record.replicas >= rules.replicas:
            moves.update(status=OrderStatus.PINNED, error=None)
            expect = OrderStatus.PINNING
        if expires and expires - head <= rules.renewal_window and order.renew_due == RenewState.NOT_DUE:
            moves["renew_due"] = RenewState.DUE
        elif expires and order.renew_due == RenewState.PREPAID:  # due at expiry, or renewed by anyone
            if expires <= head:
                moves["renew_due"] = RenewState.DUE
            elif expires - head > rules.renewal_window:
                moves["renew_due"] = RenewState.NOT_DUE
    elif order.status == OrderStatus.PINNING:
        if now_ms - (order.submitted_ms or now_ms) > rules.order_timeout * 1000:
            moves.update(status=OrderStatus.FAILED,
                         error=f"no file record on chain {rules.order_timeout:g} s after the order was placed")
            expect = OrderStatus.PINNING
    else:  # pinned, and the record is gone (expired and removed): order it again
        moves.update(status=OrderStatus.QUEUED, attempts=0, next_try_ms=0, renew_due=RenewState.NOT_DUE,
                     error="file record expired on chain; ordering again")
        expect = OrderStatus.PINNED
    return PollUpdate(order.cid, Change(**moves), expect) if moves else None


# the fetch stage (the operator's IPFS node) --------------------------------------------------------------------
FETCHABLE = OrderStatus.QUEUED  # only a new order waits for its content to be fetched


def fetch_failed(status: OrderStatus, reason: str) -> Change:
    """The content could not be fetched, or is too large to order: a queued order fails (nothing was ordered)."""
    if status != FETCHABLE:
        raise RefusedTransition(f"an order {status} is past fetching")
    return Change(status=OrderStatus.FAILED, error=reason[:1000])


def too_large(size: int, max_file_size: int | None) -> str | None:
    """Why content of ``size`` bytes must not be ordered (the chain refuses it and keeps the fee), or None."""
    if max_file_size is not None and size >= max_file_size:
        return (f"the content is {size} bytes, at or over the chain's maximum file size ({max_file_size} bytes): "
                "not ordered")
    return None


BatchCall = str | MarketCall  # one call of a batch: an order (its CID) or a prepaid renewal's call


def call_cid(call: BatchCall) -> str:
    """The CID a batch call is for."""
    return call if isinstance(call, str) else call.cid


@dataclass(frozen=True)
class RecordedBatch:
    """A signed batch as recorded before it is sent (``crust_txs``): what the submitter settles with the chain."""

    hash: str
    nonce: int
    extrinsic: str  # 0x hex
    start_block: int
    era_end: int  # the last block it can be included in
    spec_version: int | None  # the runtime it was signed for (None: recorded before this was kept)
    calls: tuple[BatchCall, ...] = ()  # in batch order

    @property
    def cids(self) -> list[str]:
        """The CIDs of its calls, each once, in order (a prepaid renewal may be two calls)."""
        return list(dict.fromkeys(call_cid(c) for c in self.calls))


@dataclass(frozen=True)
class Claimed:
    """An order claimed into a batch: what the submitter needs to order or renew it."""

    cid: str
    file_size: int | None  # the chain's record's size once there is one (renewals), else the size the node measured
    renewal: bool
