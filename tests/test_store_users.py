"""Schema 8 (users) on a database with pins from before it, and the store's quota check, on SQLite and
PostgreSQL: usage is counted from the existing pins, kept by triggers, and a refused pin writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import POSTGRES, database_url_for_test
from tortoise import connections
from tortoise.transactions import in_transaction

from w3gate.hookspecs import Quota
from w3gate.store import migrations, users
from w3gate.store.db import Database
from w3gate.store.pins import NewPin, create_pin, delete_pin

CIDS = ["bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
        "bafkreidgvpkjawlxz6sffxzwgooowe5yt7i6wsyg236mfoks77nywkptdq",
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"]
DAY = users.DAY_MS * 20_000


async def test_schema_8_counts_existing_pins_and_keeps_quotas(tmp_path) -> None:
    url = database_url_for_test() or f"sqlite://{tmp_path / 'old.sqlite3'}"
    old = Database(url)
    await old.open(upgrade_to=migrations.LATEST - 1)

    async def insert_old_pins(h) -> None:
        conn = connections.get(old.connection_name)
        for i, owner in enumerate(["substrate:0xaa", "substrate:0xaa", "ethereum:0xbb"]):
            await conn.execute_script(
                "INSERT INTO pins (requestid, owner, cid, cid_key, name, status, created_ms) "
                f"VALUES ('r{i}', '{owner}', '{CIDS[i]}', '{CIDS[i]}', NULL, 'queued', {1000 + i})")

    await old.run(insert_old_pins)
    await old.close()
    db = Database(url)
    assert await db.open() == (migrations.LATEST - 1, migrations.LATEST)
    try:
        aa = await db.run(users.get_user, "substrate:0xaa", DAY)
        assert (aa.pins, aa.bytes) == (2, 0)  # counted from the pins; their sizes were never recorded
        quota = Quota(pins=3, bytes=2500, pins_per_day=10)
        record, _ = await db.run(create_pin, "substrate:0xaa", NewPin(cid=CIDS[2]), DAY, quota, 1000)
        aa = await db.run(users.get_user, "substrate:0xaa", DAY)
        assert (aa.pins, aa.bytes, aa.pins_today) == (3, 1000, 1)
        with pytest.raises(users.QuotaExceeded) as refused:
            await db.run(create_pin, "substrate:0xaa", NewPin(cid=CIDS[0]), DAY + 1, quota, 1000)
        assert refused.value.limit == "pins_per_user"
        assert await db.run(delete_pin, "substrate:0xaa", record.requestid)
        quota = Quota(pins=10, bytes=2500, pins_per_day=10)
        with pytest.raises(users.QuotaExceeded) as refused:  # the deleted pin's bytes came back; 2 x 2000 > 2500
            await db.run(create_pin, "substrate:0xaa", NewPin(cid=CIDS[0]), DAY + 2, quota, 2000)
            await db.run(create_pin, "substrate:0xaa", NewPin(cid=CIDS[1]), DAY + 3, quota, 2000)
        assert refused.value.limit == "bytes_per_user"
        aa = await db.run(users.get_user, "substrate:0xaa", DAY)
        assert (aa.pins, aa.bytes, aa.pins_today) == (3, 2000, 2)  # the refused pins left nothing behind
        bb = await db.run(users.get_user, "ethereum:0xbb", DAY)
        assert (bb.pins, bb.bytes, bb.pins_today) == (1, 0, 0)
    finally:
        await db.close()


@pytest.mark.skipif(not POSTGRES, reason="the interleaving needs a second PostgreSQL session (SQLite runs one writer)")
async def test_a_users_row_committed_between_the_update_and_the_select_is_not_a_refusal(tmp_path) -> None:
    """A user's first requests on several instances at once (CI, test_leader_failover): one's conditional
    UPDATE runs before another's new ``users`` row is committed and its SELECT after, so it saw no row and
    then a row within every bound. That is a race to retry, not a refusal (it was refused as
    PINS_PER_DAY_PER_USER at a limit of 10^18)."""
    import asyncpg  # type: ignore[import-untyped]

    url = database_url_for_test()
    assert url is not None
    db = Database(url)
    await db.open()
    owner, quota = "substrate:0xcc", Quota(pins=10**18, bytes=10**18, pins_per_day=10**18)

    async def interleaved(h) -> None:
        other = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            first = other.transaction()
            await first.start()
            await other.execute("INSERT INTO users (user_key) VALUES ($1)", owner)  # the other request's row

            class CommitsTheOtherAfterTheUpdate:
                def __init__(self, conn: Any) -> None:
                    self.conn, self.updates = conn, 0

                def __getattr__(self, name: str) -> Any:
                    return getattr(self.conn, name)

                async def execute_query_dict(self, sql: str, args: list[Any]) -> Any:
                    rows = await self.conn.execute_query_dict(sql, args)
                    if sql.startswith("UPDATE users") and self.updates == 0:
                        self.updates += 1
                        assert rows == []  # the other's row was not visible to it
                        await first.commit()
                    return rows

            async with in_transaction(db.connection_name) as conn:
                await users.admit(CommitsTheOtherAfterTheUpdate(conn), owner, quota, 1000, DAY)
        finally:
            await other.close()

    try:
        await db.run(interleaved)
        user = await db.run(users.get_user, owner, DAY)
        assert user.pins_today == 1
    finally:
        await db.close()
