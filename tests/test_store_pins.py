"""Store-level checks that HTTP tests cannot see directly: trigger-kept counts and order sharing."""

from __future__ import annotations

import pytest
import trio
from conftest import POSTGRES, open_store
from tortoise.transactions import in_transaction

from w3gate.ordering.lifecycle import RenewState
from w3gate.store import pins as store
from w3gate.store.db import Database
from w3gate.store.models import PIN_STATUSES, Order, Pin
from w3gate.store.pins import NewPin, PinQuery
from w3gate.store.sqlite_inline import checkpoint

CIDS = ["QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "bafkqaaa",
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"]


async def test_counts_match_a_full_count_through_every_change(tmp_path) -> None:
    db = await open_store(tmp_path)
    try:
        async def scenario(h) -> list[tuple[int, int]]:
            ms = 1_000
            ids = []
            for i in range(12):
                for owner in ("a", "b"):
                    rec, ms = await store.create_pin(h, owner, NewPin(cid=CIDS[i % 3]), ms + 1)
                    ids.append((owner, rec.requestid))
            async with in_transaction() as conn:
                await Order.filter(cid=CIDS[0]).using_db(conn).update(status="pinned")
                await Pin.filter(cid=CIDS[0]).using_db(conn).update(status="pinned")
                await Pin.filter(cid=CIDS[1]).using_db(conn).update(status="failed")
            for owner, rid in ids[:5]:
                await store.delete_pin(h, owner, rid)
            await store.replace_pin(h, ids[7][0], ids[7][1], NewPin(cid=CIDS[2]), ms + 10)
            checks = []
            for owner in ("a", "b"):
                for statuses in [(), ("pinned",), ("queued", "failed"), ("queued", "pinning", "pinned", "failed")]:
                    fast, _ = await store.list_pins(h, owner, PinQuery(statuses=statuses))
                    slow = await Pin.filter(owner=owner, **({"status__in": list(statuses)} if statuses else {})).count()
                    checks.append((fast, slow))
            return checks

        checks = await db.run(scenario)
        assert all(fast == slow for fast, slow in checks), checks
        assert any(fast > 0 for fast, _ in checks)
    finally:
        await db.close()


async def test_one_order_per_cid_and_failed_order_requeued(tmp_path) -> None:
    db = await open_store(tmp_path)
    try:
        async def scenario(h) -> tuple[int, str, str]:
            await store.create_pin(h, "a", NewPin(cid=CIDS[0]), 1)
            await store.create_pin(h, "b", NewPin(cid=CIDS[0]), 2)
            await Order.filter(cid=CIDS[0]).update(status="failed", error="boom", attempts=5)
            await Pin.filter(cid=CIDS[0]).update(status="failed")
            rec, _ = await store.create_pin(h, "c", NewPin(cid=CIDS[0]), 3)
            order = await Order.get(cid=CIDS[0])
            others = {p.status for p in await Pin.filter(cid=CIDS[0])}
            return await Order.all().count(), order.status, rec.status + "/" + ",".join(sorted(others))

        n, status, pin_status = await db.run(scenario)
        assert (n, status, pin_status) == (1, "queued", "queued/queued")
    finally:
        await db.close()


async def test_created_collision_moves_on(tmp_path) -> None:
    db = await open_store(tmp_path)
    try:
        async def scenario(h) -> tuple[int, int]:
            _, first = await store.create_pin(h, "a", NewPin(cid=CIDS[0]), 5000)
            _, second = await store.create_pin(h, "b", NewPin(cid=CIDS[1]), 5000)  # as another instance would
            return first, second

        assert await db.run(scenario) == (5000, 5001)
    finally:
        await db.close()


async def test_cancelled_trio_task_leaves_no_transaction_open(tmp_path) -> None:
    """A trio cancellation while the ORM works must neither abandon nor half-apply a transaction."""
    import asyncio

    db = await open_store(tmp_path)
    try:
        async def slow_transaction(h) -> None:
            async with in_transaction() as conn:
                await Pin.create(requestid="slow", owner="a", cid=CIDS[0], status="queued",
                                 created_ms=77, using_db=conn)
                await asyncio.sleep(0.5)  # the trio side is cancelled meanwhile
                await Pin.create(requestid="slow2", owner="a", cid=CIDS[0], status="queued",
                                 created_ms=78, using_db=conn)

        started = trio.current_time()
        with trio.move_on_after(0.05):
            await db.run(slow_transaction)
        # the wait is shielded: the cancelled call still returns only once the transaction committed
        assert trio.current_time() - started >= 0.45

        async def after(h) -> list[str]:
            rec, _ = await store.create_pin(h, "b", NewPin(cid=CIDS[1]), 1000)  # would block on a held lock
            return sorted(p.requestid for p in await Pin.filter(requestid__in=["slow", "slow2"]))

        with trio.fail_after(10):
            assert await db.run(after) == ["slow", "slow2"]
    finally:
        await db.close()


async def test_sqlite_log_is_checkpointed_by_maintain_not_by_commits(tmp_path) -> None:
    """The store's own connection never checkpoints (that would flush the disk in the service's
    thread); Database.maintain does, from a worker thread, and the log then starts over."""
    if POSTGRES:
        pytest.skip("SQLite only")
    path = tmp_path / "db.sqlite3"
    db = Database(f"sqlite://{path}")
    await db.open()
    try:
        for i in range(300):  # a few pages each: well past SQLite's default autocheckpoint of 1,000 pages
            await db.run(store.create_pin, "a", NewPin(cid=CIDS[i % 3], name=f"n{i}"), 10_000 + i)
        log_bytes = (tmp_path / "db.sqlite3-wal").stat().st_size
        assert log_bytes > 1_000 * 4096, log_bytes  # nothing checkpointed (and restarted) the log
        async with trio.open_nursery() as nursery:
            nursery.start_soon(db.maintain, 0.01)
            await trio.sleep(0.3)
            nursery.cancel_scope.cancel()
        await db.run(store.create_pin, "a", NewPin(cid=CIDS[0]), 20_000)  # restarts the checkpointed log
        busy, log_pages, done = await trio.to_thread.run_sync(checkpoint, str(path))
        assert busy == 0 and log_pages < 50, (busy, log_pages, done)
        count, _ = await db.run(store.list_pins, "a", PinQuery(statuses=("queued",)))
        assert count == 301
    finally:
        await db.close()


async def test_an_unkeyed_order_of_the_same_text_is_adopted(tmp_path) -> None:
    """The content-key migration (schema 7) leaves an order it merged away unkeyed; once the content's kept
    order is gone, pinning
    the content again in that text takes the unkeyed order back rather than failing on its text."""
    from w3gate.services.pins import parse_pin

    db = await open_store(tmp_path)
    try:
        key = "bafybeie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34"  # CIDS[0] as CIDv1

        async def scenario(h) -> list[tuple[str, str | None, str]]:
            await Order.create(cid=CIDS[0], cid_key=None, status="pinned", created_ms=1, updated_ms=1)
            rec, _ = await store.create_pin(h, "a", parse_pin({"cid": key.upper()}), 10)
            assert rec.status == "pinned" and rec.cid == key.upper()
            return [(o.cid, o.cid_key, o.status) for o in await Order.all()]

        assert await db.run(scenario) == [(CIDS[0], key, "pinned")]
    finally:
        await db.close()


async def test_a_new_pin_shows_its_contents_order_and_keeps_its_meta(tmp_path) -> None:
    """What creating a pin returns is what reading it back gives: the status and info of its content's order
    (new, waiting, in flight, placed), its name, origins and meta, which meta filters then find."""
    db = await open_store(tmp_path)
    try:
        async def scenario(h) -> list[tuple[str, dict[str, str], bool, int]]:
            await Order.create(cid=CIDS[0], cid_key=CIDS[0], status="pinning", file_size=123, expires_at=456,
                               replicas=2, cost="789", renewal="reorder", created_ms=1, updated_ms=1)
            await Order.create(cid=CIDS[1], cid_key=CIDS[1], status="submitting", created_ms=1, updated_ms=1)
            seen = []
            for i, cid in enumerate([*CIDS, CIDS[2]]):
                pin = NewPin(cid=cid, name=f"n{i}", origins=(f"/dnsaddr/o{i}.example",), meta={"app": "x", "i": str(i)})
                rec, _ = await store.create_pin(h, "a", pin, 100 + i)
                again = await store.get_pin(h, "a", rec.requestid)
                found = await store.list_pins(h, "a", PinQuery(meta=(("i", str(i)),), statuses=PIN_STATUSES))
                assert (rec.cid, rec.name, rec.origins, rec.meta) == (cid, f"n{i}", [f"/dnsaddr/o{i}.example"],
                                                                      {"app": "x", "i": str(i)})
                seen.append((rec.status, rec.info, rec == again, found[0] if found[1] == [rec] else -1))
            return seen

        assert await db.run(scenario) == [
            ("pinning", {"file_size": "123", "expires_at": "456", "replicas": "2", "cost": "789",
                         "renewal": "reorder"}, True, 1),
            ("queued", {}, True, 1),  # submitting: queued to the user
            ("queued", {}, True, 1),  # a new content: its order is made
            ("queued", {}, True, 1),  # the same content again: the same order
        ]
        assert await db.run(lambda _: Order.all().count()) == 3
    finally:
        await db.close()


async def test_pinning_a_content_whose_renewal_stopped_renews_it_again(tmp_path) -> None:
    db = await open_store(tmp_path)
    try:
        async def scenario(h) -> tuple[str, tuple[int, int, int, str | None]]:
            await Order.create(cid=CIDS[0], cid_key=CIDS[0], status="pinned", renew_due=RenewState.STOPPED, attempts=5,
                               next_try_ms=99, error="renewal failed", created_ms=1, updated_ms=1)
            rec, _ = await store.create_pin(h, "a", NewPin(cid=CIDS[0]), 10)
            order = await Order.get(cid=CIDS[0])
            return rec.status, (order.renew_due, order.attempts, order.next_try_ms, order.error)

        assert await db.run(scenario) == ("pinned", (0, 0, 0, None))
    finally:
        await db.close()
