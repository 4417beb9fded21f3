"""A rolling upgrade of a running fleet across a schema migration, as docs/deploy.md tells operators to do it:
two instances of the previous release behind nginx (HTTPS) on one PostgreSQL, a client posting and listing pins
without pause, and each instance in turn taken out of nginx's rotation (reload), stopped, replaced by this
release on the same port, and put back. The first new instance migrates the database while the other, older
one keeps serving on it. Not one request may fail, and every pin posted is there at the end.

The previous release is real code: main's commit before the compatibility rule (schema 7), taken from this
repository's history with ``git archive`` and run from a temporary directory with PYTHONPATH."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import POSTGRES
from deploy_helpers import Nginx, https_client, make_certificate, needs_nginx
from helpers import REPO, Server, free_port, new_postgres_database, start_server_process, substrate_token

from w3gate.store.migrations import LATEST

PREVIOUS_RELEASE = "848c18f"  # main at schema 7, before min_compatible: it knows no newer schema
PREVIOUS_SCHEMA = 7
TOKEN = substrate_token("//Alice")
CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
ALL = "queued,pinning,pinned,failed"
PACE = 0.01  # seconds between the load's requests

pytestmark = [
    needs_nginx,
    pytest.mark.skipif(not POSTGRES, reason="several instances need PostgreSQL (W3GATE_TEST_POSTGRES_URL)"),
]


def previous_release(directory: Path) -> Path:
    """The previous release's ``w3gate`` package, from git history (a CI clone has it)."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", PREVIOUS_RELEASE, "w3gate"],
                                 capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"commit {PREVIOUS_RELEASE} not available from git in {REPO}: {exc}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(directory, filter="data")
    return directory


class Load:
    """One client posting a pin and listing pins, one after the other, each over a new HTTPS connection,
    until stopped; it keeps every failure (an exception or an unexpected status)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.posted: list[str] = []
        self.requests = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            post = {"json": {"cid": CID, "name": f"n{self.requests}"}}
            for method, path, kw, status in (("POST", "/pins", post, 202),
                                             ("GET", "/pins", {"params": {"limit": 5, "status": ALL}}, 200)):
                try:
                    r = self.client.request(method, path, **kw)
                    if r.status_code != status:
                        self.failures.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
                    elif method == "POST":
                        self.posted.append(r.json()["requestid"])
                except httpx.HTTPError as exc:
                    self.failures.append(f"{method} {path}: {exc!r}")
                self.requests += 1
                # a steady client, not a flood: the machine's cores stay free for the instances being replaced
                self._stop.wait(PACE)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def wait_for(self, more: int) -> None:
        """Until ``more`` requests more than now have been answered (a progress check, not a timing)."""
        target = self.requests + more
        deadline = time.monotonic() + 60
        while self.requests < target and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.requests >= target, "the load made no progress"


def served(server: Server) -> int:
    """Requests the instance answered (its access log lines)."""
    return server.log_text().count("w3gate.access:")


def test_rolling_upgrade_across_a_schema_migration_fails_no_request(tmp_path: Path) -> None:
    old_src = previous_release(tmp_path / "previous")
    _ca_dir = tmp_path / "tls"
    _ca_dir.mkdir()
    ca, cert, key = make_certificate(_ca_dir)
    url = new_postgres_database(POSTGRES or "")
    ports = [free_port(), free_port()]
    command = [sys.executable, "-m", "w3gate"]

    def start(port: int, name: str, env: dict[str, str] | None = None) -> Server:
        data_dir = tmp_path / name
        data_dir.mkdir()
        return start_server_process(database_url=url, data_dir=data_dir, port=port, command=command, env=env)

    # one after the other: that release upgrades the schema without a lock (two at once can both try a step)
    servers = [start(ports[0], "old0", {"PYTHONPATH": str(old_src)})]
    servers.append(start(ports[1], "old1", {"PYTHONPATH": str(old_src)}))
    nginx = Nginx(tmp_path, cert, key)
    load: Load | None = None
    try:
        assert servers[0].health().json()["schema"] == PREVIOUS_SCHEMA
        nginx.start(ports)
        load = Load(https_client(nginx, ca, TOKEN, keepalive=False))
        load.start()
        load.wait_for(20)
        for i, port in enumerate(ports):
            nginx.reload(ports, down={port})  # out of rotation: nginx sends it nothing new from here
            load.wait_for(10)
            assert servers[i].stop() == 0  # SIGTERM: it finishes what it has and exits
            servers[i] = start(port, f"new{i}")
            if i == 0:  # the first new instance migrates the database under the old one still serving
                assert f"upgraded from schema {PREVIOUS_SCHEMA} to {LATEST}" in servers[0].log_text()
            nginx.reload(ports)
            before = [served(s) for s in servers]
            load.wait_for(20)
            if i == 0:  # both served: the new release, and the previous one on the migrated schema
                assert [served(s) for s in servers] > before and served(servers[1]) > before[1]
        load.stop()
        assert load.failures == []
        assert all(served(s) for s in servers)
        with https_client(nginx, ca, TOKEN) as client:
            listed = client.get("/pins", params={"limit": 1000, "status": ALL}).json()
        assert listed["count"] == len(load.posted) and len(load.posted) >= 40
        assert {p["requestid"] for p in listed["results"]} == set(load.posted)
        assert servers[0].health().json()["schema"] == LATEST
    finally:
        if load is not None:
            load.stop()
        nginx.stop()
        for server in servers:
            server.stop()
