"""PostgreSQL specifics of the store, on the real server that tests/run starts."""

from __future__ import annotations

import asyncio

import pytest
import trio
from conftest import POSTGRES, database_url_for_test

from w3gate.store import pins as store
from w3gate.store.db import Database, _reset_if_in_transaction
from w3gate.store.pins import NewPin

pytestmark = pytest.mark.skipif(not POSTGRES, reason="needs W3GATE_TEST_POSTGRES_URL")


def test_pool_reset_undoes_an_open_transaction_and_nothing_else() -> None:
    """The pool's reset hook rolls back a transaction left open, and costs no query otherwise."""
    import asyncpg

    url = database_url_for_test()

    async def run() -> tuple[bool, int, str]:
        conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            await conn.execute("CREATE TABLE t (x int)")
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO t VALUES (1)")
            await _reset_if_in_transaction(conn)
            in_transaction = conn.is_in_transaction()
            rows = await conn.fetchval("SELECT count(*) FROM t")
            await conn.execute("SET application_name = 'kept'")
            await _reset_if_in_transaction(conn)  # outside a transaction: no RESET ALL
            return in_transaction, rows, await conn.fetchval("SHOW application_name")
        finally:
            await conn.close()

    assert asyncio.run(run()) == (False, 0, "kept")


async def test_store_calls_through_the_pool_with_that_reset() -> None:
    db = Database(database_url_for_test())
    await db.open()
    try:
        for i in range(20):  # more calls than the pool has connections
            await db.run(store.create_pin, "owner", NewPin(cid="bafkqaaa", name=f"n{i}"), 1_000 + i)
        count, records = await db.run(store.list_pins, "owner", store.PinQuery(limit=5))
        assert count == 20 and [r.name for r in records] == [f"n{i}" for i in range(19, 14, -1)]
    finally:
        await db.close()


CID_A = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
CID_B = "bafkreidivzimqfqtoqxkrpge6bjyhlvxqs3rhe73owtmdulaxr5do5in7u"


async def test_a_common_pin_is_one_statement_and_the_others_take_the_general_path(monkeypatch) -> None:
    """POST's one statement (postgres_direct) covers a new content and one whose order waits or is placed;
    a content whose order failed, whose renewal stopped, or whose order is not keyed yet writes nothing there
    and goes the general way (the transaction that queues it again)."""
    from w3gate.ordering.lifecycle import RenewState
    from w3gate.store.models import Order, Pin

    general: list[str] = []
    original = store._with_unique_created

    async def counted(db, work, created_ms):  # type: ignore[no-untyped-def]
        general.append(str(created_ms))
        return await original(db, work, created_ms)

    monkeypatch.setattr(store, "_with_unique_created", counted)
    db = Database(database_url_for_test())
    await db.open()
    try:
        async def scenario(h) -> list[tuple[str, str, int]]:
            states = {"queued": {}, "submitting": {}, "pinned": {}, "failed": {"error": "boom"},
                      "stopped": {"renew_due": RenewState.STOPPED}, "unkeyed": {}}
            outcome = []
            for i, (state, extra) in enumerate(states.items()):
                cid = f"bafkqaa{'abcdef'[i]}"  # identity CIDs: the store takes any text
                status = {"stopped": "pinned", "unkeyed": "pinning"}.get(state, state)
                key = None if state == "unkeyed" else cid
                await Order.create(cid=cid, cid_key=key, status=status, created_ms=1, updated_ms=1, **extra)
                before = len(general)
                rec, _ = await store.create_pin(h, "a", NewPin(cid=cid), 100 + i)
                pins = await Pin.filter(cid_key=cid).count()
                outcome.append((state, rec.status, len(general) - before, pins))
            before = len(general)
            rec, _ = await store.create_pin(h, "a", NewPin(cid=CID_A), 200)  # a new content
            order = await Order.get(cid_key=CID_A)
            outcome.append(("new", rec.status + "/" + order.status, len(general) - before, 1))
            return outcome

        assert await db.run(scenario) == [
            ("queued", "queued", 0, 1), ("submitting", "queued", 0, 1), ("pinned", "pinned", 0, 1),
            ("failed", "queued", 1, 1), ("stopped", "pinned", 1, 1), ("unkeyed", "pinning", 1, 1),
            ("new", "queued/queued", 0, 1),
        ]
    finally:
        await db.close()


async def test_many_instants_pinning_one_new_content_make_one_order() -> None:
    """Concurrent POSTs of one new content (several connections of the pool, as several instances would):
    one order, every pin kept and counted."""
    from w3gate.store.models import Order, Pin

    db = Database(database_url_for_test())
    await db.open()
    try:
        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(db.run, store.create_pin, f"owner{i % 3}", NewPin(cid=CID_B), 1_000 + i)
        orders = await db.run(lambda _: Order.filter(cid_key=CID_B).values_list("status", flat=True))
        pins = await db.run(lambda _: Pin.filter(cid_key=CID_B).count())
        counts = [(await db.run(store.list_pins, f"owner{i}", store.PinQuery(statuses=("queued",))))[0]
                  for i in range(3)]
        assert (orders, pins, counts) == (["queued"], 12, [4, 4, 4])
    finally:
        await db.close()


async def test_store_calls_inside_a_transaction_stay_in_it() -> None:
    """Inside a transaction the caller holds, pins are written and read on its connection (not the direct pool,
    which would commit them on their own): rolled back, they are gone."""
    from tortoise.transactions import in_transaction

    db = Database(database_url_for_test())
    await db.open()
    try:
        async def scenario(h) -> tuple[bool, bool]:
            seen = False
            try:
                async with in_transaction() as conn:
                    within = h.within(conn)  # the caller's transaction, handed to the store's calls
                    rec, _ = await store.create_pin(within, "a", NewPin(cid=CID_A), 10)
                    seen = await store.get_pin(within, "a", rec.requestid) is not None
                    raise LookupError("roll back")
            except LookupError:
                pass
            return seen, await store.get_pin(h, "a", rec.requestid) is None

        assert await db.run(scenario) == (True, True)
    finally:
        await db.close()


async def test_hot_statements_use_generic_plans_and_the_orm_the_default() -> None:
    db = Database(database_url_for_test())
    await db.open()
    try:
        async def modes(h) -> tuple[str, str]:
            orm = await h.client.execute_query_dict("SHOW plan_cache_mode")
            return (await h.pool.fetchval("SHOW plan_cache_mode")), orm[0]["plan_cache_mode"]

        assert await db.run(modes) == ("force_generic_plan", "auto")
    finally:
        await db.close()


async def test_a_pin_within_a_quota_is_one_statement_and_a_refusal_writes_nothing(monkeypatch) -> None:
    """With a quota, POST's one statement admits within it under concurrency (the owner's row locked, the day
    counted only for a pin written); a new user, or a request over a bound, writes nothing there and the general
    path makes the row or says which bound."""
    from w3gate.hookspecs import Quota
    from w3gate.store.models import Order, Pin
    from w3gate.store.users import QuotaExceeded

    general: list[int] = []
    original = store._with_unique_created

    async def counted(db, work, created_ms):  # type: ignore[no-untyped-def]
        general.append(created_ms)
        return await original(db, work, created_ms)

    monkeypatch.setattr(store, "_with_unique_created", counted)
    owner, quota = "quota-owner", Quota(pins=5, pins_per_day=100)
    db = Database(database_url_for_test())
    await db.open()
    try:
        await db.run(store.create_pin, owner, NewPin(cid="bafkqaaquota0"), 5_000, quota, 7)  # a new user: general
        assert len(general) == 1
        refused: list[str] = []

        async def one(i: int) -> None:
            try:
                await db.run(store.create_pin, owner, NewPin(cid=f"bafkqaaquota{i}"), 5_000 + i, quota, 7)
            except QuotaExceeded as exc:
                refused.append(str(exc))

        async with trio.open_nursery() as nursery:
            for i in range(1, 13):
                nursery.start_soon(one, i)
        pins = await db.run(lambda _: Pin.filter(owner=owner).count())
        orders = await db.run(lambda _: Order.filter(cid_key__startswith="bafkqaaquota").count())
        row = (await db.run(lambda h: h.client.execute_query_dict(
            "SELECT pins, bytes, day_pins FROM users WHERE user_key = $1", [owner])))[0]
        # 4 more admitted (5 live pins), 8 refused; the refusals went the general way to say which bound
        assert (pins, orders, len(refused), dict(row)) == (5, 5, 8, {"pins": 5, "bytes": 35, "day_pins": 5})
        assert len(general) == 1 + 8 and all("pins_per_user" in r for r in refused)
    finally:
        await db.close()

