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
import collections
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from functools import partial
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class AsyncioThread:
    """An asyncio loop running in its own daemon thread, callable from trio.

    Calls cross between the threads in batches: each side wakes the other (a byte on a socket, a syscall on
    either side) only when no wake-up is pending already, and the woken side takes every call or result that
    queued meanwhile. Under load the service's trio thread hands over many calls per turn of its loop, and
    asyncio finishes many per turn of its own (``run_coroutine_threadsafe`` and ``run_sync_soon`` woke the
    other side once per call and per result: bench/bench_postgres.py).
    """

    def __init__(self, name: str = "w3gate-db") -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        # (fn, args, the caller's context, the slot its result goes to)
        self._calls: collections.deque[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...], contextvars.Context,
                                             _Slot]] = collections.deque()
        self._calls_woken = False  # a drain of _calls is scheduled on the asyncio loop
        self._results: collections.deque[_Slot] = collections.deque()
        self._results_woken = False  # a drain of _results is scheduled in trio
        self._token: trio.lowlevel.TrioToken | None = None
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
        if self._token is not token:  # the first call, or a new trio run: results go to it from now on
            self._token = token
            self._results_woken = False
        slot = _Slot()
        self._calls.append((fn, args, contextvars.copy_context(), slot))
        if not self._calls_woken:
            self._calls_woken = True
            self._loop.call_soon_threadsafe(self._start_calls)
        with trio.CancelScope(shield=shield):
            await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.value  # type: ignore[no-any-return]

    def _start_calls(self) -> None:
        """In asyncio: a task for every call queued (the flag is cleared first, so none is left behind)."""
        self._calls_woken = False
        while self._calls:
            fn, args, context, slot = self._calls.popleft()
            self._loop.create_task(self._call(fn, args, slot), context=context)

    async def _call(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], slot: _Slot) -> None:
        try:
            slot.value = await fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
            slot.error = exc
        self._results.append(slot)
        if not self._results_woken:
            self._results_woken = True
            assert self._token is not None
            self._token.run_sync_soon(self._finish_calls)

    def _finish_calls(self) -> None:
        """In trio: wake every caller whose result came."""
        self._results_woken = False
        while self._results:
            self._results.popleft().done.set()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


class _Slot:
    """One call's way back: its result or error, and the trio event its caller waits on."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None


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
