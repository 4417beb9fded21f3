"""One ordering leader per account: which instance runs the chain work (submitter, renewal, poller).

On PostgreSQL every instance serves the API and exactly one at a time runs the chain work: the one holding a
session advisory lock, keyed by the ordering account (two fleets with different accounts on one database do not
block each other), on a connection of its own. Two submitters of one account would read the same nonce and race.

- A standby tries for the lock every ``leader_timeout / 4`` seconds (at most 2); holding it, it waits the time a
  cut-off predecessor takes to notice (below, at most 3 s) before it starts the chain work.
- The leader checks its lock every ``leader_timeout / 8`` seconds (at most 1) and right before a batch is recorded
  (the point after which it will be sent, :meth:`Leadership.check`); a check that fails or takes longer than
  ``leader_timeout / 4`` (at most 2 s) ends its leadership at once: the chain work is cancelled (a claim not yet
  recorded is released) and it waits a full ``leader_timeout`` before trying again, so another instance takes over.
- The server ends the lock's session (and frees the lock) when the leader dies or is cut off: a kill closes the
  socket at once; a network cut or a frozen process is bounded by ``idle_session_timeout`` = ``leader_timeout``
  (the leader's checks keep the session busy far more often), TCP keepalives and ``tcp_user_timeout``. The
  leader stops by ``3/8 leader_timeout`` after its last good check, so it is gone before another can start.
- Taking over, the new leader frees the claims its predecessor left unrecorded (nothing of them was sent) and
  settles its recorded batches (w3gate.ordering.submitter): no order lost, none placed twice.

SQLite is one instance by construction (:mod:`w3gate.store.single_instance`): it is always the leader.
The role changes in one place only, :meth:`Leadership._set_role`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from hashlib import blake2b
from typing import Any

import trio

from w3gate.ordering.status import now_ms
from w3gate.store import orders
from w3gate.store.bridge import AsyncioThread
from w3gate.store.db import Database

log = logging.getLogger(__name__)
Task = Callable[[], Awaitable[None]]
LEADER = "leader"
STANDBY = "standby"
MAX_RETRY = 2.0  # seconds between a standby's tries, at most (and at most leader_timeout / 4)
MAX_CHECK_EVERY = 1.0  # seconds between a leader's checks of its lock, at most (and at most leader_timeout / 8)
MAX_CHECK_TIME = 2.0  # seconds a check may take, at most (and at most leader_timeout / 4)


def lock_key(account: str) -> int:
    """The advisory lock's bigint key for an ordering account."""
    return int.from_bytes(blake2b(b"w3gate-ordering:" + account.encode(), digest_size=8).digest(), "big", signed=True)


class Leadership:
    """Elects this instance leader (or not) and runs the chain work only while it is."""

    def __init__(self, db: Database, timeout: float) -> None:
        self.db, self.timeout = db, timeout
        self._role: str | None = None  # None while there is no chain work (ordering off)
        self.retry = min(MAX_RETRY, timeout / 4)
        self.check_every = min(MAX_CHECK_EVERY, timeout / 8)
        self.check_time = min(MAX_CHECK_TIME, timeout / 4)
        self._lock: _PgLock | None = None
        self._work_scope: trio.CancelScope | None = None
        self.lost = False

    def _set_role(self, role: str | None, why: str = "") -> None:
        """The one place the role changes."""
        if role == self._role:
            return
        self._role = role
        if role is not None:
            log.log(logging.INFO if role == LEADER else logging.WARNING, "ordering role: %s%s", role,
                    f" ({why})" if why else "")

    @property
    def role(self) -> str | None:
        """``leader`` or ``standby`` (None while there is no chain work)."""
        return self._role

    def run_when_leader(self, tasks: list[Task], account: str) -> list[Task]:
        """The chain work of the ordering ``account`` as the service's tasks: as they are on SQLite, else one task
        that elects."""
        if not tasks:
            return []
        if self.db.dialect == "sqlite":
            self._set_role(LEADER, "SQLite: a single instance")
            return tasks
        return [lambda: self._elect(tasks, account)]

    async def check(self) -> None:
        """Go on only as the leader: called before a batch is recorded (and so sent). Not the leader any more
        (the lock connection broke, or did not answer in time): step down, which cancels the caller."""
        if self.db.dialect == "sqlite":
            return
        if self._lock is None or not await self._lock.holds(self.check_time):
            self._step_down("the ordering lock's connection was lost before a batch")
            await trio.lowlevel.checkpoint()  # raises Cancelled: the work's scope is cancelled

    def _step_down(self, why: str) -> None:
        self.lost = True
        self._set_role(STANDBY, why)
        if self._work_scope is not None:
            self._work_scope.cancel()

    async def _elect(self, tasks: list[Task], account: str) -> None:
        key = lock_key(account)
        lock = _PgLock(self.db.url, key, self.timeout, AsyncioThread("w3gate-leader"))
        try:
            while True:
                self._set_role(STANDBY, "waiting for the ordering lock")
                self._lock = None
                if not await lock.try_acquire(self.check_time):
                    await trio.sleep(self.retry)
                    continue
                self.lost = False
                self._lock = lock
                try:
                    await self._lead(tasks, lock)
                finally:
                    with trio.CancelScope(shield=True):
                        await lock.close()  # ends the session: the lock is free at once
                if self.lost:  # let another instance take over: this one was cut off
                    await trio.sleep(self.timeout)
        finally:
            self._lock = None
            with trio.CancelScope(shield=True):
                await lock.close()
            lock.runner.stop()

    async def _lead(self, tasks: list[Task], lock: _PgLock) -> None:
        # a predecessor cut off from the database notices within check_every + check_time (at most 3/8 of
        # leader_timeout): start only after that, so that two instances never order at once
        await trio.sleep(self.check_every + self.check_time)
        if not await lock.holds(self.check_time):
            self.lost = True
            return
        now = now_ms()
        # a predecessor's claims never recorded were never sent: free them now rather than after STALE_CLAIM_MS
        freed = await self.db.run(orders.release_stale_claims, now + 1, now)
        self._set_role(LEADER, f"holds the ordering lock; {freed} unrecorded claims freed")
        async with trio.open_nursery() as nursery:
            self._work_scope = nursery.cancel_scope
            for task in tasks:
                nursery.start_soon(task)
            while True:
                await trio.sleep(self.check_every)
                if not await lock.holds(self.check_time):
                    self._step_down("the ordering lock's connection was lost")
                    break
        self._work_scope = None


class _PgLock:
    """A session advisory lock on a PostgreSQL connection of its own (asyncpg, on its own asyncio thread), kept
    open between a standby's tries."""

    # what makes the server end the session (and free the lock) of a leader that stopped talking, in ms or s
    SESSION = {"idle_session_timeout": 1000, "tcp_user_timeout": 1000, "tcp_keepalives_idle": 1 / 3,
               "tcp_keepalives_interval": 1 / 9}

    def __init__(self, url: str, key: int, timeout: float, runner: AsyncioThread) -> None:
        self.url, self.key, self.timeout, self.runner = url, key, timeout, runner
        self.conn: Any = None

    async def _call(self, fn: Callable[[], Awaitable[Any]], deadline: float) -> Any:
        """Run ``fn`` on the lock's loop; False on any error or past ``deadline`` seconds (both sides), and then
        the connection is dropped (a hung connection cannot be trusted with the lock)."""
        import asyncio

        async def bounded() -> Any:
            try:
                return await asyncio.wait_for(fn(), deadline)
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
        from tortoise.backends.base.config_generator import expand_db_url

        creds = expand_db_url(self.url)["credentials"]
        conn = await asyncpg.connect(
            host=creds.get("host"), port=creds.get("port"), user=creds.get("user"), password=creds.get("password"),
            database=creds.get("database"), server_settings={"application_name": "w3gate ordering lock"})
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
