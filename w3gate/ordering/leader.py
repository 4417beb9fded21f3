"""One ordering leader per account: which instance runs the chain work (submitter, renewal, poller).

On PostgreSQL every instance serves the API and exactly one at a time runs the chain work: the one holding a
session advisory lock, keyed by the ordering account (two fleets with different accounts on one database do not
block each other), on a connection of its own (the store's ``leader_lock``). Two submitters of one account would
read the same nonce and race.

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

import trio

from w3gate.ordering.status import now_ms
from w3gate.store.interface import LeaderLock, Store

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

    def __init__(self, db: Store, timeout: float) -> None:
        self.db, self.timeout = db, timeout
        self._role: str | None = None  # None while there is no chain work (ordering off)
        self.retry = min(MAX_RETRY, timeout / 4)
        self.check_every = min(MAX_CHECK_EVERY, timeout / 8)
        self.check_time = min(MAX_CHECK_TIME, timeout / 4)
        self._lock: LeaderLock | None = None
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
        lock = self.db.leader_lock(key, self.timeout)
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
            lock.stop()

    async def _lead(self, tasks: list[Task], lock: LeaderLock) -> None:
        # a predecessor cut off from the database notices within check_every + check_time (at most 3/8 of
        # leader_timeout): start only after that, so that two instances never order at once
        await trio.sleep(self.check_every + self.check_time)
        if not await lock.holds(self.check_time):
            self.lost = True
            return
        now = now_ms()
        # a predecessor's claims never recorded were never sent: free them now rather than after STALE_CLAIM_MS
        freed = await self.db.release_stale_claims(now + 1, now)
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
