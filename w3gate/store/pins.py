"""Pin requests: create, replace, read, delete and list, each one database transaction.

These are asyncio coroutines for the ORM's loop; trio code reaches them through ``Database.run``.
A pin's ``status`` mirrors the Crust order of its content (one order per content key, however many pins
and whatever text forms of the CID: :mod:`w3gate.cids`): creating the first pin of a content inserts its
order, and re-pinning a content whose order failed queues it again. Pins keep the text their user gave.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from tortoise.exceptions import IntegrityError

from w3gate.domain.pins import NewPin, PinQuery, PinRecord
from w3gate.hookspecs import Quota
from w3gate.ordering import lifecycle
from w3gate.ordering.lifecycle import OrderStatus, RenewState
from w3gate.store import postgres_direct, users
from w3gate.store.models import INFO_FIELDS, PIN_STATUSES, Order, Pin, PinMeta
from w3gate.store.pin_rules import NEW_ORDER, NEW_PIN, ORDER_COLUMNS, render
from w3gate.store.rawsql import Handle
from w3gate.store.rawsql import Sql as _Sql
from w3gate.store.rawsql import dialect as _dialect
from w3gate.store.users import AddressQuota

if TYPE_CHECKING:
    from w3gate.store.interface import Store

CREATED_RETRIES = 50


async def _ensure_order(conn: Any, sql_dialect: str, pin: NewPin, now_ms: int) -> None:
    """Make the content's order take a new pin (:data:`~w3gate.store.pin_rules.TAKES_A_PIN`): an order of an
    earlier release not keyed yet is adopted, a stopped renewal gets a fresh set of attempts, and a failed order
    is queued again. Run only when the pin could not join the order as it was."""
    key = pin.key
    select = "SELECT status, renew_due FROM orders WHERE cid_key = "
    sql = _Sql(sql_dialect)
    rows = await conn.execute_query_dict(select + sql.arg(key), sql.args)
    if not rows:  # an unkeyed order's text (the content-key migration merged it into one since dropped): adopt it
        await Order.filter(cid=pin.order_cid, cid_key__isnull=True).using_db(conn).update(cid_key=key)
        sql = _Sql(sql_dialect)
        rows = await conn.execute_query_dict(select + sql.arg(key), sql.args)
    order = rows[0]
    status, renew = OrderStatus(order["status"]), RenewState(order.get("renew_due") or 0)
    change = lifecycle.repin(status, renew)
    if change is not None:  # conditional on what was read: the submitter or poller may move it meanwhile
        columns = change.columns()
        if change.status is not None:
            columns["status"] = change.status.value
        moved = await Order.filter(cid_key=key, status=status.value, renew_due=int(renew)).using_db(conn).update(
            updated_ms=now_ms, **columns)
        if moved and change.status is not None:
            await Pin.filter(cid_key=key).using_db(conn).update(status=change.status.pin_status.value)


UNBOUNDED = Quota()


def _new_row(pin: NewPin, created_ms: int) -> dict[str, Any]:
    """A new pin's columns but its owner, status and size."""
    return {
        "requestid": str(uuid.uuid4()),
        "cid": pin.cid,
        "cid_key": pin.key,
        "name": pin.name,
        "status": "",
        "created_ms": created_ms,
        "origins": json.dumps(list(pin.origins)),
        "meta": json.dumps(pin.meta, ensure_ascii=False),
    }


def _new_record(row: Mapping[str, Any], order: Mapping[str, Any]) -> PinRecord:
    return _from_row({**row, **{f"o_{k}": order[k] for k in ("error", *INFO_FIELDS)}})


def _values(owner: str, pin: NewPin, row: Mapping[str, Any], size: int) -> dict[str, Any]:
    """A new pin's arguments for the statements of :mod:`w3gate.store.pin_rules`."""
    return {"order_cid": pin.order_cid, "key": pin.key, "now": row["created_ms"], "requestid": row["requestid"],
            "owner": owner, "cid": pin.cid, "name": pin.name, "origins": row["origins"], "meta": row["meta"],
            "size": size, "meta_keys": list(pin.meta), "meta_values": list(pin.meta.values())}


async def _insert(conn: Any, owner: str, pin: NewPin, created_ms: int, quota: Quota = UNBOUNDED,
                  size: int = 0, address: AddressQuota | None = None) -> PinRecord:
    """The general path of a new pin: the rules of :mod:`w3gate.store.pin_rules` one statement at a time, in the
    caller's transaction, queueing the content's order again when it does not take the pin as it is."""
    dialect = _dialect(conn)
    await users.admit(conn, owner, quota, size, created_ms)  # first: a refusal has written nothing
    await users.admit_address(conn, owner, address, created_ms)  # the same lock order as the one statement's
    row = _new_row(pin, created_ms)
    values = _values(owner, pin, row, size)
    new_order = await conn.execute_query_dict(*render(dialect, NEW_ORDER, values))
    insert_pin = render(dialect, NEW_PIN, values)
    inserted = await conn.execute_query_dict(*insert_pin)
    if not inserted:
        new_order = []  # the order was there and has just been changed to take the pin
        await _ensure_order(conn, dialect, pin, created_ms)
        inserted = await conn.execute_query_dict(*insert_pin)
    if pin.meta:
        await PinMeta.bulk_create(
            [PinMeta(pin_id=inserted[0]["id"], key=k, value=v) for k, v in pin.meta.items()], using_db=conn
        )
    if not new_order:  # an order of earlier pins: as it is now
        sql = _Sql(dialect)
        new_order = await conn.execute_query_dict(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE cid_key = {sql.arg(pin.key)}", sql.args)
    row["status"] = inserted[0]["status"]
    return _new_record(row, new_order[0])


async def _with_unique_created(db: Handle, work: Any, created_ms: int) -> tuple[PinRecord, int]:
    """Run ``work(conn, created_ms)`` in a transaction, moving ``created`` on by 1 ms while it collides.

    ``created`` must be unique (clients paginate by it); within one process the clock already hands
    out unique values, this covers several instances sharing one PostgreSQL.
    """
    for _ in range(CREATED_RETRIES):
        try:
            async with db.transaction() as conn:
                return await work(conn, created_ms), created_ms
        except IntegrityError as exc:
            if "created_ms" not in str(exc) and "pins" not in str(exc).lower():
                raise
            if await Pin.filter(created_ms=created_ms).using_db(db.client).exists():
                created_ms += 1
                continue
            raise
    raise RuntimeError("could not find a free created timestamp")


async def create_pin(db: Handle, owner: str, pin: NewPin, created_ms: int, quota: Quota = UNBOUNDED,
                     size: int = 0, address: AddressQuota | None = None) -> tuple[PinRecord, int]:
    """Insert a pin request admitted for ``size`` bytes within ``quota`` and its client ``address``'s day
    (else :class:`~w3gate.store.users.QuotaExceeded`, nothing stored); returns it and the ``created`` value used.

    On PostgreSQL one statement does it in the common case, quota included (:mod:`w3gate.store.postgres_direct`);
    when that wrote nothing, the general path below does (and says which bound, if one refused).
    """
    if db.pool is not None:
        row = _new_row(pin, created_ms)
        counted = address is not None and address.active
        bounds = None if quota == UNBOUNDED and not counted else (quota.pins, quota.bytes, quota.pins_per_day)
        done = await postgres_direct.create_pin(db.pool, _values(owner, pin, row, size), bounds,
                                                address if counted else None)
        if done is not None:
            order, created_ms = done
            row.update(status=order["pin_status"], created_ms=created_ms)
            return _new_record(row, order), created_ms
    return await _with_unique_created(db, lambda conn, ms: _insert(conn, owner, pin, ms, quota, size, address),
                                      created_ms)


@dataclass(frozen=True)
class PinWrite:
    """The arguments of one :func:`create_pin`, for :func:`create_pins`."""

    owner: str
    pin: NewPin
    created_ms: int
    quota: Quota = UNBOUNDED
    size: int = 0
    address: AddressQuota | None = None


async def create_pins(db: Handle, writes: Sequence[PinWrite]) -> list[tuple[PinRecord, int] | Exception]:
    """:func:`create_pin`'s general path for several pins in one transaction (group commit, SQLite:
    :mod:`w3gate.store.group_commit`), each in a savepoint of its own: for each its result, or the quota refusal
    (:class:`~w3gate.store.users.QuotaExceeded`) that undid its writes alone. Any other error ends the whole
    transaction, nothing of it stored (SQLite may already have rolled it back: a full disk, say), and every
    write of the batch gets it."""
    results: list[tuple[PinRecord, int] | Exception] = []
    async with db.transaction() as tx:
        within = db.within(tx)
        for w in writes:
            try:
                results.append(await _with_unique_created(within, partial(_insert_as, w), w.created_ms))
            except users.QuotaExceeded as exc:
                results.append(exc)
    return results


async def _insert_as(w: PinWrite, conn: Any, created_ms: int) -> PinRecord:
    return await _insert(conn, w.owner, w.pin, created_ms, w.quota, w.size, w.address)


async def replace_pin(db: Handle, owner: str, requestid: str, pin: NewPin, created_ms: int, quota: Quota = UNBOUNDED,
                      size: int = 0, address: AddressQuota | None = None) -> tuple[PinRecord | None, int]:
    """Delete ``requestid`` and insert ``pin`` atomically; (None, ms) when ``requestid`` is not the owner's.
    The old pin is given back before ``quota`` is checked, so replacing at the limit works."""

    async def work(conn: Any, ms: int) -> PinRecord | None:
        mine = Pin.filter(owner=owner, requestid=requestid).using_db(conn)
        old_key = await mine.first().values_list("cid_key", flat=True)
        if old_key is None:
            return None
        await mine.delete()
        record = await _insert(conn, owner, pin, ms, quota, size, address)
        if old_key != pin.key:
            await _release_order(conn, str(old_key))
        return record

    return await _with_unique_created(db, work, created_ms)


async def get_pin(db: Handle, owner: str, requestid: str) -> PinRecord | None:
    sql = _Sql(db.dialect)
    where = f"p.owner = {sql.arg(owner)} AND p.requestid = {sql.arg(requestid)}"
    rows = await db.read(f"SELECT {_COLUMNS} FROM pins p {_JOIN} WHERE {where}", sql.args)
    return _from_row(rows[0]) if rows else None


async def held_keys(db: Handle, keys: list[str]) -> list[str]:
    """Which of the content ``keys`` some pin holds."""
    return [str(k) for k in await Pin.filter(cid_key__in=keys).using_db(db.client).values_list("cid_key", flat=True)]


async def _release_order(conn: Any, key: str) -> None:
    """The content's last pin is gone: an order not yet sent is dropped (nothing is paid for it); one placed
    keeps its row (what the chain holds) but is neither renewed nor polled while no pin wants it."""
    if await Pin.filter(cid_key=key).using_db(conn).exists():
        return
    await Order.filter(cid_key=key, status__in=[s.value for s in lifecycle.UNSENT]).using_db(conn).delete()


async def delete_pin(db: Handle, owner: str, requestid: str) -> bool:
    async with db.transaction() as conn:
        mine = Pin.filter(owner=owner, requestid=requestid).using_db(conn)
        key = await mine.first().values_list("cid_key", flat=True)
        if key is None:
            return False
        await mine.delete()
        await _release_order(conn, str(key))
        return True


# The read paths are one hand-written statement each (the page, its orders' info and the total
# together): they are the hot paths, and building them through the query builder cost more than the
# database work itself. The same SQL runs on SQLite and PostgreSQL; only placeholders differ.
_COLUMNS = (
    "p.requestid, p.cid, p.name, p.status, p.created_ms, p.origins, p.meta, "
    "o.error AS o_error, " + ", ".join(f"o.{name} AS o_{name}" for name in INFO_FIELDS)
)
_JOIN = "LEFT JOIN orders o ON o.cid_key = p.cid_key"


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(sql: _Sql, owner: str, q: PinQuery) -> str:
    parts = [f"p.owner = {sql.arg(owner)}"]
    if q.cids:
        parts.append(f"p.cid_key IN {sql.args_in(q.cids)}")
    if q.statuses:
        parts.append(f"p.status IN {sql.args_in(q.statuses)}")
    if q.before_ms is not None:
        parts.append(f"p.created_ms < {sql.arg(q.before_ms)}")
    if q.after_ms is not None:
        parts.append(f"p.created_ms > {sql.arg(q.after_ms)}")
    if q.name is not None:
        if q.match == "exact":
            parts.append(f"p.name = {sql.arg(q.name)}")
        elif q.match == "iexact":
            parts.append(f"UPPER(p.name) = UPPER({sql.arg(q.name)})")
        elif q.match == "partial":
            parts.append(f"p.name LIKE {sql.arg(_like(q.name))} ESCAPE '\\'")
        else:
            parts.append(f"UPPER(p.name) LIKE UPPER({sql.arg(_like(q.name))}) ESCAPE '\\'")
    if q.meta:
        parts.append(_meta_match(sql, q.meta))
    return " AND ".join(parts)


# Up to this many keys, a meta filter is one subquery per key, so that the planner starts from the rarest pair
# (PostgreSQL: 0.3 ms for {"app": <every pin>, "i": <one>} over 100k pins, where one grouped subquery took 118 ms).
# Beyond it, planning grows faster than the work: 16 keys planned in 24 ms, 64 in 338 ms, for a run of 1 ms.
META_EACH_MAX = 8


def _meta_match(sql: _Sql, meta: tuple[tuple[str, str], ...]) -> str:
    """Pins holding every pair of ``meta``: a subquery per key, or beyond :data:`META_EACH_MAX` keys one subquery
    of the pins with as many of the pairs as there are (a pin holds one value per key)."""
    distinct = sorted(set(meta))
    if len(distinct) <= META_EACH_MAX:
        return " AND ".join(f"p.id IN (SELECT pin_id FROM pin_meta WHERE key = {sql.arg(key)} AND value = "
                            f"{sql.arg(value)})" for key, value in distinct)
    pairs = " OR ".join(f"(key = {sql.arg(key)} AND value = {sql.arg(value)})" for key, value in distinct)
    return f"p.id IN (SELECT pin_id FROM pin_meta WHERE {pairs} GROUP BY pin_id HAVING COUNT(*) = {len(distinct)})"


def _from_row(row: Mapping[str, Any]) -> PinRecord:
    info: dict[str, str] = {}
    if row["o_error"]:
        info["status_details"] = row["o_error"]
    for name in INFO_FIELDS:
        if row[f"o_{name}"] is not None:
            info[name] = str(row[f"o_{name}"])
    return PinRecord(
        requestid=row["requestid"],
        cid=row["cid"],
        name=row["name"],
        status=row["status"],
        created_ms=int(row["created_ms"]),
        origins=_json_or(row["origins"], "[]", list),
        meta=_json_or(row["meta"], "{}", dict),
        info=info,
    )


def _json_or(text: str, empty_text: str, empty: type) -> Any:
    """Decode a stored JSON column; most are empty, and skipping the decoder for them shows in GET /pins."""
    return empty() if text == empty_text else json.loads(text)


def _filtered(q: PinQuery) -> bool:
    return bool(q.cids or q.name is not None or q.meta or q.before_ms is not None or q.after_ms is not None)


def _list_sql(dialect: str, owner: str, q: PinQuery) -> tuple[str, list[Any]]:
    """The one statement of a list: (total matches, newest ``q.limit`` of them)."""
    sql = _Sql(dialect)
    if _filtered(q):
        total = f"SELECT COUNT(*) FROM pins p WHERE {_where(sql, owner, q)}"
    else:  # status (or nothing) only: the trigger-kept totals answer without scanning
        owner_arg = sql.arg(owner)  # placeholders must be handed out in the order they appear
        total = (f"SELECT COALESCE(SUM(n), 0) FROM pin_counts WHERE owner = {owner_arg} "
                 f"AND status IN {sql.args_in(q.statuses or PIN_STATUSES)}")
    where = _where(sql, owner, q)
    limit = sql.arg(q.limit)
    # the total rides along as a one-row side table, so that an empty page still reports it
    statement = (
        f"SELECT t.total, page.* FROM (SELECT ({total}) AS total) t LEFT JOIN ("
        f"SELECT {_COLUMNS} FROM pins p {_JOIN} WHERE {where} ORDER BY p.created_ms DESC LIMIT {limit}"
        ") page ON 1 = 1 ORDER BY page.created_ms DESC"
    )
    return statement, sql.args


def _list_result(rows: Sequence[Mapping[str, Any]]) -> tuple[int, list[PinRecord]]:
    count = int(rows[0]["total"]) if rows else 0
    return count, [_from_row(r) for r in rows if r["requestid"] is not None]


async def list_pins(db: Handle, owner: str, q: PinQuery) -> tuple[int, list[PinRecord]]:
    """(total matches, newest ``q.limit`` of them), in one statement on the store's connection."""
    sql, args = _list_sql(db.dialect, owner, q)
    return _list_result(await db.read(sql, args))


async def list_pins_bounded(db: Store, owner: str, q: PinQuery) -> tuple[int, list[PinRecord]]:
    """``list_pins`` for the API: a list with filters beyond status runs aside, bounded.

    Only status (or nothing) lists are answered from indexes alone (the owner's newest pins in a
    status, totals kept by triggers); a ``name``, ``meta``, ``cid`` or time filter counts every match
    and may scan all the owner's pins (a ``name`` ``ipartial`` over 300k pins: 190 ms). Those run through
    ``Database.read_aside``, off the service's thread on SQLite, and are stopped after
    ``db.statement_timeout`` (:class:`~w3gate.store.db.StatementTimeout`).
    """
    if not _filtered(q):
        return await db.run(list_pins, owner, q)
    sql, args = _list_sql(db.dialect, owner, q)
    return _list_result(await db.read_aside(sql, args, by_name=True, timeout=db.statement_timeout))
