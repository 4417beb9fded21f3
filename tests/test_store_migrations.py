"""The schema upgrades an existing database in place, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from tortoise import connections

from conftest import database_url_for_test
from w3gate.store import migrations
from w3gate.store.db import Database


def _url(tmp_path) -> str:
    return database_url_for_test() or f"sqlite://{tmp_path / 'old.sqlite3'}"


async def test_upgrade_from_first_release_keeps_data_and_adds_orders(tmp_path) -> None:
    url = _url(tmp_path)
    old = Database(url)
    assert await old.open(upgrade_to=1) == (0, 1)

    async def insert_old_rows() -> None:
        conn = connections.get(old.connection_name)
        for i, cid in enumerate(["QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"] * 2 + ["bafkqaaa"]):
            await conn.execute_script(
                "INSERT INTO pins (requestid, owner, cid, name, status, created_ms) "
                f"VALUES ('r{i}', 'substrate:0x01', '{cid}', 'n{i}', 'queued', {1000 + i})"
            )

    await old.run(insert_old_rows)
    await old.close()

    new = Database(url)
    assert await new.open() == (1, migrations.LATEST)

    async def read() -> tuple[list, list]:
        conn = connections.get(new.connection_name)
        pins = await conn.execute_query_dict("SELECT requestid, name FROM pins ORDER BY created_ms")
        orders = await conn.execute_query_dict("SELECT cid, status, created_ms FROM orders ORDER BY cid")
        return pins, orders

    pins, orders = await new.run(read)
    assert [p["requestid"] for p in pins] == ["r0", "r1", "r2"]
    assert [(o["cid"], o["status"], o["created_ms"]) for o in orders] == [
        ("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "queued", 1000),
        ("bafkqaaa", "failed", 1002),  # migration 5: an identity CID holds no data; its unsent order fails
    ]
    await new.close()
    # opening again is a no-op
    again = Database(url)
    assert await again.open() == (migrations.LATEST, migrations.LATEST)
    await again.close()


async def test_database_from_a_newer_release_is_refused(tmp_path) -> None:
    url = _url(tmp_path)
    db = Database(url)
    await db.open()

    async def bump() -> None:
        await connections.get(db.connection_name).execute_script(
            f"UPDATE schema_version SET version = {migrations.LATEST + 1}"
        )

    await db.run(bump)
    await db.close()
    with pytest.raises(migrations.SchemaTooNew):
        await Database(url).open()
