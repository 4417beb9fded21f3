"""Admission to uncached signature checks, fair between client addresses.

Checks run in a few worker threads. Given out first come, first served, one client sending a stream of
throwaway signatures (no key needed to make them) puts every other user's first request behind its whole
backlog. Here a free worker goes to the waiting clients in turn (round-robin by client address), so a new
user waits for at most one check per other client that has checks waiting, however many each has queued;
and one address may have at most ``per_client`` checks waiting: more are refused at once (429), before any
decoding or crypto. Addresses are grouped as a host holds them: IPv4 by address, IPv6 by its /64.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from w3gate.clientaddr import client_key
from w3gate.errors import ApiError

__all__ = ["FairGate", "client_key", "too_many_checks"]


def too_many_checks(limit: int) -> ApiError:
    return ApiError(429, "TOO_MANY_REQUESTS",
                    f"more than {limit} signature checks are already waiting from this address; retry later")


class FairGate:
    """At most ``slots`` checks at a time; waiting checks are admitted round-robin by client."""

    def __init__(self, slots: int, per_client: int) -> None:
        self.slots = slots
        self.per_client = per_client
        self._free = slots
        self._waiting: dict[str, deque[trio.Event]] = {}  # insertion order = the rotation

    @asynccontextmanager
    async def admitted(self, client: str) -> AsyncIterator[None]:
        """Hold one slot for ``client``; raises :func:`too_many_checks` when its queue is full."""
        await self._acquire(client)
        try:
            yield
        finally:
            self._release()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    async def _acquire(self, client: str) -> None:
        if self._free and not self._waiting:
            self._free -= 1
            await trio.lowlevel.checkpoint()
            return
        queue = self._waiting.setdefault(client, deque())
        if len(queue) >= self.per_client:
            raise too_many_checks(self.per_client)
        turn = trio.Event()
        queue.append(turn)
        try:
            await turn.wait()
        except BaseException:
            if turn.is_set():  # handed a slot just as it was cancelled: pass it on
                self._release()
            else:
                queue.remove(turn)
                if not queue and self._waiting.get(client) is queue:
                    del self._waiting[client]
            raise

    def _release(self) -> None:
        """Give the freed slot to the next client in the rotation (who then goes to the back), or free it."""
        if not self._waiting:
            self._free += 1
            return
        client = next(iter(self._waiting))
        queue = self._waiting.pop(client)
        turn = queue.popleft()
        if queue:
            self._waiting[client] = queue
        turn.set()
