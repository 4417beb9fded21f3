"""One service per SQLite file (issue 12): a second ``w3gate serve`` on the same file refuses to start, and the
one serving leads ordering. Several instances on PostgreSQL: tests/test_leader_failover.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import free_port, start_server_process

pytestmark = pytest.mark.skipif(bool(os.environ.get("W3GATE_TEST_POSTGRES_URL")),
                                reason="SQLite only: the PostgreSQL pass runs test_leader_failover.py")
ORDERING = {"W3GATE_CRUST_SEED": "//Alice", "W3GATE_CRUST_URL": "ws://127.0.0.1:9"}  # no chain: never reached


def serve_briefly(server, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``w3gate serve`` again on ``server``'s data dir (another port), as an operator would start a second one."""
    command = os.environ.get("W3GATE_TEST_COMMAND", "").split() or [sys.executable, "-m", "w3gate"]
    return subprocess.run([*command, "serve", "--host", "127.0.0.1", "--port", str(free_port()),
                           "--data-dir", str(server.data_dir)], env=server.env, capture_output=True, text=True,
                          timeout=timeout, cwd=str(server.data_dir))


def test_second_instance_on_one_sqlite_file_refuses_to_start(tmp_path):
    first = start_server_process(env=ORDERING, data_dir=tmp_path)
    try:
        assert first.health().json()["ordering"]["role"] == "leader"
        second = serve_briefly(first)
        assert second.returncode == 2, second.stderr[-2000:]
        assert "already serves the SQLite database" in second.stderr
        assert f"pid {first.proc.pid}" in second.stderr
        assert first.health().status_code == 200  # the first one is untouched
    finally:
        first.kill()  # kill -9: the kernel frees the lock, the lock file stays
    again = start_server_process(env=ORDERING, data_dir=tmp_path)
    try:
        assert again.health().json()["ordering"]["role"] == "leader"
    finally:
        assert again.stop() == 0
