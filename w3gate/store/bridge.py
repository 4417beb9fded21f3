"""Running Tortoise ORM and asyncpg (written for asyncio) from trio, in three ways.

:class:`TrioDrivenLoop`, the PostgreSQL store's: an asyncio event loop turned by a trio task in trio's own
thread. Its selector's epoll descriptor is one more file trio waits on; when it is readable (a reply from the
server), when a call comes, or when an asyncio timer is due, the task runs one turn of the loop. With the loop
in a thread of its own, the two threads passed the GIL back and forth several times per request: a ``GET /pins``
on PostgreSQL made 4.8 voluntary context switches, none now (``bench/bench_threads.py``; the figures are in
bench/RESULTS.md, "PostgreSQL in the service's thread").

:class:`AsyncioThread`, the leader lock's: one asyncio event loop in a dedicated thread. trio-asyncio was
measured too, and cost more than either (530 us of CPU per ``fetch`` against about 330 in a thread).

Both wait for a call with a shielded wait, so a cancelled trio task still lets its database work (and any
transaction in it) finish or roll back inside asyncio: no transaction is ever left open by a trio cancellation.

:class:`InlineLoop`, for the SQLite client of :mod:`w3gate.store.sqlite_inline`, whose statements run in
the calling thread: the ORM coroutine has nothing to wait for, so a private asyncio loop runs it to
completion right in the trio task, with no thread hop: two hops cost more than an indexed statement on a
local file, and under load the threads queued for the GIL behind the HTTP server (bench/bench_api.py).
Nothing can interrupt a call, so a transaction is always committed or rolled back before it returns.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import math
import selectors
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from functools import partial
from typing import Any, TypeVar

import trio

T = TypeVar("T")

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0  # seconds


class TrioDrivenLoop:
    """An asyncio loop whose turns a trio task takes, in trio's thread, when there is something to do.

    The task is a trio system task of the run that made the first call (a later run starts its own), so it
    outlives any caller's cancellation and ends with the run. A turn runs everything that is ready and polls
    the selector without waiting (:class:`_PollingSelector`); between turns the task waits, in trio, for the
    selector's descriptor, the next asyncio timer (on trio's clock) or a new call. asyncio's callbacks thus run
    in trio's thread: none of the store's block. This uses three private parts of ``asyncio.BaseEventLoop``
    (``_run_once``, ``_ready``, ``_scheduled``), stable since Python 3.4, and ``asyncio.events._set_running_loop``,
    which :class:`InlineLoop` uses too.
    """

    def __init__(self) -> None:
        self._selector = _PollingSelector()
        self._loop = asyncio.SelectorEventLoop(self._selector)
        self._token: trio.lowlevel.TrioToken | None = None
        self._waiting: trio.CancelScope | None = None  # the driver's wait between turns

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any, shield: bool = True) -> T:
        """Run ``fn(*args)`` on the asyncio loop and return its result to the calling trio task.

        The wait is shielded from trio cancellation: the asyncio side always runs to completion. Only a
        call that holds no transaction (a ping) may pass ``shield=False`` and be given up on; it still
        runs to its end in asyncio.
        """
        if self._loop.is_closed():
            raise RuntimeError("the store's asyncio loop is closed")
        token = trio.lowlevel.current_trio_token()
        if self._token is not token:  # the first call of this trio run: its driver
            self._token = token
            trio.lowlevel.spawn_system_task(self._drive, name="w3gate-db-loop")
        slot = _Slot()
        self._loop.create_task(_into(slot, fn, args), context=contextvars.copy_context())  # ready: the next turn
        if self._waiting is not None:
            self._waiting.cancel()
        return await slot.result(shield)  # type: ignore[no-any-return]

    async def _drive(self) -> None:
        loop, token, fd = self._loop, self._token, self._selector.fileno()
        while not loop.is_closed() and self._token is token:
            previous = asyncio.events._get_running_loop()
            asyncio.events._set_running_loop(loop)
            try:
                loop._run_once()  # type: ignore[attr-defined]
            except Exception:  # a callback's own errors go to the loop's handler: this is the loop itself
                log.exception("the store's asyncio loop failed a turn")
            finally:
                asyncio.events._set_running_loop(previous)
            if loop._ready:  # type: ignore[attr-defined]  # callbacks, and any call made since the turn began
                await trio.lowlevel.checkpoint()  # other trio tasks, then the next turn
                continue
            deadline = math.inf
            if loop._scheduled:  # type: ignore[attr-defined]
                due = loop._scheduled[0].when() - loop.time()  # type: ignore[attr-defined]
                deadline = trio.current_time() + max(0.0, due)
            with trio.CancelScope(deadline=deadline) as self._waiting:
                try:
                    await trio.lowlevel.wait_readable(fd)
                except trio.ClosedResourceError:  # stop() closed the selector meanwhile
                    return
            self._waiting = None

    def stop(self) -> None:
        """Close the loop. The store closes its connections first (``Database.close``); anything still
        running in asyncio then (a call given up on) is cancelled, and given ``STOP_TIMEOUT`` seconds to end."""
        if self._loop.is_closed():
            return
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        if pending:
            self._selector.blocking = True  # no trio task turns the loop now: it waits for itself
            self._loop.run_until_complete(asyncio.wait(pending, timeout=STOP_TIMEOUT))
        with contextlib.suppress(RuntimeError):  # outside the trio run whose driver waits on the descriptor
            if trio.lowlevel.current_trio_token() is self._token:
                trio.lowlevel.notify_closing(self._selector.fileno())
        self._loop.close()


class _PollingSelector(selectors.EpollSelector):
    """The selector of :class:`TrioDrivenLoop`'s loop, which never waits (trio does the waiting) unless
    ``blocking`` is set: the loop running itself to its end."""

    blocking = False

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        return super().select(timeout if self.blocking else 0)


async def _into(slot: _Slot, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
    """In asyncio: ``fn(*args)``, its result or error into ``slot``, its caller woken (we are in trio's thread)."""
    try:
        slot.value = await fn(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
        slot.error = exc
    slot.done.set()


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
        """As :meth:`TrioDrivenLoop.run`: shielded unless ``shield`` is False."""
        token = trio.lowlevel.current_trio_token()
        if self._token is not token:  # the first call, or a new trio run: results go to it from now on
            self._token = token
            self._results_woken = False
        slot = _Slot()
        self._calls.append((fn, args, contextvars.copy_context(), slot))
        if not self._calls_woken:
            self._calls_woken = True
            self._loop.call_soon_threadsafe(self._start_calls)
        return await slot.result(shield)  # type: ignore[no-any-return]

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

    async def result(self, shield: bool) -> Any:
        """Wait for the call (shielded from trio cancellation unless ``shield`` is False); its value, or its error
        raised."""
        with trio.CancelScope(shield=shield):
            await self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


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
