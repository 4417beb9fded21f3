"""The ordering leader's lock: the database part of :mod:`w3gate.services.leader`, behind the store.

On PostgreSQL, a session advisory lock on a connection of its own (asyncpg, on its own asyncio thread), kept
open between a standby's tries: the server ends the session, and so frees the lock, when its holder dies or
stops talking (the session settings below). On SQLite one instance holds the database by construction
(:mod:`w3gate.store.single_instance`), so its lock is always held.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from w3gate.store.bridge import AsyncioThread

log = logging.getLogger(__name__)


class AlwaysHeld:
    """SQLite's lock: a single instance, always the leader."""

    async def try_acquire(self, deadline: float) -> bool:
        return True

    async def holds(self, deadline: float) -> bool:
        return True

    async def close(self) -> None:
        return None

    def stop(self) -> None:
        return None


class PostgresLock:
    """A session advisory lock keyed ``key`` on a PostgreSQL connection of its own (``params``: asyncpg's
    connection arguments for the store's server), kept open between a standby's tries."""

    # what makes the server end the session (and free the lock) of a leader that stopped talking, in ms or s
    SESSION = {"idle_session_timeout": 1000, "tcp_user_timeout": 1000, "tcp_keepalives_idle": 1 / 3,
               "tcp_keepalives_interval": 1 / 9}

    def __init__(self, params: Mapping[str, Any], key: int, timeout: float) -> None:
        self.params, self.key, self.timeout = params, key, timeout
        self.runner = AsyncioThread("w3gate-leader")
        self.conn: Any = None
        # asyncpg runs one operation at a time on a connection, and the leader's own check and the submitter's
        # before a batch (w3gate.ordering.leader) can ask at once: the second got InterfaceError ("another
        # operation is in progress"), and a leader whose lock was fine stepped down
        self._one_at_a_time = asyncio.Lock()

    async def _call(self, fn: Callable[[], Awaitable[Any]], deadline: float) -> Any:
        """Run ``fn`` on the lock's loop; False on any error or past ``deadline`` seconds (both sides), and then
        the connection is dropped (a hung connection cannot be trusted with the lock)."""

        async def in_turn() -> Any:
            async with self._one_at_a_time:
                return await fn()

        async def bounded() -> Any:
            try:
                return await asyncio.wait_for(in_turn(), deadline)
            except BaseException:
                if self.conn is not None:
                    self.conn.terminate()
                    self.conn = None
                raise

        with trio.move_on_after(deadline + 1):
            try:
                return await self.runner.run(bounded, shield=False)
            except Exception as exc:  # noqa: BLE001 - any failure of the lock connection means: not held
                log.warning("ordering lock: %s: %s", type(exc).__name__, str(exc)[:200])
                return False
        return False

    async def _connect(self) -> Any:
        import asyncpg  # type: ignore[import-untyped]

        p = self.params
        conn = await asyncpg.connect(
            host=p.get("host"), port=p.get("port"), user=p.get("user"), password=p.get("password"),
            database=p.get("database"), server_settings={"application_name": "w3gate ordering lock"})
        for name, per_second in self.SESSION.items():
            value = str(max(1, int(self.timeout * per_second)))
            try:
                await conn.execute(f"SET {name} = {value}")
            except asyncpg.PostgresError as exc:  # an older server: the other settings still bound a dead leader
                log.warning("ordering lock: PostgreSQL cannot set %s (%s)", name, exc)
        return conn

    async def try_acquire(self, deadline: float) -> bool:
        async def acquire() -> bool:
            if self.conn is None or self.conn.is_closed():
                self.conn = await self._connect()
            return bool(await self.conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key))

        return bool(await self._call(acquire, deadline))

    async def holds(self, deadline: float) -> bool:
        """Whether this session still holds the lock (asked of the server, on the lock's connection)."""
        async def ask() -> bool:
            return bool(await self.conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                " AND pid = pg_backend_pid() AND classid::bigint = $1 AND objid::bigint = $2)",
                (self.key & 0xFFFF_FFFF_FFFF_FFFF) >> 32, self.key & 0xFFFF_FFFF))

        return self.conn is not None and bool(await self._call(ask, deadline))

    async def close(self) -> None:
        """End the session (no round trip): the server frees the lock."""
        async def close() -> bool:
            if self.conn is not None:
                self.conn.terminate()
                self.conn = None
            return True

        await self._call(close, 1)

    def stop(self) -> None:
        """Stop the lock's thread (after :meth:`close`)."""
        self.runner.stop()
