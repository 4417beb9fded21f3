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
leaves at most one small flush a second in the service's thread. A passive checkpoint alone never lets the
log start over while writes go on, so ``maintain`` also runs a TRUNCATE checkpoint once the log is large,
with the store's calls held back in trio meanwhile (never by a lock wait in this thread).

Reads that may scan (filtered lists, counts) run in a worker thread on a read-only connection of their
own (:func:`open_read_only`), which :meth:`sqlite3.Connection.interrupt` can stop from the trio thread.

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


def checkpoint(path: str, mode: str = "PASSIVE", busy_ms: int = 0) -> tuple[int, int, int]:
    """Copy the write-ahead log into the database file, from a worker thread.

    PASSIVE blocks no reader or writer. TRUNCATE also waits (up to ``busy_ms``) for readers to leave
    the log, then empties it, so that it starts over from zero bytes; it must run while the store's
    connection is idle, or that connection would wait on the lock in the service's thread.
    Returns SQLite's (busy, pages in the log, pages checkpointed).
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=busy_ms / 1000)
    try:
        busy, log_pages, done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return busy, log_pages, done
    finally:
        conn.close()


def open_read_only(path: str) -> sqlite3.Connection:
    """A read-only connection, to be used in a worker thread and interrupted from another one.

    WAL readers neither block the store's connection nor wait for it.
    """
    uri = f"file:{quote(path)}?mode=ro"  # any '?#%' in the path
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA case_sensitive_like=ON").close()  # as on the store's connection: "partial" is case-sensitive
    return conn


def fetch_all(conn: sqlite3.Connection, sql: str, args: Sequence[Any] = (), by_name: bool = False) -> list[Any]:
    """Rows of one statement (``sqlite3.Row`` if ``by_name``, else tuples); closes ``conn``."""
    try:
        if by_name:
            conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


client_class = InlineSqliteClient
