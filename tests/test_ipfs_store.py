"""What w3gate holds on its IPFS node, at store level (SQLite, and PostgreSQL when under test): the submitter claims
a new order only once its content is fetched and measured, the measured size replaces the admitted one in the
owner's bytes, each hold mode releases at its point, and a failed fetch fails the pins with nothing ordered."""

from __future__ import annotations

import pytest

from w3gate.hookspecs import Quota
from w3gate.store import ipfs_content, orders
from w3gate.store import pins as store
from w3gate.store.db import Database
from w3gate.store.models import Order, Pin
from w3gate.store.pins import NewPin

NOW = 2_000_000_000_000




async def _pin(db: Database, owner: str, cid: str, size: int = 0) -> str:
    rec, _ = await db.run(store.create_pin, owner, NewPin(cid=cid), NOW + hash(cid) % 1000, Quota(bytes=10**12), size)
    return rec.requestid


async def test_claimed_only_once_fetched_and_sized(db: Database) -> None:
    await _pin(db, "alice", "bafk-a", size=2 * 1024**3)
    assert await db.run(orders.claim, "claim:1", 10, NOW + 10, True) == []  # not fetched yet
    due = await db.run(ipfs_content.due, 10, NOW + 10, [])
    assert [d.key for d in due] == ["bafk-a"]
    await db.run(ipfs_content.begin, "bafk-a", "bafk-a", True, NOW)
    assert await db.run(orders.claim, "claim:1", 10, NOW + 10, True) == []  # fetching is not enough
    await db.run(ipfs_content.fetched, "bafk-a", 12_345, NOW + 5)
    assert await db.run(ipfs_content.due, 10, NOW + 10, []) == []
    claimed = await db.run(orders.claim, "claim:2", 10, NOW + 10, True)
    assert [(c.cid, c.file_size) for c in claimed] == [("bafk-a", 12_345)]  # ordered at the measured size


async def test_due_skips_fetches_under_way_and_waits_for_their_retry_time(db: Database) -> None:
    """``busy`` (the fetches in flight) and ``next_try_ms`` both hold with each other: a content is never fetched
    twice at once, nor tried again before its back-off, whatever else is in flight."""
    for cid in ("bafk-busy", "bafk-later", "bafk-now"):
        await _pin(db, "dave", cid)
    await db.run(ipfs_content.waiting, "bafk-later", "waiting for providers", NOW + 60_000, NOW)
    due = await db.run(ipfs_content.due, 10, NOW + 10, ["bafk-busy"])
    assert [d.key for d in due] == ["bafk-now"]
    due = await db.run(ipfs_content.due, 10, NOW + 10, ["bafk-busy", "bafk-now"])
    assert due == []


async def test_measured_size_replaces_the_admitted_one_in_usage(db: Database) -> None:
    await _pin(db, "bob", "bafk-b", size=2 * 1024**3)
    await db.run(ipfs_content.begin, "bafk-b", "bafk-b", True, NOW)
    await db.run(ipfs_content.fetched, "bafk-b", 1000, NOW + 1)

    async def usage(h) -> tuple[int, int]:
        conn = h.client
        rows = await conn.execute_query_dict("SELECT bytes FROM users WHERE user_key = 'bob'")
        return int(rows[0]["bytes"]), int((await Pin.get(cid_key="bafk-b")).size)

    assert await db.run(usage) == (1000, 1000)
    assert (await db.run(lambda _: Order.get(cid_key="bafk-b"))).dag_size == 1000


async def test_failed_fetch_fails_the_pins_and_repin_fetches_again(db: Database) -> None:
    rid = await _pin(db, "carol", "bafk-c")
    await db.run(ipfs_content.begin, "bafk-c", "bafk-c", True, NOW)
    await db.run(ipfs_content.give_up, "bafk-c", "could not be fetched", NOW + 1)
    rec = await db.run(store.get_pin, "carol", rid)
    assert rec.status == "failed" and rec.info["status_details"] == "could not be fetched"
    assert await db.run(orders.claim, "claim:1", 10, NOW + 10, True) == []
    await _pin(db, "dave", "bafk-c")  # pinned again: queued, and fetched again, with a fresh fetch_timeout
    assert [d.key for d in await db.run(ipfs_content.due, 10, NOW + 10, [])] == ["bafk-c"]
    assert await db.run(ipfs_content.begin, "bafk-c", "bafk-c", True, NOW + 50) == (NOW + 50, True)


@pytest.mark.parametrize(("hold", "released_at"), [("never", "pinning"), ("until_pinned", "pinned"),
                                                   ("always", None)])
async def test_each_hold_mode_releases_at_its_point(db: Database, hold: str, released_at: str | None) -> None:
    rid = await _pin(db, "erin", "bafk-e")
    await db.run(ipfs_content.begin, "bafk-e", "bafk-e", True, NOW)
    await db.run(ipfs_content.fetched, "bafk-e", 10, NOW)
    for status in ("queued", "pinning", "pinned"):
        await db.run(lambda _, s=status: Order.filter(cid_key="bafk-e").update(status=s))
        keys = [r["cid_key"] for r in await db.run(ipfs_content.releasable, hold, 10)]
        expect_released = released_at is not None and (
            ("queued", "pinning", "pinned").index(status) >= ("queued", "pinning", "pinned").index(released_at))
        assert keys == (["bafk-e"] if expect_released else []), (hold, status)
    await db.run(store.delete_pin, "erin", rid)  # the last pin gone: released in every mode
    assert [r["cid_key"] for r in await db.run(ipfs_content.releasable, hold, 10)] == ["bafk-e"]


async def test_upgrade_to_schema_12_keeps_orders_claimable_and_usage_in_step(tmp_path) -> None:
    """A database of the release before (schema 10) with a pin admitted at 2 GiB: upgraded, its order is claimable
    as before without a node, and once measured the owner's bytes follow the pin's new size."""
    from conftest import database_url_for_test

    from w3gate.store import migrations

    url = database_url_for_test() or f"sqlite://{tmp_path / 'old.sqlite3'}"
    old = Database(url)
    assert await old.open(upgrade_to=10) == (0, 10)

    async def insert_old_rows(h) -> None:  # as the release before wrote them (its store does not know dag_size)
        conn = h.client
        await conn.execute_script(
            "INSERT INTO orders (cid, cid_key, status, created_ms, updated_ms) "
            "VALUES ('bafk-f', 'bafk-f', 'queued', 1, 1);"
            "INSERT INTO pins (requestid, owner, cid, cid_key, status, created_ms, size) "
            f"VALUES ('r-f', 'frank', 'bafk-f', 'bafk-f', 'queued', 1000, {2 * 1024**3})")

    await old.run(insert_old_rows)
    await old.close()
    new = Database(url)
    assert await new.open() == (10, migrations.LATEST) and migrations.LATEST == 12
    try:
        assert migrations.is_additive(11) and migrations.is_additive(12)  # the release before keeps serving
        assert (await new.run(lambda _: Order.get(cid_key="bafk-f"))).dag_size is None
        assert [c.cid for c in await new.run(orders.claim, "claim:x", 10, NOW)] == ["bafk-f"]  # no node: as before
        await new.run(orders.release_claim, "claim:x", NOW)
        await new.run(ipfs_content.begin, "bafk-f", "bafk-f", True, NOW)
        await new.run(ipfs_content.fetched, "bafk-f", 777, NOW + 1)

        async def bytes_of(h) -> int:
            rows = await h.client.execute_query_dict("SELECT bytes FROM users WHERE user_key = 'frank'")
            return int(rows[0]["bytes"])

        assert await new.run(bytes_of) == 777
        await new.run(store.delete_pin, "frank", "r-f")
        assert await new.run(bytes_of) == 0  # the delete gives back the size the pin has now
    finally:
        await new.close()
