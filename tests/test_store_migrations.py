"""The schema upgrades an existing database in place, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from tortoise import connections

from conftest import database_url_for_test
from w3gate.store import migrations, orders
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
        ("bafkqaaa", "queued", 1002),
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


async def test_extrinsics_recorded_before_spec_versions_stay_open_with_none(tmp_path) -> None:
    """An extrinsic recorded before the spec version was (NULL after the upgrade) is still settled by its era;
    one recorded after carries the spec version it was signed under (the submitter's upgrade verdict reads it)."""
    step = next(i for i, (title, _) in enumerate(migrations.MIGRATIONS, 1) if "spec version they were signed" in title)
    url = _url(tmp_path)
    old = Database(url)
    assert await old.open(upgrade_to=step - 1) == (0, step - 1)

    async def insert_open_tx() -> None:
        await connections.get(old.connection_name).execute_script(
            "INSERT INTO crust_txs (hash, nonce, extrinsic, cids, start_block, era_end, status, created_ms, updated_ms)"
            " VALUES ('0xold', 3, '0x00', '[\"bafkqaaa\"]', 1, 65, 'sent', 1000, 1000)"
        )

    await old.run(insert_open_tx)
    await old.close()
    new = Database(url)
    assert await new.open() == (step - 1, migrations.LATEST)
    tx = {"hash": "0xnew", "nonce": 4, "extrinsic": "0x01", "start_block": 2, "era_end": 66, "spec_version": 4}
    await new.run(orders.record_tx, "token", tx, [], 2000)
    assert [(t["hash"], t["spec_version"]) for t in await new.run(orders.open_txs)] == [("0xold", None), ("0xnew", 4)]
    await new.close()
