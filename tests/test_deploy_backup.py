"""Backups as docs/deploy.md gives them, taken from a live database while a client keeps posting pins, then
restored into a fresh file / server and served by a new w3gate: every pin answered before the backup began is
there, the restored database is consistent (count = pins listed) and takes new pins.
SQLite: ``sqlite3 DB "VACUUM INTO 'FILE'"`` (pass 1); PostgreSQL: ``pg_dump -Fc`` and ``pg_restore`` (pass 2)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import POSTGRES
from helpers import Server, new_postgres_database, start_server_process, substrate_token

TOKEN = substrate_token("//Alice")
CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
ALL = "queued,pinning,pinned,failed"


def _post(server: Server, n: int, stop: threading.Event | None = None, ids: list[str] | None = None) -> list[str]:
    """Post ``n`` pins one after the other (fewer if ``stop`` is set first); their request ids, in ``ids``."""
    ids = [] if ids is None else ids
    with server.client(TOKEN) as client:
        while len(ids) < n and not (stop and stop.is_set()):
            r = client.post("/pins", json={"cid": CID, "name": f"p{len(ids)}"})
            assert r.status_code == 202, r.text
            ids.append(r.json()["requestid"])
    return ids


def _listed(server: Server) -> set[str]:
    with server.client(TOKEN) as client:
        body = client.get("/pins", params={"limit": 1000, "status": ALL}).json()
    ids = {p["requestid"] for p in body["results"]}
    assert body["count"] == len(ids)  # the kept per-owner counts agree with the rows
    return ids


def _backup_while_posting(server: Server, take_backup: Callable[[], None]) -> tuple[list[str], list[str]]:
    """Pins answered before the backup, and every pin posted (a writer runs all through the backup)."""
    before = _post(server, 20)
    stop = threading.Event()
    during: list[str] = []
    writer = threading.Thread(target=_post, args=(server, 500, stop, during))
    writer.start()
    try:
        while not during and writer.is_alive():  # the writer is under way (its first pin answered)
            writer.join(0.01)
        take_backup()
    finally:
        stop.set()
        writer.join(60)
    return before, before + during


def _check_restored(restored: Server, before: list[str], posted: list[str]) -> None:
    ids = _listed(restored)
    assert set(before) <= ids <= set(posted)
    assert len(_post(restored, 1)) == 1  # it takes new pins (keys, sequences and triggers restored)
    assert len(_listed(restored)) == len(ids) + 1


@pytest.mark.skipif(bool(POSTGRES), reason="the SQLite backup (pass 1)")
@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="sqlite3 command needed (Debian: apt-get install sqlite3)")
def test_sqlite_online_backup_restores_into_a_new_instance(tmp_path: Path) -> None:
    (tmp_path / "live").mkdir()
    live = start_server_process(data_dir=tmp_path / "live")
    backup = tmp_path / "backup" / "w3gate.sqlite3"
    backup.parent.mkdir()
    try:
        before, posted = _backup_while_posting(live, lambda: subprocess.run(
            ["sqlite3", str(live.data_dir / "w3gate.sqlite3"), f"VACUUM INTO '{backup}'"],
            check=True, capture_output=True, timeout=120))
    finally:
        live.stop()
    check = subprocess.run(["sqlite3", str(backup), "PRAGMA integrity_check"], capture_output=True, text=True)
    assert check.stdout.strip() == "ok"
    restored = start_server_process(data_dir=backup.parent)  # a fresh data dir holding only the backup
    try:
        _check_restored(restored, before, posted)
    finally:
        restored.stop()


@pytest.mark.skipif(not POSTGRES, reason="the PostgreSQL backup (pass 2)")
@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump needed (Debian: postgresql-client)")
def test_pg_dump_of_a_live_database_restores_into_a_new_instance(tmp_path: Path) -> None:
    assert POSTGRES
    live_url, restored_url = new_postgres_database(POSTGRES), new_postgres_database(POSTGRES)
    dump = tmp_path / "w3gate.dump"
    (tmp_path / "live").mkdir()
    live = start_server_process(data_dir=tmp_path / "live", database_url=live_url)
    try:
        before, posted = _backup_while_posting(live, lambda: subprocess.run(
            ["pg_dump", "--format=custom", f"--file={dump}", live_url], check=True, capture_output=True, timeout=120))
    finally:
        live.stop()
    subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={restored_url}", str(dump)],
                   check=True, capture_output=True, timeout=120)
    (tmp_path / "restored").mkdir()
    restored = start_server_process(data_dir=tmp_path / "restored", database_url=restored_url)
    try:
        _check_restored(restored, before, posted)
    finally:
        restored.stop()
