"""One service on a SQLite file: an exclusive lock on a file beside it, held for the process's lifetime.

Two services on one SQLite file would both run the order submitter with one account and one nonce (and SQLite
is no place for several writers across processes anyway). The lock is ``flock`` on ``<database>.lock``: the
kernel frees it when the process ends however it ends (kill -9 included), so a stale lock file never stops a
restart. Only ``w3gate serve`` takes it: other tools may still open the file beside a running service.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from w3gate.store import private_files


class AlreadyRunning(Exception):
    """Another w3gate serves this SQLite database."""


class InstanceLock:
    def __init__(self, database: Path | None) -> None:
        self.path = None if database is None else database.with_name(database.name + ".lock")
        self._fd: int | None = None

    @classmethod
    def of(cls, database_url: str) -> InstanceLock:
        """The lock for a database URL: a no-op but for a SQLite file."""
        path = database_url.removeprefix("sqlite://")
        return cls(Path(path) if database_url.startswith("sqlite://") and path != ":memory:" else None)

    def acquire(self) -> None:
        """Take the lock, or raise :class:`AlreadyRunning` at once (no waiting)."""
        if self.path is None:
            return
        private_files.make_dirs(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise AlreadyRunning(
                f"another w3gate (pid {holder}) already serves the SQLite database beside {self.path}; SQLite is "
                "for one instance: stop it first, or use PostgreSQL (database_url) to run several") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing frees the lock; the file stays (removing it would race a new owner)
            self._fd = None
