"""The store's two implementations (:class:`SqliteDatabase`, :class:`PostgresDatabase`, picked by
``Database(url)``): opening, upgrading and closing the database, and the one door through which trio code
reaches it. Their interface is :class:`w3gate.store.interface.Store`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio
from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url

from w3gate.domain.pins import NewPin, PinRecord
from w3gate.hookspecs import Quota
from w3gate.redact import redact_url
from w3gate.store import migrations, pins, postgres_direct, private_files, sqlite_inline
from w3gate.store.bridge import InlineLoop, TrioDrivenLoop
from w3gate.store.calls import StoreCalls
from w3gate.store.group_commit import GroupCommit
from w3gate.store.interface import LeaderLock
from w3gate.store.leader_lock import AlwaysHeld, PostgresLock
from w3gate.store.rawsql import Handle
from w3gate.store.users import AddressQuota

__all__ = ["Database", "PostgresDatabase", "SqliteDatabase", "StatementTimeout", "configure_sql_log"]

log = logging.getLogger(__name__)
T = TypeVar("T")
CHECKPOINT_INTERVAL = 1.0  # seconds between SQLite WAL checkpoints
# a log larger than this after a passive checkpoint is emptied (TRUNCATE) with the store's calls held back
WAL_TRUNCATE_BYTES = 64 * 1024 * 1024
WAL_CHECK_INTERVAL = 0.1  # seconds between looks at the log's size
INTERRUPT_REPEAT = 0.005  # seconds between interrupts of a statement past its timeout
ASIDE_THREADS = 1  # reads aside at a time: the other core stays with the service's thread
TRUNCATE_BUSY_MS = 200  # how long that checkpoint waits for a reader outside w3gate (sqlite3 shell) to leave

MODELS = "w3gate.store.models"


def configure_sql_log(with_parameters: bool) -> None:
    """Keep user data out of debug logs: Tortoise logs every statement with its parameters (owners, pin
    names, meta) at debug, and its start-up line the connection settings, password included. Its
    statement log is on only when the operator asks (``log_sql``); the start-up line never. Never below
    the root logger's level: ``w3gate users`` logs warnings only, Tortoise's INFO lines included."""
    floor = logging.getLogger().level
    logging.getLogger("tortoise").setLevel(max(logging.INFO, floor))
    logging.getLogger("tortoise.db_client").setLevel(max(logging.DEBUG if with_parameters else logging.INFO, floor))


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
                # a savepoint's undo log (each new pin of a group commit has one: store/group_commit.py) in
                # memory: as a temporary file it made a pin's insert cost about 190 us instead of 50
                "temp_store": "MEMORY",
                # 64 MiB of pages (SQLite's default is 2 MiB): the random keys of the pins' and orders' indexes
                # (request id, content key) made each insert read pages back from the file
                "cache_size": -65536,
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


def asyncpg_params(url: str) -> dict[str, Any]:
    """asyncpg's pool arguments for a PostgreSQL ``url``, as the ORM's pool takes them (the same server,
    credentials, TLS, sizes, session settings and reset hook): for the pools and connections w3gate opens
    beside the ORM's (:mod:`w3gate.store.postgres_direct`, :mod:`w3gate.store.leader_lock`)."""
    extra = dict(_tortoise_config(url, "postgres")["connections"]["postgres"]["credentials"])
    params: dict[str, Any] = {name: extra.pop(name, None) for name in ("host", "user", "password", "database")}
    params["port"] = int(extra.pop("port", 5432))
    settings = dict(extra.pop("server_settings", None) or {})
    schema, application_name = extra.pop("schema", None), extra.pop("application_name", None)
    if schema:
        settings["search_path"] = schema
    if application_name:
        settings["application_name"] = application_name
    params["min_size"] = int(extra.pop("minsize", 1))
    params["max_size"] = int(extra.pop("maxsize", 5))
    for name in ("connection_name", "fetch_inserted", "loop", "connection_class"):
        extra.pop(name, None)
    return {**params, "server_settings": settings, **extra}


async def _reset_if_in_transaction(conn: Any) -> None:
    """How a pooled PostgreSQL connection is reset when the ORM gives it back.

    asyncpg's default sends a reset query (unlock advisory locks, close cursors, unlisten, RESET ALL)
    on every release, a second round trip for every statement the ORM runs outside a transaction.
    w3gate uses none of those session features, so only what can really be left behind is undone:
    an open transaction (by the full reset, ROLLBACK included).
    """
    if conn.is_in_transaction():
        await conn.reset()


class StatementTimeout(Exception):
    """A bounded statement ran past ``Database.statement_timeout`` and was stopped."""


class Database(StoreCalls):
    """The store, reached from trio as ``await db.run(fn, *args)`` (``fn(handle, *args)``, a store function
    given the store's :class:`~w3gate.store.rawsql.Handle`) or one of the named operations of
    :class:`w3gate.store.interface.Store`.

    ``Database(url)`` makes the implementation for the URL's database. SQLite runs in the calling trio task
    (its statements are local and short); PostgreSQL runs on an asyncio loop that a trio task turns whenever
    the server answers (asyncpg waits on the network). See :mod:`w3gate.store.bridge`. ``statement_timeout``
    (seconds, None: no limit) bounds the statements that may scan: see :meth:`read_aside` and
    :func:`w3gate.store.pins.list_pins_bounded`.
    """

    def __new__(cls, url: str, statement_timeout: float | None = None) -> Database:
        if cls is Database:
            cls = SqliteDatabase if url.startswith("sqlite") else PostgresDatabase
        return super().__new__(cls)

    def __init__(self, url: str, statement_timeout: float | None = None) -> None:
        self.url = url
        self.statement_timeout = statement_timeout
        self._runner: TrioDrivenLoop | InlineLoop | None = None
        self._handle: Handle | None = None
        self._held: trio.Event | None = None  # set while maintain empties the SQLite log

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

    def _new_runner(self) -> TrioDrivenLoop | InlineLoop:
        raise NotImplementedError

    async def open(self, *, upgrade_to: int | None = None) -> tuple[int, int]:
        """Connect and upgrade the schema; returns the (before, after) schema versions."""
        self._runner = self._new_runner()
        try:
            return await self._runner.run(self._open, upgrade_to)
        except BaseException:
            await self.close()
            raise

    async def _open(self, upgrade_to: int | None) -> tuple[int, int]:
        await Tortoise.init(config=_tortoise_config(self.url, self.connection_name), _enable_global_fallback=True)
        client = connections.get(self.connection_name)  # taken once here, and handed to the store's functions
        before, after = await migrations.upgrade(client, upgrade_to)
        if before > len(migrations.MIGRATIONS):
            log.warning("database %s is at schema %d, newer than this release's %d but compatible with it: "
                        "running on it unchanged (a rolling upgrade in progress?)",
                        redact_url(self.url), before, len(migrations.MIGRATIONS))
        elif before != after:
            log.info("database %s upgraded from schema %d to %d", redact_url(self.url), before, after)
        self._handle = Handle(client, self.dialect, await self._open_pool())
        return before, after

    async def _open_pool(self) -> Any | None:
        return None

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(handle, *args)`` on the ORM's loop, ``handle`` being this store's connection handle."""
        while self._held is not None:  # only while maintain empties the SQLite log
            await self._held.wait()
        if self._runner is None or self._handle is None:
            raise RuntimeError("database is not open")
        return await self._runner.run(fn, self._handle, *args)

    async def maintain(self) -> None:
        """Background upkeep, run as a task of the service's nursery until it is cancelled."""

    async def ping(self, timeout: float | None = None) -> bool:
        """``SELECT 1``; with ``timeout``, raises ``TimeoutError`` when no answer comes in time."""
        async def _ping(h: Handle) -> bool:
            query = h.client.execute_query("SELECT 1")
            await (query if timeout is None else asyncio.wait_for(query, timeout))
            return True

        return await self.run(_ping)

    async def read_aside(self, sql: str, args: Sequence[Any] = (), *, by_name: bool = False,
                         timeout: float | None = None) -> list[Any]:
        raise NotImplementedError

    def leader_lock(self, key: int, timeout: float) -> LeaderLock:
        """The ordering leader's lock for ``key`` (:mod:`w3gate.store.leader_lock`)."""
        raise NotImplementedError

    async def close(self) -> None:
        if self._runner is None:
            return
        try:
            await self._runner.run(self._close_connections)
        finally:
            self._runner.stop()
            self._runner = None
            self._handle = None

    async def _close_connections(self) -> None:
        await Tortoise.close_connections()


class SqliteDatabase(Database):
    """The store on a SQLite file, in the service's thread (:class:`~w3gate.store.bridge.InlineLoop`): one
    instance by construction, so the leader's lock is always held."""

    def __init__(self, url: str, statement_timeout: float | None = None) -> None:
        super().__init__(url, statement_timeout)
        self.wal_truncate_bytes = WAL_TRUNCATE_BYTES
        self._aside = trio.CapacityLimiter(ASIDE_THREADS)
        # new pins that arrive together share one commit (store/group_commit.py)
        self.pin_writes: GroupCommit[pins.PinWrite, tuple[PinRecord, int]] = GroupCommit(
            partial(self.run, pins.create_pins))

    async def create_pin(self, owner: str, pin: NewPin, created_ms: int, quota: Quota = pins.UNBOUNDED,
                         size: int = 0, address: AddressQuota | None = None) -> tuple[PinRecord, int]:
        return await self.pin_writes.write(pins.PinWrite(owner, pin, created_ms, quota, size, address))

    @property
    def _sqlite_path(self) -> str:
        return self.url.removeprefix("sqlite://")

    def _new_runner(self) -> InlineLoop:
        if self._sqlite_path != ":memory:":
            private_files.create_file(Path(self._sqlite_path))
        return InlineLoop()

    def leader_lock(self, key: int, timeout: float) -> LeaderLock:
        return AlwaysHeld()

    async def maintain(self, interval: float = CHECKPOINT_INTERVAL) -> None:
        """Background upkeep, run as a task of the service's nursery until it is cancelled.

        On SQLite: a passive WAL checkpoint every ``interval`` seconds in a worker thread, on a connection
        of its own, so that the store's connection (in the service's thread) never waits on a disk flush.
        Under steady writes a passive checkpoint never catches up with the last commit, and SQLite starts
        the log over only once it has (40 s of POSTs grew it to 727 MiB). So when the log is still over
        ``wal_truncate_bytes`` after one, the store's calls are held back in trio (no thread waits on a lock)
        while a TRUNCATE checkpoint copies the few pages written since and empties the log.
        """
        path = self._sqlite_path
        wal = Path(path + "-wal")

        def log_is_large() -> bool:
            return wal.exists() and wal.stat().st_size > self.wal_truncate_bytes

        next_checkpoint = trio.current_time() + interval
        while True:
            # the log's size is looked at more often than it is checkpointed: a burst of writes fills
            # 20+ MiB a second
            await trio.sleep(min(interval, WAL_CHECK_INTERVAL))
            if trio.current_time() < next_checkpoint and not log_is_large():
                continue
            next_checkpoint = trio.current_time() + interval
            try:
                await trio.to_thread.run_sync(sqlite_inline.checkpoint, path)
                if log_is_large():
                    async with self._aside:  # no scan aside holds the log meanwhile (each ends at its timeout)
                        await self._truncate_log(path)
            except sqlite3.Error as exc:  # a full disk, say: the log keeps the data, try again later
                log.warning("SQLite checkpoint of %s failed: %s", path, exc)

    async def _truncate_log(self, path: str) -> None:
        """A TRUNCATE checkpoint with the store's connection idle: ``run`` waits until it is done.

        The store's calls never suspend half-way on SQLite (``InlineLoop``), so none is in progress
        while this trio task runs.
        """
        self._held = trio.Event()
        try:
            busy, _, _ = await trio.to_thread.run_sync(sqlite_inline.checkpoint, path, "TRUNCATE", TRUNCATE_BUSY_MS)
            if busy:
                log.info("SQLite log of %s not emptied: a reader held it; trying again", path)
        finally:
            self._held.set()
            self._held = None

    async def read_aside(self, sql: str, args: Sequence[Any] = (), *, by_name: bool = False,
                         timeout: float | None = None) -> list[Any]:
        """Rows of a read-only ``sql`` that may scan (a full-table aggregate, a filtered list) without
        holding up the API; ``timeout`` (seconds) bounds it, else :class:`StatementTimeout`.

        On SQLite the store's connection runs in the service's thread, so a scan there stalls every
        request (counting a million orders took 220 ms, a ``name`` ``ipartial`` list over 300k pins
        190 ms): it runs in a worker thread on a read-only connection of its own, which the trio side
        interrupts at the deadline. One such read at a time (``ASIDE_THREADS``), so that scans queue
        for one core instead of taking both from the service. On PostgreSQL it runs like any other
        statement, under a ``statement_timeout``. Rows are tuples, or mappings by column name if ``by_name``.
        """
        return await self._read_aside_sqlite(sql, args, by_name, timeout)

    async def _read_aside_sqlite(self, sql: str, args: Sequence[Any], by_name: bool,
                                 timeout: float | None) -> list[Any]:
        conn = sqlite_inline.open_read_only(self._sqlite_path)
        fetch = partial(trio.to_thread.run_sync, partial(sqlite_inline.fetch_all, conn, sql, args, by_name),
                        limiter=self._aside)
        if timeout is None:
            return await fetch()
        interrupted = False

        async def interrupt_at_deadline() -> None:
            nonlocal interrupted
            await trio.sleep(timeout)
            interrupted = True
            while True:  # again and again: an interrupt before the worker thread starts the statement is lost
                with contextlib.suppress(sqlite3.ProgrammingError):  # closed: the statement just ended
                    conn.interrupt()  # thread-safe; the statement stops at its next step
                await trio.sleep(INTERRUPT_REPEAT)

        rows: list[Any] = []
        failed: sqlite3.OperationalError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(interrupt_at_deadline)
            try:
                rows = await fetch()  # time spent waiting for a thread counts towards the timeout
            except sqlite3.OperationalError as exc:
                failed = exc
            nursery.cancel_scope.cancel()
        if failed is not None:
            if interrupted:
                raise StatementTimeout(f"stopped after {timeout:g} s") from None
            raise failed
        return rows


class PostgresDatabase(Database):
    """The store on a PostgreSQL server, on an asyncio loop turned by trio
    (:class:`~w3gate.store.bridge.TrioDrivenLoop`), with the hot paths' pool (:mod:`w3gate.store.postgres_direct`)
    and the leader's advisory lock (:class:`~w3gate.store.leader_lock.PostgresLock`)."""

    def _new_runner(self) -> TrioDrivenLoop:
        return TrioDrivenLoop()

    async def _open_pool(self) -> Any:
        return await postgres_direct.open_pool(asyncpg_params(self.url))

    def leader_lock(self, key: int, timeout: float) -> LeaderLock:
        return PostgresLock(asyncpg_params(self.url), key, timeout)

    async def read_aside(self, sql: str, args: Sequence[Any] = (), *, by_name: bool = False,
                         timeout: float | None = None) -> list[Any]:
        """Rows of a read-only ``sql`` that may scan, under a ``statement_timeout`` (see
        :meth:`SqliteDatabase.read_aside`); rows are tuples, or mappings by column name if ``by_name``."""
        return await self.run(_postgres_read, sql, args, by_name, timeout)

    async def ping(self, timeout: float | None = None) -> bool:
        """The deadline is kept on both sides: asyncio cancels the query (a server that stopped answering), and
        the trio side waits unshielded (a ping holds no transaction), so a hung connection cannot hold the
        caller either."""
        handle, runner = self._handle, self._runner
        if timeout is None or handle is None or not isinstance(runner, TrioDrivenLoop):
            return await super().ping(timeout)

        async def _ping() -> bool:
            await asyncio.wait_for(handle.client.execute_query("SELECT 1"), timeout)
            return True

        with trio.fail_after(timeout + 1):
            return await runner.run(_ping, shield=False)

    async def _close_connections(self) -> None:
        """The ORM's connections and the hot paths' pool, closed side by side (each waits up to 10 s for a
        server that stopped answering)."""
        pool = self._handle.pool if self._handle is not None else None
        results = await asyncio.gather(
            postgres_direct.close_pool(pool) if pool is not None else asyncio.sleep(0),
            Tortoise.close_connections(), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


async def _postgres_read(h: Handle, sql: str, args: Sequence[Any], by_name: bool,
                         timeout: float | None) -> list[Any]:
    """``sql`` on PostgreSQL, under ``SET LOCAL statement_timeout`` when bounded (one transaction)."""
    import asyncpg  # type: ignore[import-untyped]
    try:
        if timeout is None:
            _count, rows = await h.client.execute_query(sql, list(args))
        else:
            async with h.transaction() as conn:
                await conn.execute_script(f"SET LOCAL statement_timeout = {max(1, round(timeout * 1000))}")
                _count, rows = await conn.execute_query(sql, list(args))
    except asyncpg.QueryCanceledError:
        raise StatementTimeout(f"stopped after {timeout:g} s" if timeout else "stopped by the server") from None
    return [dict(row) if by_name else tuple(row.values()) for row in rows]
