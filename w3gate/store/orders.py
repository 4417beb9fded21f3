"""Crust order bookkeeping (asyncio side: call through ``db.run``).

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tortoise.expressions import F, Subquery

from w3gate.store.models import PIN_STATUS_OF_ORDER, RENEW_PREPAID, RENEW_STOPPED, CrustTx, Order, Pin
from w3gate.store.rawsql import Handle, Sql, dialect
from w3gate.store.users import DAY_MS

if TYPE_CHECKING:
    from w3gate.store.interface import Store

CLAIM_PREFIX = "claim:"


class ClaimLost(Exception):
    """Another instance reset or took the claimed rows: the batch must not be sent."""


@dataclass(frozen=True)
class Claimed:
    cid: str
    file_size: int | None
    renewal: bool


def _pins_of(conn: Any, cids: Sequence[str]) -> Any:
    """The pins of the orders ``cids`` (chain texts), whatever text form each pin was made with."""
    return Pin.filter(cid_key__in=Subquery(Order.filter(cid__in=list(cids)).values("cid_key"))).using_db(conn)


async def _set_status(conn: Any, cids: Sequence[str], status: str, now_ms: int, **extra: Any) -> None:
    if not cids:
        return
    await Order.filter(cid__in=list(cids)).using_db(conn).update(status=status, updated_ms=now_ms, **extra)
    await _pins_of(conn, cids).update(status=PIN_STATUS_OF_ORDER[status])


_WANTED = "EXISTS (SELECT 1 FROM pins p WHERE p.cid_key = o.cid_key)"


# a new order whose content the operator's IPFS node holds and has measured (w3gate.store.ipfs_content)
_FETCHED = ("(o.status <> 'queued' OR (o.dag_size IS NOT NULL AND EXISTS (SELECT 1 FROM ipfs_content c"
            " WHERE c.cid_key = o.cid_key AND c.state = 'held')))")


async def claim(db: Handle, token: str, limit: int, now_ms: int, fetched_only: bool = False) -> list[Claimed]:
    """Claim up to ``limit`` wanted orders due now, oldest first: new orders, then renewals. ``fetched_only``
    (an IPFS node is configured): a new order only once the node holds its content and measured it."""
    async with db.transaction() as conn:
        sql = Sql(dialect(conn))
        due = await conn.execute_query_dict(
            "SELECT o.cid, o.status FROM orders o WHERE o.next_try_ms <= " + sql.arg(now_ms)
            + " AND (o.status = 'queued' OR (o.renew_due = 1 AND o.status IN ('pinning', 'pinned')))"
            + (f" AND {_FETCHED}" if fetched_only else "")
            + f" AND {_WANTED} ORDER BY o.created_ms, o.cid LIMIT " + sql.arg(limit),
            sql.args,
        )
        new = [r["cid"] for r in due if r["status"] == "queued"]
        renew = [r["cid"] for r in due if r["status"] != "queued"]
        if new:
            await Order.filter(cid__in=new, status="queued").using_db(conn).update(
                status="submitting", tx_hash=token, submitted_ms=now_ms, updated_ms=now_ms
            )
        if renew:
            await Order.filter(cid__in=renew, renew_due=1).using_db(conn).update(
                renew_due=2, tx_hash=token, updated_ms=now_ms
            )
        rows = await Order.filter(tx_hash=token).using_db(conn).order_by("created_ms", "cid")
        # the chain's record's size once there is one (renewals), else the size the node measured
        return [Claimed(r.cid, r.file_size if r.file_size is not None else r.dag_size, r.status != "submitting")
                for r in rows]


async def record_tx(db: Handle, token: str, tx: dict[str, Any], cids: Sequence[str], now_ms: int,
                    costs: dict[str, int] | None = None, renewal: str | None = None,
                    calls: Sequence[Any] | None = None) -> None:
    """Store the signed extrinsic and point its orders at it, or raise ClaimLost (then do not send).
    ``calls``: the batch's calls in order when they are not one order per CID (a CID for an order, or
    ``{"cid", "call", "amount"}`` for a prepaid call); ``costs``: what the batch spends per CID."""
    async with db.transaction() as conn:
        moved = await Order.filter(tx_hash=token, cid__in=list(cids)).using_db(conn).update(
            tx_hash=tx["hash"], tx_nonce=tx["nonce"], updated_ms=now_ms
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
        await CrustTx.create(using_db=conn, status="sent", cids=json.dumps(list(calls if calls is not None else cids)),
                             created_ms=now_ms, updated_ms=now_ms, **tx)


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
    if cids:
        await Order.filter(tx_hash=token, cid__in=list(cids), renew_due=2).using_db(db.client).update(
            renew_due=RENEW_PREPAID, tx_hash=None, attempts=0, next_try_ms=0, error=None, updated_ms=now_ms)


async def refuse_claimed(db: Handle, token: str, cids: Sequence[str], reason: str, now_ms: int) -> None:
    """Claimed orders that must never be sent (the chain would refuse them and keep the fee, e.g. a known size
    at or over MaximumFileSize): a new order is ``failed`` with ``reason``, a renewal stopped; no attempt used."""
    if not cids:
        return
    async with db.transaction() as conn:
        claimed = Order.filter(tx_hash=token, cid__in=list(cids)).using_db(conn)
        new = [c for c, s in await claimed.values_list("cid", "status") if s == "submitting"]
        await _set_status(conn, new, "failed", now_ms, tx_hash=None, error=reason)
        await Order.filter(tx_hash=token, cid__in=list(cids), renew_due=2).using_db(conn).update(
            renew_due=RENEW_STOPPED, tx_hash=None, error=f"renewal stopped: {reason}", updated_ms=now_ms)


def call_cid(call: Any) -> str:
    """The CID a recorded batch call is for (an order is stored as its CID, a prepaid call as a dict)."""
    return call if isinstance(call, str) else str(call["cid"])


def batch_cids(calls: Sequence[Any]) -> list[str]:
    """The CIDs of a recorded batch's calls, each once, in order (a prepaid renewal may be two calls)."""
    return list(dict.fromkeys(call_cid(c) for c in calls))


async def release_claim(db: Handle, token: str, now_ms: int) -> int:
    """Undo a claim that was never sent."""
    async with db.transaction() as conn:
        n = await Order.filter(tx_hash=token, status="submitting").using_db(conn).update(
            status="queued", tx_hash=None, updated_ms=now_ms
        )
        n += await Order.filter(tx_hash=token, renew_due=2).using_db(conn).update(renew_due=1, tx_hash=None)
        return n


async def release_stale_claims(db: Handle, older_than_ms: int, now_ms: int) -> int:
    """Free claims left by a crash between claiming and recording (nothing of them was sent)."""
    async with db.transaction() as conn:
        stale = await Order.filter(tx_hash__startswith=CLAIM_PREFIX, updated_ms__lt=older_than_ms).using_db(
            conn).values_list("cid", "status")
        new = [c for c, s in stale if s == "submitting"]
        if new:
            await Order.filter(cid__in=new, tx_hash__startswith=CLAIM_PREFIX).using_db(conn).update(
                status="queued", tx_hash=None, updated_ms=now_ms
            )
        renew = [c for c, s in stale if s != "submitting"]
        if renew:
            await Order.filter(cid__in=renew, renew_due=2, tx_hash__startswith=CLAIM_PREFIX).using_db(conn).update(
                renew_due=1, tx_hash=None
            )
        return len(stale)


async def open_txs(db: Handle) -> list[dict[str, Any]]:
    rows = await CrustTx.filter(status="sent").using_db(db.client).order_by("nonce", "created_ms").values()
    for r in rows:
        r["cids"] = json.loads(r["cids"])
    return rows


async def _apply_verdict(
    conn: Any, kind: str, cids: list[str], attempts: int, reason: str | None, retry_at: int,
    included_block: int | None, now_ms: int,
) -> None:
    """One verdict for ``cids`` (all new orders, or all renewals): ok, requeue, fail (retry later), failed."""
    renewals = Order.filter(cid__in=cids).using_db(conn)
    match kind:
        case "new-ok":
            await _set_status(conn, cids, "pinning", now_ms, placed_block=included_block, attempts=0,
                              next_try_ms=0, error=None, submitted_ms=now_ms)
        case "new-requeue":
            await _set_status(conn, cids, "queued", now_ms)
        case "new-pause":  # the chain could not order: not the CID's fault, no attempt charged
            await _set_status(conn, cids, "queued", now_ms, error=reason)
        case "new-fail":
            await _set_status(conn, cids, "queued", now_ms, attempts=attempts, next_try_ms=retry_at, error=reason)
        case "new-failed":
            await _set_status(conn, cids, "failed", now_ms, attempts=attempts, error=reason)
        case "renew-topped":  # prepaid now covers the renewal: the chain renews it at expiry
            await renewals.update(renew_due=RENEW_PREPAID, attempts=0, next_try_ms=0, error=None, updated_ms=now_ms)
        case "renew-ok":
            await renewals.update(renew_due=0, renewals=F("renewals") + 1, attempts=0, next_try_ms=0, error=None,
                                  updated_ms=now_ms)
        case "renew-requeue":
            await renewals.update(renew_due=1, updated_ms=now_ms)
        case "renew-pause":
            await renewals.update(renew_due=1, error=reason, updated_ms=now_ms)
        case "renew-fail":
            await renewals.update(renew_due=1, attempts=attempts, next_try_ms=retry_at, error=reason,
                                  updated_ms=now_ms)
        case "renew-failed":  # stopped until the file is gone or a user pins the CID again
            await renewals.update(renew_due=RENEW_STOPPED, attempts=attempts,
                                  error=f"renewal stopped after {attempts} failed attempts: {reason}",
                                  updated_ms=now_ms)
        case _:
            raise ValueError(f"unknown verdict {kind}")


async def resolve_tx(
    db: Handle,
    tx_hash: str,
    outcome: dict[str, tuple[str, str | None]],
    included_block: int | None,
    now_ms: int,
    max_attempts: int,
    delays: dict[int, int],
) -> dict[str, int]:
    """Apply the chain's verdict per CID: ("ok"|"topped"|"fail"|"pause"|"requeue", reason). Only "fail" counts
    an attempt against the CID; "pause" (not the CID's doing: the chain or account could not order, or a runtime
    upgrade outdated the signed batch; the reason is kept) and "requeue" do not; "topped": a renewal's prepaid
    top-up went through. ``delays``: attempts -> ms. Returns the verdicts' counts ("ok" includes "renewed": the
    renewals among them; "failed": the "fail"s that used up their attempts)."""
    counts = {"ok": 0, "renewed": 0, "topped": 0, "fail": 0, "failed": 0, "requeue": 0, "pause": 0}
    async with db.transaction() as conn:
        tx = await CrustTx.filter(hash=tx_hash, status="sent").using_db(conn).select_for_update().first()
        if tx is None:
            return counts  # already resolved (by another instance or an earlier pass)
        rows = {r.cid: r for r in await Order.filter(tx_hash=tx_hash).using_db(conn)}
        # CIDs that get the same update share one statement: a batch's CIDs mostly share one verdict, and
        # one statement per CID held the service's thread for 0.1 s at 500 CIDs on SQLite
        groups: dict[tuple[str, int, str | None], list[str]] = defaultdict(list)
        for cid, (verdict, reason) in outcome.items():
            row = rows.get(cid)
            if row is None:
                continue
            counts[verdict] += 1
            attempts = row.attempts + 1 if verdict == "fail" else row.attempts if verdict == "pause" else 0
            if verdict == "fail" and attempts >= max_attempts:
                counts["failed"] += 1
                verdict = "failed"
            kind = ("new-" if row.status == "submitting" else "renew-") + verdict
            counts["renewed"] += kind == "renew-ok"
            groups[kind, attempts, reason].append(cid)
        for (kind, attempts, reason), cids in groups.items():
            retry_at = now_ms + delays.get(attempts, 0)
            await _apply_verdict(conn, kind, cids, attempts, reason, retry_at, included_block, now_ms)
        await CrustTx.filter(hash=tx_hash).using_db(conn).update(
            status="included" if included_block is not None else "dropped",
            included_block=included_block,
            updated_ms=now_ms,
        )
    return counts


async def watched_page(db: Handle, after_cid: str, limit: int) -> list[dict[str, Any]]:
    """Placed orders that a pin still wants (the poller reads their file records), by cid, for keyset paging."""
    conn = db.client
    sql = Sql(dialect(conn))
    return list(await conn.execute_query_dict(
        "SELECT o.cid, o.status, o.submitted_ms, o.renew_due, o.file_size, o.expires_at, o.replicas FROM orders o"
        " WHERE o.status IN ('pinning', 'pinned') AND o.cid > " + sql.arg(after_cid)
        + f" AND {_WANTED} ORDER BY o.cid LIMIT " + sql.arg(limit),
        sql.args,
    ))


async def apply_poll(db: Handle, updates: Sequence[dict[str, Any]], now_ms: int) -> None:
    """Write the poller's findings: ``{"cid", "status"?, "expect"?, fields...}`` per changed order."""
    async with db.transaction() as conn:
        for u in updates:
            fields = {k: v for k, v in u.items() if k not in ("cid", "status", "expect")}
            if "status" in u:
                # conditional: the submitter may have moved the order meanwhile
                moved = await Order.filter(cid=u["cid"], status=u["expect"]).using_db(conn).update(
                    status=u["status"], updated_ms=now_ms, **fields
                )
                if moved:
                    await _pins_of(conn, [u["cid"]]).update(status=PIN_STATUS_OF_ORDER[u["status"]])
            elif fields:
                await Order.filter(cid=u["cid"]).using_db(conn).update(updated_ms=now_ms, **fields)


async def counts(db: Store) -> dict[str, int]:
    """Orders by status (for /healthz): a scan of the status index, so it runs beside the API."""
    rows = await db.read_aside(
        f"SELECT status, COUNT(*) FROM orders GROUP BY status UNION ALL "
        f"SELECT 'renewal_stopped', COUNT(*) FROM orders WHERE renew_due = {RENEW_STOPPED}"
    )
    return {str(s): int(n) for s, n in rows}
