"""New pins that arrive together share one SQLite transaction (w3gate/store/group_commit.py): each write still
stands or falls alone, and nobody is answered before the commit that holds its write."""

from __future__ import annotations

import hashlib
from base64 import b32encode
from typing import Any

import pytest
import trio
from conftest import POSTGRES, open_store

from w3gate.domain.pins import NewPin
from w3gate.hookspecs import Quota
from w3gate.services.pins import parse_pin
from w3gate.store.group_commit import GroupCommit
from w3gate.store.models import Order, Pin
from w3gate.store.users import QuotaExceeded


def cid(i: int) -> str:
    digest = hashlib.sha256(f"group-commit-{i}".encode()).digest()
    return "b" + b32encode(bytes([1, 0x55, 0x12, 0x20]) + digest).decode().lower().rstrip("=")


async def create_together(db: Any, writes: list[tuple[str, str, int, Quota]]) -> list[Any]:
    """``db.create_pin`` for every write, all started in one turn of the event loop; each result or error."""
    results: list[Any] = [None] * len(writes)

    async def one(i: int, owner: str, text: str, created: int, quota: Quota) -> None:
        try:
            results[i] = await db.create_pin(owner, parse_pin({"cid": text}), created, quota)
        except Exception as exc:  # noqa: BLE001 - compared by the test
            results[i] = exc

    async with trio.open_nursery() as nursery:
        for i, write in enumerate(writes):
            nursery.start_soon(one, i, *write)
    return results


async def test_writes_that_arrive_together_share_one_commit_and_each_gets_its_own_result(tmp_path) -> None:
    db = await open_store(tmp_path)
    try:
        unbounded = Quota()
        results = await create_together(db, [("alice", cid(i), 1_000 + i, unbounded) for i in range(20)])
        assert all(isinstance(r, tuple) for r in results), results
        records = [r[0] for r in results]
        assert [r.cid for r in records] == [cid(i) for i in range(20)]
        assert len({r.requestid for r in records}) == 20
        assert await db.run(lambda h: Pin.filter(owner="alice").using_db(h.client).count()) == 20
        if not POSTGRES:  # PostgreSQL writes each on a connection of its own, concurrently
            assert db.pin_writes.writes == 20
            assert db.pin_writes.batches < 20, "the writes were committed one by one"
    finally:
        await db.close()


async def test_a_refused_write_in_a_batch_undoes_only_its_own_changes(tmp_path) -> None:
    """Three pins allowed: of ten arriving together, three are stored with their orders, seven are refused
    and leave neither a pin, nor an order, nor a count behind."""
    db = await open_store(tmp_path)
    try:
        quota = Quota(pins=3)
        results = await create_together(db, [("bob", cid(100 + i), 2_000 + i, quota) for i in range(10)])
        stored = [r for r in results if isinstance(r, tuple)]
        refused = [r for r in results if isinstance(r, QuotaExceeded)]
        assert (len(stored), len(refused)) == (3, 7), results
        stored_keys = {r[0].cid for r in stored}

        async def rows(h: Any) -> tuple[set[str], set[str], list[Any]]:
            pins = set(await Pin.filter(owner="bob").using_db(h.client).values_list("cid_key", flat=True))
            orders = set(await Order.all().using_db(h.client).values_list("cid_key", flat=True))
            users = await h.client.execute_query_dict("SELECT pins, day_pins FROM users WHERE user_key = 'bob'")
            return pins, orders, users

        pins, orders, users = await db.run(rows)
        assert pins == stored_keys
        assert orders == stored_keys  # a refused pin's order would have been placed and paid for
        assert (users[0]["pins"], users[0]["day_pins"]) == (3, 3)
    finally:
        await db.close()


@pytest.mark.skipif(bool(POSTGRES), reason="group commit is SQLite's")
async def test_same_millisecond_in_one_batch_moves_the_second_on(tmp_path) -> None:
    """``created`` is unique: a write whose time was taken meanwhile moves on by 1 ms, inside the batch."""
    db = await open_store(tmp_path)
    try:
        results = await create_together(db, [("carol", cid(200), 5_000, Quota()), ("dave", cid(201), 5_000, Quota())])
        assert all(isinstance(r, tuple) for r in results), results
        assert sorted(r[1] for r in results) == [5_000, 5_001]
        assert db.pin_writes.batches == 1
    finally:
        await db.close()


async def test_a_failed_batch_fails_every_write_in_it_and_the_next_batch_runs() -> None:
    calls: list[list[int]] = []

    async def write_batch(batch: list[int]) -> list[Any]:
        calls.append(list(batch))
        if len(calls) == 1:
            raise RuntimeError("disk full")
        return [n * 10 for n in batch]

    group: GroupCommit[int, int] = GroupCommit(write_batch)
    outcomes: dict[int, Any] = {}

    async def one(n: int) -> None:
        try:
            outcomes[n] = await group.write(n)
        except RuntimeError as exc:
            outcomes[n] = str(exc)

    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(one, n)
    assert outcomes == {n: "disk full" for n in range(4)}
    assert [sorted(batch) for batch in calls] == [[0, 1, 2, 3]]  # one batch (trio runs them in any order)
    assert await group.write(7) == 70
    assert group.batches == 2


async def test_a_writer_cancelled_while_waiting_does_not_cancel_the_batch() -> None:
    """The first writer waits a turn for others; if it is cancelled meanwhile (its client left), the batch is
    still written and the others answered."""
    started = trio.Event()

    async def write_batch(batch: list[int]) -> list[Any]:
        started.set()
        return list(batch)

    group: GroupCommit[int, int] = GroupCommit(write_batch)
    got: list[int] = []

    async def other() -> None:
        got.append(await group.write(2))

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as first:
            nursery.start_soon(other)
            first.cancel()
            with pytest.raises(trio.Cancelled):
                await group.write(1)
    assert started.is_set()
    assert got == [2]


@pytest.mark.skipif(bool(POSTGRES), reason="group commit is SQLite's")
async def test_an_unexpected_error_in_one_write_stores_nothing_of_its_batch(tmp_path) -> None:
    """Only a quota refusal is one write's own: any other error (here a meta key longer than the store's column,
    which the API refuses before the store) ends the transaction, and every write of the batch gets it."""
    db = await open_store(tmp_path)
    try:
        results: list[Any] = [None] * 3

        async def one(i: int, pin: NewPin) -> None:
            try:
                results[i] = await db.create_pin("erin", pin, 7_000 + i)
            except Exception as exc:  # noqa: BLE001 - compared below
                results[i] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, 0, NewPin(cid=cid(300)))
            nursery.start_soon(one, 1, NewPin(cid=cid(301), meta={"k" * 300: "v"}))
            nursery.start_soon(one, 2, NewPin(cid=cid(302)))
        assert db.pin_writes.batches == 1
        assert all(isinstance(r, Exception) and not isinstance(r, QuotaExceeded) for r in results), results
        assert await db.run(lambda h: Pin.all().using_db(h.client).count()) == 0
        assert await db.run(lambda h: Order.all().using_db(h.client).count()) == 0
        assert (await db.create_pin("erin", NewPin(cid=cid(303)), 7_010))[0].cid == cid(303)  # the store goes on
    finally:
        await db.close()
