"""Running Tortoise ORM (written for asyncio) from trio, in one of two ways chosen by the database.

:class:`AsyncioThread`, for a driver that does real network I/O (asyncpg): one asyncio event loop in a
dedicated thread. Why a thread and not trio-asyncio: it measured faster, and it keeps the two loops
fully apart. Each call hands a coroutine to the loop and waits for it with a shielded wait, so a
cancelled trio task still lets its database work (and any transaction in it) finish or roll back inside
asyncio: no transaction is ever left open by a trio cancellation.

:class:`InlineLoop`, for the SQLite client of :mod:`w3gate.store.sqlite_inline`, whose statements run in
the calling thread: the ORM coroutine has nothing to wait for, so a private asyncio loop runs it to
completion right in the trio task, with no thread hop: two hops cost more than an indexed statement on a
local file, and under load the threads queued for the GIL behind the HTTP server (bench/bench_api.py).
Nothing can interrupt a call, so a transaction is always committed or rolled back before it returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from functools import partial
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class AsyncioThread:
    """An asyncio loop running in its own daemon thread, callable from trio."""

    def __init__(self, name: str = "w3gate-db") -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()
        # drain anything still scheduled, then close
        pending = asyncio.all_tasks(self._loop)
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any, shield: bool = True) -> T:
        """Run ``fn(*args)`` on the asyncio loop and return its result to the calling trio task.

        The wait is shielded from trio cancellation: the asyncio side always runs to completion. Only a
        call that holds no transaction (a ping) may pass ``shield=False`` and be given up on; it still
        runs to its end in asyncio.
        """
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        future = asyncio.run_coroutine_threadsafe(_call(fn, args), self._loop)
        future.add_done_callback(lambda _f: token.run_sync_soon(done.set))
        with trio.CancelScope(shield=shield):
            await done.wait()
        return future.result()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


class InlineLoop:
    """An asyncio loop of its own, turned in the calling trio task only while one call runs.

    For a store whose statements run in the calling thread. A call is first stepped by hand with this
    loop set as the running loop: a store call that never waits (every one the service makes) ends
    in that one step, at the cost of a function call rather than a turn of the loop (which measured
    about 100 us a request under load). A call that does wait (a contended lock, ``gather`` when
    connections close) is handed, where it stopped, to the loop, which runs it to the end. Either
    way nothing else interleaves, and a trio cancellation can only come before a call starts, never
    in the middle of a transaction.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        result = self._complete(_call(fn, args))
        await trio.lowlevel.cancel_shielded_checkpoint()  # give other trio tasks their turn
        return result

    def _complete(self, coro: Coroutine[Any, Any, T]) -> T:
        # one context for the whole call, so that context variables the ORM sets in the first step
        # (its current transaction) are the same ones it resets after a wait
        context = contextvars.copy_context()
        previous = asyncio._get_running_loop()
        asyncio._set_running_loop(self._loop)  # futures and locks made in the first step belong to it
        try:
            waiting_for = context.run(coro.send, None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            asyncio._set_running_loop(previous)
        task = self._loop.create_task(_resume(coro, waiting_for), context=context)
        return self._loop.run_until_complete(task)

    def stop(self) -> None:
        self._loop.close()


async def _resume(coro: Coroutine[Any, Any, T], waiting_for: Any) -> T:
    """Go on with ``coro``, which was stepped by hand and yielded ``waiting_for``, under an asyncio task."""
    return await _Resumed(coro, waiting_for)


class _Resumed:
    """An awaitable that first re-yields what ``coro`` already yielded, then passes everything through."""

    def __init__(self, coro: Coroutine[Any, Any, T], waiting_for: Any) -> None:
        self._coro = coro
        self._waiting_for = waiting_for

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self._coro, self._waiting_for
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # noqa: BLE001 - thrown in by the task: hand it on
                step = partial(coro.throw, exc)
            else:
                step = partial(coro.send, sent)
            try:
                yielded = step()
            except StopIteration as done:
                return done.value


async def _call(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    return await fn(*args)
