"""The submitter's bookkeeping at store level: a batch's verdicts applied per CID (resolve_tx).

The devchain tests drive the same code through a real chain; this one covers every verdict for new
orders in one batch, including the ones a devchain run rarely produces (failures, the last attempt).
"""

from __future__ import annotations

import sqlite3

import pytest

from conftest import database_url_for_test
from w3gate.store import orders
from w3gate.store import pins as store
from w3gate.store.db import Database
from w3gate.store.models import Order, Pin
from w3gate.store.pins import NewPin

NOW = 2_000_000_000_000
TX = {"hash": "0x" + "ab" * 32, "nonce": 7, "extrinsic": "0x00", "start_block": 1, "era_end": 65}


async def test_one_batch_every_verdict(tmp_path) -> None:
    db = Database(database_url_for_test() or f"sqlite://{tmp_path / 'db.sqlite3'}")
    await db.open()
    try:
        cids = [f"bafkqa{i:08d}" for i in range(6)]

        async def setup() -> None:
            for i, cid in enumerate(cids):
                await store.create_pin("owner", NewPin(cid=cid), 1_000 + i)
            await Order.filter(cid=cids[5]).update(attempts=2)  # its next failure is its last

        await db.run(setup)
        claimed = await db.run(orders.claim, "token", 10, NOW)
        assert sorted(c.cid for c in claimed) == cids
        await db.run(orders.record_tx, "token", TX, cids, NOW)
        verdicts = {
            cids[0]: ("ok", None), cids[1]: ("ok", None),
            cids[2]: ("requeue", None), cids[3]: ("requeue", None),
            cids[4]: ("fail", "rejected"), cids[5]: ("fail", "rejected again"),
        }
        counts = await db.run(orders.resolve_tx, TX["hash"], verdicts, 42, NOW + 1, 3, {1: 60_000})
        assert counts == {"ok": 2, "fail": 2, "failed": 1, "requeue": 2}

        async def state() -> dict[str, tuple]:
            found = {}
            for o in await Order.filter(cid__in=cids):
                pins = {p.status for p in await Pin.filter(cid=o.cid)}
                found[o.cid] = (o.status, o.placed_block, o.attempts, o.next_try_ms, o.error, pins)
            return found

        found = await db.run(state)
        assert found[cids[0]] == ("pinning", 42, 0, 0, None, {"pinning"})
        assert found[cids[1]] == ("pinning", 42, 0, 0, None, {"pinning"})
        assert found[cids[2]][0] == "queued" and found[cids[2]][5] == {"queued"}
        assert found[cids[3]][0] == "queued" and found[cids[3]][5] == {"queued"}
        assert found[cids[4]] == ("queued", None, 1, NOW + 1 + 60_000, "rejected", {"queued"})
        assert found[cids[5]] == ("failed", None, 3, found[cids[5]][3], "rejected again", {"failed"})
        # resolving the same transaction again changes nothing
        again = await db.run(orders.resolve_tx, TX["hash"], verdicts, 42, NOW + 2, 3, {1: 60_000})
        assert again == {"ok": 0, "fail": 0, "failed": 0, "requeue": 0}
        assert await db.run(state) == found
        # what /healthz shows: every order counted once, by status
        assert await orders.counts(db) == {"pinning": 2, "queued": 3, "failed": 1}
    finally:
        await db.close()


async def test_one_batch_every_verdict_for_renewals(tmp_path) -> None:
    db = Database(database_url_for_test() or f"sqlite://{tmp_path / 'db.sqlite3'}")
    await db.open()
    try:
        cids = [f"bafkqr{i:08d}" for i in range(5)]

        async def setup() -> None:
            for i, cid in enumerate(cids):
                await store.create_pin("owner", NewPin(cid=cid), 1_000 + i)
            await Order.filter(cid__in=cids).update(status="pinned", renew_due=1, renewals=1, placed_block=9)
            await Pin.filter(cid__in=cids).update(status="pinned")
            await Order.filter(cid=cids[4]).update(attempts=2)  # its next failure is its last

        await db.run(setup)
        claimed = await db.run(orders.claim, "token", 10, NOW)
        assert sorted(c.cid for c in claimed) == cids and all(c.renewal for c in claimed)
        await db.run(orders.record_tx, "token", TX, cids, NOW)
        verdicts = {
            cids[0]: ("ok", None), cids[1]: ("ok", None), cids[2]: ("requeue", None),
            cids[3]: ("fail", "rejected"), cids[4]: ("fail", "rejected again"),
        }
        counts = await db.run(orders.resolve_tx, TX["hash"], verdicts, 42, NOW + 1, 3, {1: 60_000})
        assert counts == {"ok": 2, "fail": 2, "failed": 1, "requeue": 1}

        async def state() -> dict[str, tuple]:
            found = {}
            for o in await Order.filter(cid__in=cids):
                pins = {p.status for p in await Pin.filter(cid=o.cid)}
                found[o.cid] = (o.status, o.renew_due, o.renewals, o.attempts, o.next_try_ms, o.error, pins)
            return found

        found = await db.run(state)
        # a renewal never changes what the user sees: the file stays pinned whatever the verdict
        assert found[cids[0]] == ("pinned", 0, 2, 0, 0, None, {"pinned"})
        assert found[cids[1]] == ("pinned", 0, 2, 0, 0, None, {"pinned"})
        assert found[cids[2]] == ("pinned", 1, 1, 0, 0, None, {"pinned"})
        assert found[cids[3]] == ("pinned", 1, 1, 1, NOW + 1 + 60_000, "rejected", {"pinned"})
        assert found[cids[4]] == ("pinned", 0, 1, 3, 0, "renewal failed: rejected again", {"pinned"})
    finally:
        await db.close()


async def test_sqlite_scans_run_on_a_read_only_connection_of_their_own(tmp_path) -> None:
    """On SQLite a long aggregate must not run on the store's connection (it lives in the service's
    thread): read_aside opens a read-only one, which sees committed rows and refuses writes."""
    db = Database(f"sqlite://{tmp_path / 'db.sqlite3'}")
    await db.open()
    try:
        await db.run(store.create_pin, "owner", NewPin(cid="bafkqaaa"), 1_000)
        assert await db.read_aside("SELECT status, COUNT(*) FROM orders GROUP BY status") == [("queued", 1)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.read_aside("DELETE FROM orders")
        assert await orders.counts(db) == {"queued": 1}
    finally:
        await db.close()
