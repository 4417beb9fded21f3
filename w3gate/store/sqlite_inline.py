"""Tortoise's SQLite backend with the connection driven in the calling thread instead of aiosqlite's.

Why: aiosqlite runs every statement in a thread of its own, so each statement costs two cross-thread
wake-ups, and the row conversion that needs the GIL queues behind the HTTP server's thread. An indexed
statement on the local file takes tens of microseconds, less than one of those wake-ups, so running
it where the ORM runs is both faster and steadier under load. The one SQLite connection already
serialises every statement, so a long query delays the same work either way.

What should not run there is a disk flush. With ``synchronous=NORMAL`` a WAL commit writes but does
not fsync; a checkpoint does (twice), and so does the one commit that starts the log over after a
checkpoint (the log header). So this connection never checkpoints by itself (``wal_autocheckpoint=0``):
:func:`checkpoint` runs from a worker thread on a connection of its own (``Database.maintain``), which
leaves at most one small flush a second in the service's thread.

Use as the Tortoise ``engine`` ``w3gate.store.sqlite_inline``; every other part of Tortoise's SQLite
backend (SQL dialect, executor, transactions, locks) is used as it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from tortoise.backends.sqlite.client import SqliteClient


class _Cursor:
    """What Tortoise does with aiosqlite's cursor: close it."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """The subset of ``aiosqlite.Connection`` Tortoise uses, on a plain ``sqlite3`` connection.

    The methods are coroutines only to fit Tortoise's awaits; none of them suspends.
    """

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> _Cursor:
        return _Cursor(self._conn.execute(sql, parameters or ()))

    async def execute_fetchall(self, sql: str, parameters: Sequence[Any] | None = None) -> list[sqlite3.Row]:
        cursor = self._conn.execute(sql, parameters or ())
        try:
            return cursor.fetchall()
        finally:
            cursor.close()

    async def execute_insert(self, sql: str, parameters: Sequence[Any] | None = None) -> tuple[int] | None:
        cursor = self._conn.execute(sql, parameters or ())
        try:
            return (cursor.lastrowid,) if cursor.lastrowid is not None else None
        finally:
            cursor.close()

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, parameters).close()

    async def executescript(self, script: str) -> None:
        self._conn.executescript(script).close()

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self._conn.close()


class InlineSqliteClient(SqliteClient):
    """Tortoise's ``SqliteClient`` on an :class:`InlineConnection`."""

    async def create_connection(self, with_db: bool) -> None:
        if self._connection:
            return
        connection = InlineConnection(self.filename)
        connection._conn.row_factory = sqlite3.Row
        for pragma, value in self.pragmas.items():
            connection._conn.execute(f"PRAGMA {pragma}={value}").close()
        self._connection = connection  # type: ignore[assignment]
        await self._post_connect()


def checkpoint(path: str) -> tuple[int, int, int]:
    """Copy the write-ahead log into the database file, without blocking readers or writers.

    Runs in a worker thread; returns SQLite's (busy, pages in the log, pages checkpointed).
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        busy, log_pages, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, log_pages, done
    finally:
        conn.close()


def read_only_query(path: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one read-only statement on a connection of its own (in a worker thread: WAL readers do not
    block the store's connection, nor it them)."""
    conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None)  # any '?#%' in the path
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


client_class = InlineSqliteClient
