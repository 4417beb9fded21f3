"""The submitter's bookkeeping at store level: a batch's verdicts applied per CID (resolve_tx).

The devchain tests drive the same code through a real chain; these cover every verdict, for new orders
and for renewals, in one batch, including the ones a devchain run rarely produces (failures, the last
attempt).
"""

from __future__ import annotations

import sqlite3

import pytest

from w3gate.ordering.lifecycle import Outcome, RecordedBatch, Verdict
from w3gate.store import orders
from w3gate.store import pins as store
from w3gate.store.db import Database
from w3gate.store.models import Order, Pin
from w3gate.store.pins import NewPin

NOW = 2_000_000_000_000
TX = RecordedBatch("0x" + "ab" * 32, nonce=7, extrinsic="0x00", start_block=1, era_end=65, spec_version=None)
MAX_ATTEMPTS, DELAYS = 3, {1: 60_000}




async def sent_batch(db: Database, cids: list[str], *, renewal: bool) -> None:
    """Pins for ``cids`` (pinned and due for renewal, if ``renewal``), claimed and recorded as TX; the
    last CID has failed twice before, so its next failure is its last."""

    async def setup(h) -> None:
        for i, cid in enumerate(cids):
            await store.create_pin(h, "owner", NewPin(cid=cid), 1_000 + i)
        if renewal:
            await Order.filter(cid__in=cids).update(status="pinned", renew_due=1, renewals=1, placed_block=9)
            await Pin.filter(cid__in=cids).update(status="pinned")
        await Order.filter(cid=cids[-1]).update(attempts=2)

    await db.run(setup)
    claimed = await db.run(orders.claim, "token", 10, NOW)
    assert sorted(c.cid for c in claimed) == cids and all(c.renewal == renewal for c in claimed)
    await db.run(orders.record_tx, "token", TX, cids, NOW)


async def resolve(db: Database, verdicts: dict[str, tuple[str, str | None]], now: int) -> dict[str, int]:
    said = {cid: Outcome(Verdict(v), reason) for cid, (v, reason) in verdicts.items()}
    return await db.run(orders.resolve_tx, TX.hash, said, 42, now, MAX_ATTEMPTS, DELAYS)


async def state(db: Database, cids: list[str], *fields: str) -> list[tuple]:
    """Per CID: the order's ``fields`` and the set of its pins' statuses."""

    async def read(h) -> list[tuple]:
        found = {}
        for o in await Order.filter(cid__in=cids):
            pins = {p.status for p in await Pin.filter(cid=o.cid)}
            found[o.cid] = (*(getattr(o, f) for f in fields), pins)
        return [found[c] for c in cids]

    return await db.run(read)


async def test_one_batch_every_verdict(db) -> None:
    cids = [f"bafkqa{i:08d}" for i in range(7)]
    await sent_batch(db, cids, renewal=False)
    verdicts = {
        cids[0]: ("ok", None), cids[1]: ("ok", None),
        cids[2]: ("requeue", None), cids[3]: ("requeue", None),
        cids[4]: ("fail", "rejected"), cids[6]: ("fail", "rejected again"),
        cids[5]: ("pause", "market off"),
    }
    await db.run(lambda _: Order.filter(cid=cids[5]).update(attempts=1))
    assert await resolve(db, verdicts, NOW + 1) == (
        {"ok": 2, "renewed": 0, "fail": 2, "failed": 1, "requeue": 2, "pause": 1, "topped": 0})
    found = await state(db, cids, "status", "placed_block", "attempts", "next_try_ms", "error")
    assert found[0] == ("pinning", 42, 0, 0, None, {"pinning"})
    assert found[1] == ("pinning", 42, 0, 0, None, {"pinning"})
    assert found[2][0] == "queued" and found[2][5] == {"queued"}
    assert found[3][0] == "queued" and found[3][5] == {"queued"}
    assert found[4] == ("queued", None, 1, NOW + 1 + 60_000, "rejected", {"queued"})
    # a chain-wide refusal is not the CID's fault: queued again at once, its attempts untouched
    assert found[5] == ("queued", None, 1, 0, "market off", {"queued"})
    assert found[6] == ("failed", None, 3, found[6][3], "rejected again", {"failed"})
    # resolving the same transaction again changes nothing
    assert await resolve(db, verdicts, NOW + 2) == (
        {"ok": 0, "renewed": 0, "fail": 0, "failed": 0, "requeue": 0, "pause": 0, "topped": 0})
    assert await state(db, cids, "status", "placed_block", "attempts", "next_try_ms", "error") == found
    # what /healthz shows: every order counted once, by status
    assert await orders.counts(db) == {"pinning": 2, "queued": 4, "failed": 1, "renewal_stopped": 0}


async def test_one_batch_every_verdict_for_renewals(db) -> None:
    cids = [f"bafkqr{i:08d}" for i in range(6)]
    await sent_batch(db, cids, renewal=True)
    verdicts = {
        cids[0]: ("ok", None), cids[1]: ("ok", None), cids[2]: ("requeue", None),
        cids[3]: ("fail", "rejected"), cids[5]: ("fail", "rejected again"), cids[4]: ("pause", "market off"),
    }
    assert await resolve(db, verdicts, NOW + 1) == (
        {"ok": 2, "renewed": 2, "fail": 2, "failed": 1, "requeue": 1, "pause": 1, "topped": 0})
    found = await state(db, cids, "status", "renew_due", "renewals", "attempts", "next_try_ms", "error")
    # a renewal never changes what the user sees: the file stays pinned whatever the verdict
    assert found == [
        ("pinned", 0, 2, 0, 0, None, {"pinned"}),
        ("pinned", 0, 2, 0, 0, None, {"pinned"}),
        ("pinned", 1, 1, 0, 0, None, {"pinned"}),
        ("pinned", 1, 1, 1, NOW + 1 + 60_000, "rejected", {"pinned"}),
        ("pinned", 1, 1, 0, 0, "market off", {"pinned"}),
        # the last attempt stops renewal (renew_due 3): the poller does not mark it due again
        ("pinned", 3, 1, 3, 0, "renewal stopped after 3 failed attempts: rejected again", {"pinned"}),
    ]
    assert (await orders.counts(db))["renewal_stopped"] == 1


async def test_refused_claims_are_failed_or_stopped_without_an_attempt(db) -> None:
    """A claimed order that must never be sent (a known size at or over MaximumFileSize): a new order is failed
    with the reason, a renewal stopped; neither is charged an attempt, and the rest of the claim stands."""
    new, renewal, kept = "bafkqnew00000001", "bafkqren00000001", "bafkqkept0000001"

    async def setup(h) -> None:
        for i, cid in enumerate((new, renewal, kept)):
            await store.create_pin(h, "owner", NewPin(cid=cid), 1_000 + i)
        await Order.filter(cid=renewal).update(status="pinned", renew_due=1, renewals=1, file_size=99)
        await Pin.filter(cid=renewal).update(status="pinned")

    await db.run(setup)
    assert len(await db.run(orders.claim, "claim:t", 10, NOW)) == 3
    await db.run(orders.refuse_claimed, "claim:t", [new, renewal], "too large", NOW + 1)
    found = await state(db, [new, renewal, kept], "status", "renew_due", "attempts", "tx_hash", "error")
    assert found == [
        ("failed", 0, 0, None, "too large", {"failed"}),
        ("pinned", 3, 0, None, "renewal stopped: too large", {"pinned"}),
        ("submitting", 0, 0, "claim:t", None, {"queued"}),
    ]
    await db.run(orders.release_stale_claims, NOW + 10, NOW + 10)  # a stale claim frees only what it still holds
    assert [f[0:2] for f in await state(db, [new, renewal, kept], "status", "renew_due")] == [
        ("failed", 0), ("pinned", 3), ("queued", 0)]


async def test_sqlite_scans_run_on_a_read_only_connection_of_their_own(tmp_path) -> None:
    """On SQLite a long aggregate must not run on the store's connection (it lives in the service's
    thread): read_aside opens a read-only one, which sees committed rows and refuses writes."""
    db = Database(f"sqlite://{tmp_path / 'data dir?#%20' / 'db.sqlite3'}")  # URI characters in the path
    await db.open()
    try:
        await db.run(store.create_pin, "owner", NewPin(cid="bafkqaaa"), 1_000)
        assert await db.read_aside("SELECT status, COUNT(*) FROM orders GROUP BY status") == [("queued", 1)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.read_aside("DELETE FROM orders")
        assert await orders.counts(db) == {"queued": 1, "renewal_stopped": 0}
    finally:
        await db.close()
