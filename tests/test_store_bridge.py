"""The two ways trio reaches the asyncio ORM (w3gate.store.bridge), checked on real asyncio primitives.

InlineLoop steps a call by hand and hands it to its loop only when it waits: these tests make calls
that do and do not wait, and check what the ORM relies on across that hand-over (context variables,
locks, exceptions) as well as trio's side (cancellation before a call, other tasks running between).
"""

from __future__ import annotations

import asyncio
import contextvars

import pytest
import trio

from w3gate.store.bridge import AsyncioThread, InlineLoop

CURRENT = contextvars.ContextVar("CURRENT", default="none")


@pytest.fixture(params=["inline", "thread"])
def runner(request):
    runner = InlineLoop() if request.param == "inline" else AsyncioThread()
    yield runner
    runner.stop()


async def test_a_call_that_never_waits(runner) -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    assert await runner.run(add, 2, 3) == 5


async def test_a_call_that_waits_is_finished_by_the_loop(runner) -> None:
    lock = None

    async def contended() -> list[str]:
        nonlocal lock
        lock = asyncio.Lock()
        order: list[str] = []

        async def worker(name: str) -> None:
            async with lock:
                order.append(name + ">")
                await asyncio.sleep(0.01)
                order.append("<" + name)

        await asyncio.gather(worker("a"), worker("b"))
        return order

    assert await runner.run(contended) == ["a>", "<a", "b>", "<b"]


async def test_context_set_before_a_wait_is_reset_after_it(runner) -> None:
    """Tortoise sets its current transaction in a context variable, waits, then resets it."""

    async def transaction() -> tuple[str, str]:
        token = CURRENT.set("in transaction")
        await asyncio.sleep(0)  # a bare yield
        await asyncio.sleep(0.005)  # a real wait on a future
        inside = CURRENT.get()
        CURRENT.reset(token)  # raises ValueError if the context changed under the call
        return inside, CURRENT.get()

    assert await runner.run(transaction) == ("in transaction", "none")
    assert CURRENT.get() == "none"  # the caller's context is untouched


async def test_errors_come_through_with_their_type(runner) -> None:
    async def fails_at_once() -> None:
        raise KeyError("at once")

    async def fails_after_a_wait() -> None:
        await asyncio.sleep(0.005)
        raise LookupError("after a wait")

    with pytest.raises(KeyError, match="at once"):
        await runner.run(fails_at_once)
    with pytest.raises(LookupError, match="after a wait"):
        await runner.run(fails_after_a_wait)

    async def ok() -> str:
        return "still works"

    assert await runner.run(ok) == "still works"


async def test_inline_call_cancelled_before_it_starts_does_nothing() -> None:
    runner = InlineLoop()
    ran: list[int] = []

    async def work() -> None:
        ran.append(1)

    try:
        with trio.CancelScope() as scope:
            scope.cancel()
            await runner.run(work)
        assert scope.cancelled_caught and ran == []
        await runner.run(work)
        assert ran == [1]
    finally:
        runner.stop()


async def test_other_trio_tasks_run_between_inline_calls() -> None:
    runner = InlineLoop()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    async def nothing() -> None:
        return None

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.sleep(0)
            before = ticks
            for _ in range(50):
                await runner.run(nothing)
            assert ticks - before >= 40  # one turn of the other task per call, give or take
            nursery.cancel_scope.cancel()
    finally:
        runner.stop()


async def test_many_calls_at_once_each_get_their_own_result() -> None:
    """AsyncioThread hands calls and results across in batches: every caller of a burst gets its own result
    or error, including callers whose calls end in another order than they started, and one that gave up."""
    runner = AsyncioThread()
    try:
        async def call(i: int) -> int:
            await asyncio.sleep((i * 7 % 5) / 1000)  # finish out of order
            if i % 7 == 0:
                raise KeyError(i)
            return i * i

        got: dict[int, object] = {}

        async def caller(i: int) -> None:
            try:
                got[i] = await runner.run(call, i)
            except KeyError as exc:
                got[i] = exc.args[0] * -1

        async def gives_up() -> None:
            with trio.move_on_after(0.001):
                await runner.run(asyncio.sleep, 0.05, shield=False)
            got[-1] = "gave up"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(gives_up)
            for i in range(1, 200):
                nursery.start_soon(caller, i)
        assert got == {-1: "gave up", **{i: -i if i % 7 == 0 else i * i for i in range(1, 200)}}
        assert await runner.run(call, 3) == 9  # and the next call after the burst
    finally:
        runner.stop()
