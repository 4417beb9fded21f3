"""Opening, upgrading and closing the database; the one door through which trio code reaches it."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio
from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url

from w3gate.redact import redact_url
from w3gate.store import migrations, sqlite_inline
from w3gate.store.bridge import AsyncioThread, InlineLoop

__all__ = ["Database", "configure_sql_log", "redact_url"]

log = logging.getLogger(__name__)
T = TypeVar("T")
CHECKPOINT_INTERVAL = 1.0  # seconds between SQLite WAL checkpoints

MODELS = "w3gate.store.models"


def configure_sql_log(with_parameters: bool) -> None:
    """Keep user data out of debug logs: Tortoise logs every statement with its parameters (owners, pin
    names, meta) at debug, and its start-up line the connection settings, password included. Its
    statement log is on only when the operator asks (``log_sql``); the start-up line never."""
    logging.getLogger("tortoise").setLevel(logging.INFO)
    logging.getLogger("tortoise.db_client").setLevel(logging.DEBUG if with_parameters else logging.INFO)


def _tortoise_config(url: str, name: str) -> dict[str, Any]:
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        connection: dict[str, Any] | str = {
            "engine": "w3gate.store.sqlite_inline",
            "credentials": {
                "file_path": path,
                "journal_mode": "WAL",
                "journal_size_limit": 16384,
                "foreign_keys": "ON",
                "synchronous": "NORMAL",
                "wal_autocheckpoint": 0,  # checkpoints run in a worker thread: Database.maintain
                # the spec's "partial" name match is case-sensitive; "ipartial" uses UPPER() on both sides
                "case_sensitive_like": "ON",
            },
        }
    else:
        connection = expand_db_url(url)
        connection["credentials"]["reset"] = _reset_if_in_transaction
    return {
        "connections": {name: connection},
        "apps": {"w3gate": {"models": [MODELS], "default_connection": name}},
        "use_tz": True,
        "timezone": "UTC",
    }


async def _reset_if_in_transaction(conn: Any) -> None:
    """How a pooled PostgreSQL connection is reset when the ORM gives it back.

    asyncpg's default sends a reset query (unlock advisory locks, close cursors, unlisten, RESET ALL)
    on every release, a second round trip for every statement the ORM runs outside a transaction.
    w3gate uses none of those session features, so only what can really be left behind is undone:
    an open transaction (by the full reset, ROLLBACK included).
    """
    if conn.is_in_transaction():
        await conn.reset()


class Database:
    """The store, reached from trio as ``await db.run(fn, *args)``.

    SQLite runs in the calling trio task (its statements are local and short); PostgreSQL runs on an
    asyncio loop in its own thread (asyncpg waits on the network). See :mod:`w3gate.store.bridge`.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._runner: AsyncioThread | InlineLoop | None = None

    @property
    def connection_name(self) -> str:
        """Tortoise's name for the connection: the dialect's name, not one name for both.

        Tortoise caches each model's INSERT statement by connection name for the life of the process,
        so a process that opened SQLite and then PostgreSQL under one name (the test suite does) sent
        SQLite's statement to PostgreSQL.
        """
        return self.dialect

    @property
    def dialect(self) -> str:
        return "sqlite" if self.url.startswith("sqlite") else "postgres"

    @property
    def _sqlite_path(self) -> str:
        return self.url.removeprefix("sqlite://")

    async def open(self, *, upgrade_to: int = migrations.LATEST) -> tuple[int, int]:
        """Connect and upgrade the schema; returns the (before, after) schema versions."""
        if self.dialect == "sqlite":
            Path(self._sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        self._runner = InlineLoop() if self.dialect == "sqlite" else AsyncioThread()
        try:
            return await self.run(self._open, upgrade_to)
        except BaseException:
            await self.close()
            raise

    async def _open(self, upgrade_to: int) -> tuple[int, int]:
        await Tortoise.init(config=_tortoise_config(self.url, self.connection_name), _enable_global_fallback=True)
        before, after = await migrations.upgrade(connections.get(self.connection_name), upgrade_to)
        if before != after:
            log.info("database %s upgraded from schema %d to %d", redact_url(self.url), before, after)
        return before, after

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._runner is None:
            raise RuntimeError("database is not open")
        return await self._runner.run(fn, *args)

    async def maintain(self, interval: float = CHECKPOINT_INTERVAL) -> None:
        """Background upkeep, run as a task of the service's nursery until it is cancelled.

        On SQLite: a WAL checkpoint every ``interval`` seconds in a worker thread, on a connection of
        its own, so that the store's connection (in the service's thread) never waits on a disk flush.
        Without it the log would only grow. Nothing to do on PostgreSQL.
        """
        if self.dialect != "sqlite":
            return
        path = self._sqlite_path
        while True:
            await trio.sleep(interval)
            try:
                await trio.to_thread.run_sync(sqlite_inline.checkpoint, path)
            except sqlite3.Error as exc:  # a full disk, say: the log keeps the data, try again later
                log.warning("SQLite checkpoint of %s failed: %s", path, exc)

    async def read_aside(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a long read-only ``sql`` (a full-table aggregate) without holding up the API.

        On SQLite the store's connection runs in the service's thread, so a scan there stalls every
        request (counting a million orders took 220 ms): it runs in a worker thread on a read-only
        connection of its own. On PostgreSQL it runs like any other statement.
        """
        if self.dialect == "sqlite":
            return await trio.to_thread.run_sync(sqlite_inline.read_only_query, self._sqlite_path, sql)

        async def _query() -> list[tuple[Any, ...]]:
            _count, rows = await connections.get(self.connection_name).execute_query(sql)
            return [tuple(row.values()) for row in rows]

        return await self.run(_query)

    async def ping(self, timeout: float | None = None) -> bool:
        """``SELECT 1``; with ``timeout``, raises ``TimeoutError`` when no answer comes in time.

        The deadline is kept on both sides: asyncio cancels the query (on PostgreSQL, a server that
        stopped answering), and the trio side waits unshielded (a ping holds no transaction), so a hung
        connection cannot hold the caller either.
        """
        async def _ping() -> bool:
            query = connections.get(self.connection_name).execute_query("SELECT 1")
            await (query if timeout is None else asyncio.wait_for(query, timeout))
            return True

        if timeout is None or not isinstance(self._runner, AsyncioThread):
            return await self.run(_ping)  # SQLite: a local statement in this thread, nothing to wait on
        with trio.fail_after(timeout + 1):
            return await self._runner.run(_ping, shield=False)

    async def close(self) -> None:
        if self._runner is None:
            return
        try:
            await self._runner.run(Tortoise.close_connections)
        finally:
            self._runner.stop()
            self._runner = None
