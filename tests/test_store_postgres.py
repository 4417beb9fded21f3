"""PostgreSQL specifics of the store, on the real server that tests/run starts."""

from __future__ import annotations

import asyncio

import pytest
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
