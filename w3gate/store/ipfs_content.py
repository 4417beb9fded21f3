"""What w3gate holds on the operator's IPFS node (asyncio side: the store's named operations
run these, w3gate.store.calls).

A content's life there (w3gate.ordering.fetcher): its order is ``queued`` and no ``ipfs_content`` row is
``held`` -> :func:`begin` (row ``fetching``) -> the node pins it -> :func:`fetched` (row ``held``, the order's
``dag_size`` and its pins' ``size`` set): only now may the submitter claim it (:func:`w3gate.store.orders.claim`
with ``fetched_only``). Content that cannot be fetched: :func:`give_up` fails its order (nothing was ordered).
Once the hold mode no longer needs it (:func:`releasable`), the node unpins it and :func:`forget` drops the row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from w3gate.ordering import lifecycle
from w3gate.ordering.lifecycle import FETCHABLE, OrderStatus
from w3gate.store.models import IpfsContent, Order, Pin
from w3gate.store.rawsql import Handle, Sql, dialect

_WANTED = "EXISTS (SELECT 1 FROM pins p WHERE p.cid_key = o.cid_key)"
# order statuses in which each hold mode keeps the content on the node (while a pin wants it)
NEEDED_STATUSES = {
    "never": (OrderStatus.QUEUED.value, OrderStatus.SUBMITTING.value),
    "until_pinned": (OrderStatus.QUEUED.value, OrderStatus.SUBMITTING.value, OrderStatus.PINNING.value),
    "always": tuple(s.value for s in OrderStatus),
}


@dataclass(frozen=True)
class Due:
    cid: str  # the order's text (what the node is asked to pin, and what is ordered)
    key: str
    origins: tuple[str, ...]


async def due(db: Handle, limit: int, now_ms: int, busy: list[str]) -> list[Due]:
    """Queued orders a pin wants whose content is not held yet, due now, oldest first (``busy``: keys in flight)."""
    conn = db.client
    sql = Sql(dialect(conn))
    # placeholders are handed out in the text's order: SQLite's ``?`` take the arguments by position
    query = (f"SELECT o.cid, o.cid_key FROM orders o WHERE o.status = '{FETCHABLE}' AND o.cid_key IS NOT NULL"
             " AND o.next_try_ms <= " + sql.arg(now_ms) + f" AND {_WANTED}"
             " AND NOT EXISTS (SELECT 1 FROM ipfs_content c WHERE c.cid_key = o.cid_key AND c.state = 'held')")
    if busy:
        query += " AND o.cid_key NOT IN " + sql.args_in(busy)
    rows = await conn.execute_query_dict(query + " ORDER BY o.created_ms, o.cid LIMIT " + sql.arg(limit), sql.args)
    out = []
    for r in rows:
        origins: list[str] = []
        for text in await Pin.filter(cid_key=r["cid_key"]).using_db(conn).limit(20).values_list("origins", flat=True):
            origins += [a for a in json.loads(str(text)) if a not in origins]
        out.append(Due(r["cid"], r["cid_key"], tuple(origins)))
    return out


async def begin(db: Handle, key: str, cid: str, ours: bool, now_ms: int) -> tuple[int, bool]:
    """Record a fetch under way (kept if one was: a restart resumes it); its start and whether w3gate pins it."""
    async with db.transaction() as conn:
        found = await IpfsContent.filter(cid_key=key).using_db(conn).first()
        if found is None:
            found = await IpfsContent.create(using_db=conn, cid_key=key, cid=cid, state="fetching", ours=int(ours),
                                             started_ms=now_ms, updated_ms=now_ms)
        await Order.filter(cid_key=key, status=FETCHABLE.value).using_db(conn).update(error="fetching",
                                                                                      updated_ms=now_ms)
        return int(found.started_ms), bool(found.ours)


async def uploaded(db: Handle, key: str, cid: str, now_ms: int) -> None:
    """The upload gateway had the node pin ``cid``: w3gate's pin from now on (a row already there is kept), to be
    measured by the fetcher, and released by the hold mode even when its pin goes before the fetcher gets to it."""
    await IpfsContent.bulk_create([IpfsContent(cid_key=key, cid=cid, state="fetching", ours=1, started_ms=now_ms,
                                               updated_ms=now_ms)], ignore_conflicts=True,
                                      using_db=db.client)


async def fetched(db: Handle, key: str, size: int, now_ms: int) -> None:
    """The node holds the content and measured it: the order may be placed, at ``size``; the pins count it."""
    async with db.transaction() as conn:
        await IpfsContent.filter(cid_key=key).using_db(conn).update(state="held", updated_ms=now_ms)
        await Order.filter(cid_key=key).using_db(conn).update(dag_size=size, updated_ms=now_ms)
        await Order.filter(cid_key=key, status=FETCHABLE.value).using_db(conn).update(error=None, next_try_ms=0)
        await Pin.filter(cid_key=key).exclude(size=size).using_db(conn).update(size=size)


async def waiting(db: Handle, key: str, reason: str, retry_ms: int, now_ms: int) -> None:
    """Not fetched yet and not given up: say why in the pins' status_details, try again at ``retry_ms``."""
    await Order.filter(cid_key=key, status=FETCHABLE.value).using_db(db.client).update(
        error=reason[:1000], next_try_ms=retry_ms, updated_ms=now_ms)


async def give_up(db: Handle, key: str, reason: str, now_ms: int) -> None:
    """The content cannot be had (or is too large to order): its order and pins fail; nothing was ordered. The
    node holds no pin of it (the caller unpins what w3gate pinned, whether given up or too large), so its row goes:
    pinned again, it is fetched afresh with a whole ``fetch_timeout``."""
    async with db.transaction() as conn:
        await IpfsContent.filter(cid_key=key).using_db(conn).delete()
        change = lifecycle.fetch_failed(FETCHABLE, reason)
        assert change.status is not None
        moved = await Order.filter(cid_key=key, status=FETCHABLE.value).using_db(conn).update(
            status=change.status.value, updated_ms=now_ms, **change.columns())
        if moved:
            await Pin.filter(cid_key=key).using_db(conn).update(status=change.status.pin_status.value)


async def restart_clocks(db: Handle, now_ms: int) -> None:
    """Fetches under way start their ``fetch_timeout`` again (after a restart, or the node coming back)."""
    await IpfsContent.filter(state="fetching").using_db(db.client).update(started_ms=now_ms, updated_ms=now_ms)


async def all_rows(db: Handle) -> list[dict[str, Any]]:
    return list(await IpfsContent.all().using_db(db.client).values("cid_key", "cid", "state", "ours"))


async def releasable(db: Handle, hold: str, limit: int) -> list[dict[str, Any]]:
    """Rows the hold mode no longer needs: no pin wants the content, or its order moved past the mode's last
    status (``never``: once ordered; ``until_pinned``: once pinned; ``always``: only when no pin wants it)."""
    conn = db.client
    sql = Sql(dialect(conn))
    statuses = sql.args_in(NEEDED_STATUSES[hold])
    return list(await conn.execute_query_dict(
        "SELECT c.cid_key, c.cid, c.ours, c.state FROM ipfs_content c WHERE NOT EXISTS (SELECT 1 FROM orders o"
        f" WHERE o.cid_key = c.cid_key AND o.status IN {statuses} AND {_WANTED}) LIMIT " + sql.arg(limit),
        sql.args,
    ))


async def forget(db: Handle, key: str) -> None:
    await IpfsContent.filter(cid_key=key).using_db(db.client).delete()


async def counts(db: Handle) -> dict[str, int]:
    conn = db.client
    rows = await conn.execute_query_dict("SELECT state, COUNT(*) AS n FROM ipfs_content GROUP BY state")
    return {str(r["state"]): int(r["n"]) for r in rows}
