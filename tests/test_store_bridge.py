"""The ways trio reaches the asyncio ORM (w3gate.store.bridge), checked on real asyncio primitives.

InlineLoop steps a call by hand and hands it to its loop only when it waits: these tests make calls
that do and do not wait, and check what the ORM relies on across that hand-over (context variables,
locks, exceptions) as well as trio's side (cancellation before a call, other tasks running between).
TrioDrivenLoop turns its loop from a trio task: real sockets, another thread's wake-up, timers, a caller
cancelled mid-call and a second trio run must all keep it going.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest
import trio

from w3gate.store.bridge import AsyncioThread, InlineLoop, TrioDrivenLoop

CURRENT = contextvars.ContextVar("CURRENT", default="none")


RUNNERS = {"inline": InlineLoop, "thread": AsyncioThread, "trio-driven": TrioDrivenLoop}


@pytest.fixture(params=list(RUNNERS))
async def runner(request):
    runner = RUNNERS[request.param]()
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


@pytest.mark.parametrize("make", [AsyncioThread, TrioDrivenLoop])
async def test_many_calls_at_once_each_get_their_own_result(make) -> None:
    """Calls and results go across in batches: every caller of a burst gets its own result or error,
    including callers whose calls end in another order than they started, and one that gave up."""
    runner = make()
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


async def test_trio_driven_loop_serves_real_sockets_while_trio_runs_on() -> None:
    """An asyncio server and client on loopback exchange 200 messages through the loop the trio task turns,
    while a trio task ticks: the loop wakes on its sockets' readiness, and never holds trio up."""
    runner = TrioDrivenLoop()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.001)

    async def echo_exchange() -> list[bytes]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                writer.write(line.upper())
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        got = []
        for i in range(200):
            writer.write(b"ping %d\n" % i)
            got.append(await reader.readline())
        writer.close()
        server.close()
        await server.wait_closed()
        return got

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            got = await runner.run(echo_exchange)
            before = ticks
            await trio.sleep(0.05)  # trio keeps running after the calls
            assert ticks > before
            nursery.cancel_scope.cancel()
        assert got == [b"PING %d\n" % i for i in range(200)]
    finally:
        runner.stop()


async def test_trio_driven_loop_wakes_for_another_threads_callback_and_its_timers() -> None:
    """What another thread hands the loop (``call_soon_threadsafe``, as an executor's result comes back)
    and an asyncio timer each wake the trio task that turns it, with no other call to prompt it."""
    runner = TrioDrivenLoop()

    async def from_a_thread() -> str:
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def later() -> None:
            time.sleep(0.05)
            loop.call_soon_threadsafe(future.set_result, "from the thread")

        threading.Thread(target=later).start()
        return await future

    async def after_a_timer() -> float:
        start = time.monotonic()
        await asyncio.sleep(0.05)
        return time.monotonic() - start

    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    try:
        assert await runner.run(from_a_thread) == "from the thread"
        assert 0.05 <= await runner.run(after_a_timer) < 1
        assert await runner.run(running_loop) is runner.loop
    finally:
        runner.stop()


async def test_trio_driven_loop_finishes_a_call_whose_caller_was_cancelled() -> None:
    """A cancelled caller waits for its call (shielded): the asyncio side ends its work (a transaction's
    ROLLBACK or COMMIT) before the caller goes on; with ``shield=False`` the caller leaves, and the call still
    runs to its end."""
    runner = TrioDrivenLoop()
    ended: list[str] = []

    async def work(name: str) -> str:
        await asyncio.sleep(0.05)
        ended.append(name)
        return name

    try:
        with trio.move_on_after(0.01) as scope:
            assert await runner.run(work, "shielded") == "shielded"
        assert ended == ["shielded"] and scope.cancel_called
        with trio.move_on_after(0.01):
            await runner.run(work, "given up", shield=False)
        assert ended == ["shielded"]
        await trio.sleep(0.1)
        assert ended == ["shielded", "given up"]
    finally:
        runner.stop()


def test_trio_driven_loop_outlives_a_trio_run_and_stops_cleanly() -> None:
    """The same loop serves a second trio run (the store opened in one, used in the next, as the tests do);
    stop() cancels what is still running and closes the loop, after which a call is refused."""
    runner = TrioDrivenLoop()

    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    async def forever() -> None:
        await asyncio.Event().wait()

    async def first() -> int:
        return await runner.run(add, 1, 2)

    async def second() -> int:
        with trio.move_on_after(0.01):
            await runner.run(forever, shield=False)
        return await runner.run(add, 3, 4)

    try:
        assert trio.run(first) == 3
        assert trio.run(second) == 7
        pending = asyncio.all_tasks(runner.loop)
        assert len(pending) == 1  # forever(), given up on by its caller
        runner.stop()
        assert runner.loop.is_closed() and all(task.done() for task in pending)
        with pytest.raises(RuntimeError, match="closed"):
            trio.run(first)
    finally:
        runner.stop()
