"""Crust order bookkeeping (asyncio side: the store's named operations run these, w3gate.store.calls).

Every state change of an order updates the ``pins.status`` of its content (``cid_key``: the pins of every
text form of the CID) in the same transaction. ``orders.cid`` is the text ordered on chain. Claims
are conditional UPDATEs (``... WHERE status = 'queued'``), so two w3gate instances on one PostgreSQL
never claim, and so never order, the same CID twice. The life of a batch:

1. :func:`claim` queued CIDs (status ``submitting``, ``tx_hash`` = a claim token);
2. sign, then :func:`record_tx`: the extrinsic's bytes and hash are stored before it is sent;
3. send, find it on chain, then :func:`resolve_tx` per item (pinning / retry / failed / paused).

Only orders that a pin still wants are claimed, renewed or polled (``EXISTS`` a pin of the CID): deleting
the last pin of a CID stops its spending at once, and pinning it again resumes it.

A crash after 1 leaves claim tokens (:func:`release_stale_claims` frees them: nothing was sent); after 2
leaves an open ``crust_txs`` row that the submitter reconciles with the chain before anything else.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tortoise.expressions import F, Subquery

from w3gate.crust.chain import MarketCall
from w3gate.ordering import lifecycle
from w3gate.ordering.lifecycle import (
    CLAIMABLE_SQL,
    BatchCall,
    Change,
    Claimed,
    Judged,
    OrderStatus,
    Outcome,
    PollUpdate,
    RecordedBatch,
    RenewState,
    TxStatus,
    Verdict,
    WatchedOrder,
)
from w3gate.store.models import CrustTx, Order, Pin
from w3gate.store.rawsql import Handle, Sql, dialect
from w3gate.store.users import DAY_MS

if TYPE_CHECKING:
    from w3gate.store.interface import Store

CLAIM_PREFIX = "claim:"


class ClaimLost(Exception):
    """Another instance reset or took the claimed rows: the batch must not be sent."""


def _pins_of(conn: Any, cids: Sequence[str]) -> Any:
    """The pins of the orders ``cids`` (chain texts), whatever text form each pin was made with."""
    return Pin.filter(cid_key__in=Subquery(Order.filter(cid__in=list(cids)).values("cid_key"))).using_db(conn)


async def _apply(conn: Any, cids: Sequence[str], change: Change, now_ms: int, where: dict[str, Any] | None = None,
                 expect: OrderStatus | None = None, **extra: Any) -> int:
    """Write a lifecycle change (and the store's ``extra`` columns) to the orders ``cids`` that are still in status
    ``expect`` and match ``where``; a new status moves their pins, unless the pins show the same for both."""
    if not cids or not change:
        return 0
    columns = change.columns()
    if change.add_renewal:
        columns["renewals"] = F("renewals") + 1
    if change.status is not None:
        columns["status"] = change.status.value
    condition = dict(where or {})
    if expect is not None:
        condition["status"] = expect.value
    pins_move = change.status is not None and (expect is None or expect.pin_status != change.status.pin_status)
    if pins_move and condition and len(cids) > 1:  # only the pins of the orders that match move
        cids = [str(c) for c in await Order.filter(cid__in=list(cids), **condition).using_db(conn).values_list(
            "cid", flat=True)]
    if not cids:
        return 0
    moved = int(await Order.filter(cid__in=list(cids), **condition).using_db(conn).update(
        updated_ms=now_ms, **columns, **extra))
    if pins_move and moved and change.status is not None:
        await _pins_of(conn, cids).update(status=change.status.pin_status.value)
    return moved


_WANTED = "EXISTS (SELECT 1 FROM pins p WHERE p.cid_key = o.cid_key)"


# a new order whose content the operator's IPFS node holds and has measured (w3gate.store.ipfs_content)
_FETCHED = (f"(o.status <> '{OrderStatus.QUEUED}' OR (o.dag_size IS NOT NULL AND EXISTS (SELECT 1 FROM ipfs_content c"
            " WHERE c.cid_key = o.cid_key AND c.state = 'held')))")


async def claim(db: Handle, token: str, limit: int, now_ms: int, fetched_only: bool = False) -> list[Claimed]:
    """Claim up to ``limit`` wanted orders due now, oldest first: new orders, then renewals. ``fetched_only``
    (an IPFS node is configured): a new order only once the node holds its content and measured it."""
    async with db.transaction() as conn:
        sql = Sql(dialect(conn))
        due = await conn.execute_query_dict(
            "SELECT o.cid, o.status FROM orders o WHERE o.next_try_ms <= " + sql.arg(now_ms)
            + f" AND {CLAIMABLE_SQL}"
            + (f" AND {_FETCHED}" if fetched_only else "")
            + f" AND {_WANTED} ORDER BY o.created_ms, o.cid LIMIT " + sql.arg(limit),
            sql.args,
        )
        new = [r["cid"] for r in due if r["status"] == OrderStatus.QUEUED]
        renew = [r["cid"] for r in due if r["status"] != OrderStatus.QUEUED]
        # conditional on the state read: another instance may have claimed them meanwhile
        await _apply(conn, new, lifecycle.claim(OrderStatus.QUEUED, RenewState.NOT_DUE), now_ms,
                     expect=OrderStatus.QUEUED, tx_hash=token, submitted_ms=now_ms)
        await _apply(conn, renew, lifecycle.claim(OrderStatus.PINNED, RenewState.DUE), now_ms,
                     where={"renew_due": int(RenewState.DUE)}, tx_hash=token)
        rows = await Order.filter(tx_hash=token).using_db(conn).order_by("created_ms", "cid")
        # the chain's record's size once there is one (renewals), else the size the node measured
        return [Claimed(r.cid, r.file_size if r.file_size is not None else r.dag_size,
                        r.status != OrderStatus.SUBMITTING) for r in rows]


async def record_tx(db: Handle, token: str, tx: RecordedBatch, cids: Sequence[str], now_ms: int,
                    costs: dict[str, int] | None = None, renewal: str | None = None,
                    calls: Sequence[BatchCall] | None = None) -> None:
    """Store the signed extrinsic and point its orders at it, or raise ClaimLost (then do not send).
    ``calls``: the batch's calls in order when they are not one order per CID; ``costs``: what the batch spends
    per CID."""
    async with db.transaction() as conn:
        moved = await Order.filter(tx_hash=token, cid__in=list(cids)).using_db(conn).update(
            tx_hash=tx.hash, tx_nonce=tx.nonce, updated_ms=now_ms
        )
        if moved != len(cids):
            raise ClaimLost(f"{len(cids) - moved} of {len(cids)} claimed orders were taken over")
        by_cost: dict[int, list[str]] = defaultdict(list)  # one statement per distinct cost, not per CID
        for cid, cost in (costs or {}).items():
            by_cost[cost].append(cid)
        for cost, same in by_cost.items():
            await Order.filter(cid__in=same).using_db(conn).update(cost=str(cost), renewal=renewal)
        if costs:
            await _spend(conn, sum(costs.values()), now_ms)
        await CrustTx.create(using_db=conn, status=TxStatus.SENT.value, hash=tx.hash, nonce=tx.nonce,
                             extrinsic=tx.extrinsic, start_block=tx.start_block, era_end=tx.era_end,
                             spec_version=tx.spec_version,
                             cids=json.dumps([_stored_call(c) for c in (calls if calls is not None else cids)]),
                             created_ms=now_ms, updated_ms=now_ms)


def _stored_call(call: BatchCall) -> Any:
    """A batch call as ``crust_txs.cids`` keeps it: a CID for an order, ``{"cid", "call", "amount"}`` otherwise."""
    return call if isinstance(call, str) else {"cid": call.cid, "call": call.call, "amount": str(call.amount)}


def _read_call(stored: Any) -> BatchCall:
    return stored if isinstance(stored, str) else MarketCall(str(stored["call"]), str(stored["cid"]),
                                                             int(stored.get("amount", 0)))


async def _spend(conn: Any, amount: int, now_ms: int) -> None:
    """Add a recorded batch's computed cost to its UTC day's spending (what ``cru_per_day`` bounds)."""
    sql = Sql(dialect(conn))
    await conn.execute_query(
        f"INSERT INTO spend_days (day, spent) VALUES ({sql.arg(now_ms // DAY_MS)}, {sql.arg(amount)}) "
        "ON CONFLICT (day) DO UPDATE SET spent = spend_days.spent + excluded.spent", sql.args)


async def spent_on_day(db: Handle, now_ms: int) -> int:
    """What the batches recorded on the UTC day of ``now_ms`` were computed to cost (smallest units)."""
    conn = db.client
    sql = Sql(dialect(conn))
    rows = await conn.execute_query_dict(f"SELECT spent FROM spend_days WHERE day = {sql.arg(now_ms // DAY_MS)}",
                                         sql.args)
    return int(rows[0]["spent"]) if rows else 0


async def prepaid_covers(db: Handle, token: str, cids: Sequence[str], now_ms: int) -> None:
    """Claimed renewals whose prepaid pool already covers the renewal: nothing to send until they expire."""
    async with db.transaction() as conn:
        await _apply(conn, cids, lifecycle.prepaid_covers(RenewState.CLAIMED), now_ms,
                     where={"tx_hash": token, "renew_due": int(RenewState.CLAIMED)}, tx_hash=None)


async def refuse_claimed(db: Handle, token: str, cids: Sequence[str], reason: str, now_ms: int) -> None:
    """Claimed orders that must never be sent (the chain would refuse them and keep the fee, e.g. a known size
    at or over MaximumFileSize): a new order is ``failed`` with ``reason``, a renewal stopped; no attempt used."""
    if not cids:
        return
    async with db.transaction() as conn:
        await _apply(conn, cids, lifecycle.refuse_before_sending(OrderStatus.SUBMITTING, RenewState.NOT_DUE, reason),
                     now_ms, where={"tx_hash": token}, expect=OrderStatus.SUBMITTING, tx_hash=None)
        await _apply(conn, cids, lifecycle.refuse_before_sending(OrderStatus.PINNED, RenewState.CLAIMED, reason),
                     now_ms, where={"tx_hash": token, "renew_due": int(RenewState.CLAIMED)}, tx_hash=None)


async def _unclaim(conn: Any, cids: Sequence[str], now_ms: int, **where: Any) -> int:
    """Give claims back (nothing of them was sent): new orders queued, renewals due again."""
    n = await _apply(conn, cids, lifecycle.unclaim(OrderStatus.SUBMITTING, RenewState.NOT_DUE), now_ms, where,
                     expect=OrderStatus.SUBMITTING, tx_hash=None)
    renewals = lifecycle.unclaim(OrderStatus.PINNED, RenewState.CLAIMED)
    # a renewal's claim leaves updated_ms as it was (the order's own state did not change)
    return n + int(await Order.filter(cid__in=list(cids), renew_due=int(RenewState.CLAIMED), **where).using_db(
        conn).update(**renewals.columns(), tx_hash=None))


async def release_claim(db: Handle, token: str, now_ms: int) -> int:
    """Undo a claim that was never sent."""
    async with db.transaction() as conn:
        cids = await Order.filter(tx_hash=token).using_db(conn).values_list("cid", flat=True)
        return await _unclaim(conn, [str(c) for c in cids], now_ms, tx_hash=token)


async def release_stale_claims(db: Handle, older_than_ms: int, now_ms: int) -> int:
    """Free claims left by a crash between claiming and recording (nothing of them was sent)."""
    async with db.transaction() as conn:
        stale = await Order.filter(tx_hash__startswith=CLAIM_PREFIX, updated_ms__lt=older_than_ms).using_db(
            conn).values_list("cid", flat=True)
        await _unclaim(conn, [str(c) for c in stale], now_ms, tx_hash__startswith=CLAIM_PREFIX)
        return len(stale)


async def open_txs(db: Handle) -> list[RecordedBatch]:
    """Batches recorded and not settled yet, in nonce order."""
    rows = await CrustTx.filter(status=TxStatus.SENT.value).using_db(db.client).order_by("nonce", "created_ms")
    return [RecordedBatch(r.hash, int(r.nonce), r.extrinsic, int(r.start_block), int(r.era_end), r.spec_version,
                          tuple(_read_call(c) for c in json.loads(r.cids))) for r in rows]


async def resolve_tx(
    db: Handle,
    tx_hash: str,
    outcome: dict[str, Outcome],
    included_block: int | None,
    now_ms: int,
    max_attempts: int,
    delays: dict[int, int],
) -> dict[str, int]:
    """Apply the chain's verdict per CID (:func:`w3gate.ordering.lifecycle.judge` and ``settle`` say what each
    does). ``delays``: attempts -> ms. Returns the verdicts' counts ("ok" includes "renewed": the renewals among
    them; "failed": the "fail"s that used up their attempts)."""
    counts = {"ok": 0, "renewed": 0, "topped": 0, "fail": 0, "failed": 0, "requeue": 0, "pause": 0}
    async with db.transaction() as conn:
        tx = await CrustTx.filter(hash=tx_hash, status=TxStatus.SENT.value).using_db(conn).select_for_update().first()
        if tx is None:
            return counts  # already resolved (by another instance or an earlier pass)
        rows = {r.cid: r for r in await Order.filter(tx_hash=tx_hash).using_db(conn)}
        # CIDs that get the same update share one statement: a batch's CIDs mostly share one verdict, and
        # one statement per CID held the service's thread for 0.1 s at 500 CIDs on SQLite
        groups: dict[tuple[Judged, str | None], list[str]] = defaultdict(list)
        for cid, said in outcome.items():
            row = rows.get(cid)
            if row is None:
                continue
            counts[said.verdict] += 1
            judged = lifecycle.judge(OrderStatus(row.status), row.attempts, said.verdict, max_attempts)
            counts["failed"] += judged.verdict == Verdict.FAILED
            counts["renewed"] += judged.renewal and judged.verdict == Verdict.OK
            groups[judged, said.reason].append(cid)
        for (judged, reason), cids in groups.items():
            retry_at = now_ms + delays.get(judged.attempts, 0)
            change = lifecycle.settle(judged, reason, retry_at, included_block, now_ms)
            await _apply(conn, cids, change, now_ms)
        await CrustTx.filter(hash=tx_hash).using_db(conn).update(
            status=(TxStatus.INCLUDED if included_block is not None else TxStatus.DROPPED).value,
            included_block=included_block,
            updated_ms=now_ms,
        )
    return counts


async def watched_page(db: Handle, after_cid: str, limit: int) -> list[WatchedOrder]:
    """Placed orders that a pin still wants (the poller reads their file records), by cid, for keyset paging."""
    conn = db.client
    sql = Sql(dialect(conn))
    placed = ", ".join(f"'{s}'" for s in lifecycle.PLACED)
    rows = await conn.execute_query_dict(
        "SELECT o.cid, o.status, o.submitted_ms, o.renew_due, o.file_size, o.expires_at, o.replicas FROM orders o"
        f" WHERE o.status IN ({placed}) AND o.cid > " + sql.arg(after_cid)
        + f" AND {_WANTED} ORDER BY o.cid LIMIT " + sql.arg(limit),
        sql.args,
    )
    return [WatchedOrder(r["cid"], OrderStatus(r["status"]), r["submitted_ms"], RenewState(r["renew_due"]),
                         r["file_size"], r["expires_at"], r["replicas"]) for r in rows]


async def apply_poll(db: Handle, updates: Sequence[PollUpdate], now_ms: int) -> None:
    """Write the poller's findings (a status change only if the order is still in the status the poller saw)."""
    async with db.transaction() as conn:
        for u in updates:
            await _apply(conn, [u.cid], u.change, now_ms, expect=u.expect)


async def counts(db: Store) -> dict[str, int]:
    """Orders by status (for /healthz): a scan of the status index, so it runs beside the API."""
    rows = await db.read_aside(
        f"SELECT status, COUNT(*) FROM orders GROUP BY status UNION ALL "
        f"SELECT 'renewal_stopped', COUNT(*) FROM orders WHERE renew_due = {int(RenewState.STOPPED)}"
    )
    return {str(s): int(n) for s, n in rows}
