"""The SQLite database's files, made readable by the service's user only, whatever the umask: they hold
every user's pins and the service's order records."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["create_file", "make_dirs"]


def make_dirs(directory: Path) -> None:
    """Create ``directory`` and any missing parents as 0700 (``mkdir``'s mode alone is filtered by the umask);
    directories that exist keep the operator's permissions."""
    for missing in reversed([d for d in (directory, *directory.parents) if not d.exists()]):
        missing.mkdir(mode=0o700, exist_ok=True)
        os.chmod(missing, 0o700)


def create_file(path: Path) -> None:
    """Create the database file as 0600 when it is missing (SQLite gives the ``-wal`` and ``-shm`` files it
    makes beside it the database file's permissions); an existing file keeps the operator's."""
    make_dirs(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
