"""Group commit: writes that arrive together share one transaction and one commit.

On SQLite every write runs in the service's thread (:mod:`w3gate.store.sqlite_inline`), one after another, and a
commit is the dearest part of a new pin (it writes the log's pages: a third of the store's time for a POST). Under
load, many requests reach their write in the same turn of the event loop; the first one to arrive waits that turn
out, then writes all that have come meanwhile in one transaction, each in a savepoint of its own, so that one
write's refusal (a quota) or failure undoes only its own changes. Nobody is answered before the commit that holds
its write, so what a client is told was stored is stored, as before; if the commit fails, every write of the
batch gets that error.

The batch is written shielded from cancellation: a client that leaves does not take the other writes with it (its
own write may still be stored, as when it leaves just after the commit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import trio

A = TypeVar("A")
R = TypeVar("R")


class _Slot(Generic[R]):
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[A, R]):
    """``await write(args)`` runs ``write_batch([args, ...])`` for the writes that arrived together; the batch
    function returns, for each, its result or the exception it raised."""

    def __init__(self, write_batch: Callable[[Sequence[A]], Awaitable[Sequence[R | BaseException]]]) -> None:
        self._write_batch = write_batch
        self._pending: list[tuple[A, _Slot[R]]] = []
        self._writing = False
        self.batches = 0  # batches written, and the writes in them (for tests and benchmarks)
        self.writes = 0

    async def write(self, args: A) -> R:
        slot: _Slot[R] = _Slot()
        self._pending.append((args, slot))
        if not self._writing:
            self._writing = True
            try:
                with trio.CancelScope(shield=True):
                    await trio.lowlevel.checkpoint()  # the other requests ready to write reach this point
                    while self._pending:
                        batch, self._pending = self._pending, []
                        await self._write(batch)
            finally:
                self._writing = False
        await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.value  # type: ignore[return-value]

    async def _write(self, batch: list[tuple[A, _Slot[R]]]) -> None:
        self.batches += 1
        self.writes += len(batch)
        try:
            results: Sequence[Any] = await self._write_batch([args for args, _ in batch])
        except Exception as exc:  # the transaction as a whole failed: nothing of it is stored
            results = [exc] * len(batch)
        for (_, slot), result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                slot.error = result
            else:
                slot.value = result
            slot.done.set()
