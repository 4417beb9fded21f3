"""The SQLite database holds every user's pins: its files and a directory made for it are the service
user's alone, whatever umask the service was started with."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTGRES

pytestmark = pytest.mark.skipif(bool(POSTGRES), reason="SQLite's files: the SQLite pass covers them")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)  # the server processes started meanwhile inherit it
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_sqlite_files_and_their_new_directory_are_private(start_server: Any, tmp_path: Path, token: str,
                                                           permissive_umask: None) -> None:
    own_dir = tmp_path / "fresh" / "db"  # not there yet: the server makes it
    server = start_server(database_url=f"sqlite://{own_dir / 'pins.sqlite3'}")
    default = start_server()  # SQLite in the data dir
    for srv, path in ((server, own_dir / "pins.sqlite3"), (default, default.data_dir / "w3gate.sqlite3")):
        with srv.client(token) as api:  # a write: the log files exist while the server runs
            assert api.post("/pins", json={"cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"}).status_code == 202
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert name.exists(), name
            assert mode(name) == 0o600, (name, oct(mode(name)))
    assert mode(own_dir) == 0o700 and mode(own_dir.parent) == 0o700
