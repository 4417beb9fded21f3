"""The ordering leader's lock on a real PostgreSQL server (w3gate.store.leader_lock)."""

from __future__ import annotations

import pytest
import trio
from conftest import POSTGRES, database_url_for_test

from w3gate.store.db import asyncpg_params
from w3gate.store.leader_lock import PostgresLock

pytestmark = pytest.mark.skipif(not POSTGRES, reason="needs PostgreSQL")

KEY = 0x5733_6761_7465  # any 64-bit key


async def test_callers_asking_at_once_all_hear_that_the_lock_is_held() -> None:
    """The leader's own check and the submitter's before a batch can ask at the same moment: every caller
    hears the truth (held). They shared one connection, so all but one got asyncpg's InterfaceError (another
    operation is in progress), read as "not held", and the leader stepped down (seen under CI's load)."""
    params = asyncpg_params(database_url_for_test())
    lock, other = PostgresLock(params, KEY, 6.0), PostgresLock(params, KEY, 6.0)
    try:
        assert await lock.try_acquire(5)
        answers: list[bool] = []

        async def ask() -> None:
            answers.append(await lock.holds(5))

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(ask)
        assert answers == [True] * 20
        assert not await other.try_acquire(5)  # and it is really held
        await lock.close()
        assert await other.try_acquire(5)  # freed as its session ended
    finally:
        for each in (lock, other):
            await each.close()
            each.stop()
