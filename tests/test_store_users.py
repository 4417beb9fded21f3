"""Schema 8 (users) on a database with pins from before it, and the store's quota check, on SQLite and
PostgreSQL: usage is counted from the existing pins, kept by triggers, and a refused pin writes nothing."""

from __future__ import annotations

import pytest
from conftest import database_url_for_test
from tortoise import connections

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

    async def insert_old_pins() -> None:
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
