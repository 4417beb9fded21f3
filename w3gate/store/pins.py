"""Pin requests: create, replace, read, delete and list, each one database transaction.

These are asyncio coroutines for the ORM's loop; trio code reaches them through ``Database.run``.
A pin's ``status`` mirrors the Crust order of its CID (one order per CID, however many pins): creating
the first pin of a CID inserts its order, and re-pinning a CID whose order failed queues it again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from tortoise.functions import Sum

from w3gate.store.models import PIN_STATUSES, Order, Pin, PinCount, PinMeta

# order status -> the status its pins show
PIN_STATUS_OF_ORDER = {"queued": "queued", "submitting": "queued", "pinning": "pinning",
                       "pinned": "pinned", "failed": "failed"}
INFO_FIELDS = ("file_size", "expires_at", "replicas")
CREATED_RETRIES = 50


@dataclass(frozen=True)
class NewPin:
    cid: str
    name: str | None = None
    origins: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PinQuery:
    cids: tuple[str, ...] = ()
    name: str | None = None
    match: str = "exact"
    statuses: tuple[str, ...] = ()
    before_ms: int | None = None
    after_ms: int | None = None
    meta: tuple[tuple[str, str], ...] = ()
    limit: int = 10


@dataclass(frozen=True)
class PinRecord:
    requestid: str
    cid: str
    name: str | None
    status: str
    created_ms: int
    origins: list[str]
    meta: dict[str, str]
    info: dict[str, str]


def _info(order: Order | None) -> dict[str, str]:
    if order is None:
        return {}
    info: dict[str, str] = {}
    if order.error:
        info["status_details"] = order.error
    for name in INFO_FIELDS:
        value = getattr(order, name)
        if value is not None:
            info[name] = str(value)
    return info


def _record(pin: Pin, order: Order | None) -> PinRecord:
    return PinRecord(
        requestid=pin.requestid,
        cid=pin.cid,
        name=pin.name,
        status=pin.status,
        created_ms=pin.created_ms,
        origins=json.loads(pin.origins),
        meta=json.loads(pin.meta),
        info=_info(order),
    )


async def _ensure_order(conn: Any, cid: str, now_ms: int) -> Order:
    """The CID's order, inserted as queued if new; a failed order is queued again."""
    await Order.bulk_create(
        [Order(cid=cid, status="queued", created_ms=now_ms, updated_ms=now_ms)],
        ignore_conflicts=True,
        using_db=conn,
    )
    order = await Order.get(cid=cid).using_db(conn)
    if order.status == "failed":
        await Order.filter(cid=cid, status="failed").using_db(conn).update(
            status="queued", attempts=0, next_try_ms=0, error=None, updated_ms=now_ms
        )
        await Pin.filter(cid=cid).using_db(conn).update(status="queued")
        order.status, order.error = "queued", None
    return order


async def _insert(conn: Any, owner: str, pin: NewPin, created_ms: int) -> PinRecord:
    order = await _ensure_order(conn, pin.cid, created_ms)
    row = await Pin.create(
        requestid=str(uuid.uuid4()),
        owner=owner,
        cid=pin.cid,
        name=pin.name,
        status=PIN_STATUS_OF_ORDER[order.status],
        created_ms=created_ms,
        origins=json.dumps(list(pin.origins)),
        meta=json.dumps(pin.meta, ensure_ascii=False),
        using_db=conn,
    )
    if pin.meta:
        await PinMeta.bulk_create(
            [PinMeta(pin_id=row.id, key=k, value=v) for k, v in pin.meta.items()], using_db=conn
        )
    return _record(row, order)


async def _with_unique_created(work: Any, created_ms: int) -> tuple[PinRecord, int]:
    """Run ``work(conn, created_ms)`` in a transaction, moving ``created`` on by 1 ms while it collides.

    ``created`` must be unique (clients paginate by it); within one process the clock already hands
    out unique values, this covers several instances sharing one PostgreSQL.
    """
    for _ in range(CREATED_RETRIES):
        try:
            async with in_transaction() as conn:
                return await work(conn, created_ms), created_ms
        except IntegrityError as exc:
            if "created_ms" not in str(exc) and "pins" not in str(exc).lower():
                raise
            if await Pin.filter(created_ms=created_ms).exists():
                created_ms += 1
                continue
            raise
    raise RuntimeError("could not find a free created timestamp")


async def create_pin(owner: str, pin: NewPin, created_ms: int) -> tuple[PinRecord, int]:
    """Insert a pin request; returns it and the ``created`` value used."""
    return await _with_unique_created(lambda conn, ms: _insert(conn, owner, pin, ms), created_ms)


async def replace_pin(owner: str, requestid: str, pin: NewPin, created_ms: int) -> tuple[PinRecord | None, int]:
    """Delete ``requestid`` and insert ``pin`` atomically; (None, ms) when ``requestid`` is not the owner's."""

    async def work(conn: Any, ms: int) -> PinRecord | None:
        deleted = await Pin.filter(owner=owner, requestid=requestid).using_db(conn).delete()
        if not deleted:
            return None
        return await _insert(conn, owner, pin, ms)

    return await _with_unique_created(work, created_ms)


async def get_pin(owner: str, requestid: str) -> PinRecord | None:
    row = await Pin.filter(owner=owner, requestid=requestid).first()
    if row is None:
        return None
    return _record(row, await Order.filter(cid=row.cid).first())


async def delete_pin(owner: str, requestid: str) -> bool:
    async with in_transaction() as conn:
        return bool(await Pin.filter(owner=owner, requestid=requestid).using_db(conn).delete())


def _filtered(owner: str, q: PinQuery) -> Any:
    qs = Pin.filter(owner=owner)
    if q.cids:
        qs = qs.filter(cid__in=list(q.cids))
    if q.statuses:
        qs = qs.filter(status__in=list(q.statuses))
    if q.before_ms is not None:
        qs = qs.filter(created_ms__lt=q.before_ms)
    if q.after_ms is not None:
        qs = qs.filter(created_ms__gt=q.after_ms)
    if q.name is not None:
        qs = qs.filter(_name_filter(q.name, q.match))
    for key, value in q.meta:
        qs = qs.filter(id__in=Subquery(PinMeta.filter(key=key, value=value).values("pin_id")))
    return qs


def _name_filter(name: str, match: str) -> Q:
    if match == "exact":
        return Q(name=name)
    if match == "iexact":
        return Q(name__iexact=name)
    if match == "partial":
        return Q(name__contains=name)
    return Q(name__icontains=name)


async def list_pins(owner: str, q: PinQuery) -> tuple[int, list[PinRecord]]:
    """(total matches, newest ``q.limit`` of them)."""
    qs = _filtered(owner, q)
    if q.cids or q.name is not None or q.meta or q.before_ms is not None or q.after_ms is not None:
        count = await qs.count()
    else:  # status (or nothing) only: the trigger-kept totals answer without scanning
        statuses = list(q.statuses or PIN_STATUSES)
        rows_n = await PinCount.filter(owner=owner, status__in=statuses).annotate(total=Sum("n")).values("total")
        count = int(rows_n[0]["total"] or 0) if rows_n else 0
    rows: Sequence[Pin] = await qs.order_by("-created_ms").limit(q.limit) if count else []
    orders = {o.cid: o for o in await Order.filter(cid__in=list({r.cid for r in rows}))} if rows else {}
    return count, [_record(r, orders.get(r.cid)) for r in rows]


async def count_all() -> int:
    return await Pin.all().count()


def statuses_of(orders: Iterable[str]) -> list[str]:
    return [PIN_STATUS_OF_ORDER[o] for o in orders]
