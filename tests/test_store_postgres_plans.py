"""How PostgreSQL runs the API's hot reads on w3gate's own pool (generic plans): each reads the rows it returns,
not every pin of the owner or every order. Checked with ``EXPLAIN ANALYZE`` of the statement as the pool's sessions
prepare it, and with the server's own count of the rows a GET read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import POSTGRES, open_store

from w3gate.store import pins as store
from w3gate.store.db import Database
from w3gate.store.pins import PinQuery

pytestmark = pytest.mark.skipif(not POSTGRES, reason="needs PostgreSQL")


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


async def _generic_plan(db: Database, sql: str, args: list[Any]) -> list[dict[str, Any]]:
    """The executed generic plan's nodes of ``sql`` on a connection of the hot paths' pool."""
    async def explain(h: Any) -> str:
        async with h.pool.acquire() as conn:
            types = ", ".join("bigint" if isinstance(a, int) else "text" for a in args)
            await conn.execute(f"PREPARE hot_statement ({types}) AS {sql}")
            try:
                values = ", ".join(str(a) if isinstance(a, int) else "'" + a.replace("'", "''") + "'" for a in args)
                return await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE hot_statement ({values})")
            finally:
                await conn.execute("DEALLOCATE hot_statement")

    return _nodes(json.loads(await db.run(explain))[0]["Plan"])


async def test_the_newest_pins_in_one_status_are_read_from_their_index(tmp_path) -> None:
    """GET /pins lists the newest pins in one status (``pinned`` by default). With 10,000 older pins pinned and
    3,000 newer ones queued (a user who just added many), the page of 10 reads 10 pins: with PostgreSQL's default
    page costs the generic plan walked the ``created_ms`` index back through the 3,000 newer pins first."""
    db = await open_store(tmp_path)
    try:
        await db.run(lambda h: h.client.execute_script(
            "INSERT INTO pins (requestid, owner, cid, cid_key, status, created_ms, origins, meta) "
            "SELECT 'r' || i, 'owner', 'c' || i, 'c' || i, CASE WHEN i < 10000 THEN 'pinned' ELSE 'queued' END, "
            "1000 + i, '[]', '{}' FROM generate_series(0, 12999) i; ANALYZE"))
        count, page = await store.list_pins_bounded(db, "owner", PinQuery(statuses=("pinned",)))
        assert count == 10_000 and [p.created_ms for p in page] == list(range(10_999, 10_989, -1))

        sql, args = store._list_sql("postgres", "owner", PinQuery(statuses=("pinned",)))
        nodes = await _generic_plan(db, sql, args)
        pin_scans = [n for n in nodes if n.get("Relation Name") == "pins"]
        assert [(n["Actual Rows"], n.get("Rows Removed by Filter", 0)) for n in pin_scans] == [(10, 0)], pin_scans
    finally:
        await db.close()


async def test_a_plan_made_on_an_empty_store_is_made_again_once_it_fills(tmp_path, monkeypatch) -> None:
    """A pool connection plans GET /pins on its first call; if ``orders`` was empty then, that plan read every
    order for each pin of the page until an ANALYZE of ``orders`` came. The pool prepares its statements again
    every ``PLAN_LIFETIME`` seconds (here 1), and the new plan reads one order per pin."""
    from w3gate.store import postgres_direct

    monkeypatch.setattr(postgres_direct, "PLAN_LIFETIME", 1.0)
    db = await open_store(tmp_path)
    sql, args = store._list_sql("postgres", "owner", PinQuery(statuses=("pinned",)))

    async def orders_read(h: Any, pool: Any) -> int:
        """Rows of ``orders`` one GET /pins reads on the pool's one connection, from the server's statistics."""
        async def total() -> int:
            await pool.execute("SELECT pg_stat_force_next_flush()")  # the connection's counts, at its next statement
            await pool.execute("SELECT 1")
            await h.client.execute_query("SELECT pg_stat_clear_snapshot()")
            _, rows = await h.client.execute_query("SELECT seq_tup_read + COALESCE(idx_tup_fetch, 0) AS n "
                                                   "FROM pg_stat_user_tables WHERE relname = 'orders'")
            return int(rows[0]["n"])

        before = await total()
        await pool.fetch(sql, *args)  # prepared, or taken from the connection's cache
        return await total() - before

    async def scenario(h: Any) -> tuple[int, int, int]:
        import asyncio

        from w3gate.store.db import asyncpg_params

        await h.client.execute_script("ANALYZE")  # the empty store's statistics, as autovacuum takes them
        pool = await postgres_direct.open_pool({**asyncpg_params(db.url), "min_size": 1, "max_size": 1})
        try:
            first = await orders_read(h, pool)  # planned now, on the empty store
            await h.client.execute_script(
                "INSERT INTO pins (requestid, owner, cid, cid_key, status, created_ms, origins, meta) "
                "SELECT 'r' || i, 'owner', 'c' || i, 'c' || i, 'pinned', 1000 + i, '[]', '{}' "
                "FROM generate_series(0, 3999) i; "
                "INSERT INTO orders (cid, cid_key, status, created_ms, updated_ms) "
                "SELECT 'c' || i, 'c' || i, 'pinned', 1, 1 FROM generate_series(0, 3999) i")
            await asyncio.sleep(1.5)
            return first, await orders_read(h, pool), await orders_read(h, pool)
        finally:
            await postgres_direct.close_pool(pool)

    try:
        assert await db.run(scenario) == (0, 10, 10)
    finally:
        await db.close()
