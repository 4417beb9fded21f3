"""One ordering leader (issue 12). SQLite: a second ``w3gate serve`` on the same file refuses to start, and the one
serving leads ordering. PostgreSQL: a leader frozen (SIGSTOP: its socket stays open, as behind a network cut) is
let go by the server after ``leader_timeout``, another instance leads, and the old one, thawed, steps down. The
chain work itself on several instances: tests/test_leader_failover.py (devchain)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from helpers import free_port, new_postgres_database, start_server_process

POSTGRES = os.environ.get("W3GATE_TEST_POSTGRES_URL")
ORDERING = {"W3GATE_CRUST_SEED": "//Alice", "W3GATE_CRUST_URL": "ws://127.0.0.1:9"}  # no chain: never reached


def serve_briefly(server, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``w3gate serve`` again on ``server``'s data dir (another port), as an operator would start a second one."""
    command = os.environ.get("W3GATE_TEST_COMMAND", "").split() or [sys.executable, "-m", "w3gate"]
    return subprocess.run([*command, "serve", "--host", "127.0.0.1", "--port", str(free_port()),
                           "--data-dir", str(server.data_dir)], env=server.env, capture_output=True, text=True,
                          timeout=timeout, cwd=str(server.data_dir))


@pytest.mark.skipif(bool(POSTGRES), reason="SQLite: the SQLite pass")
def test_second_instance_on_one_sqlite_file_refuses_to_start(tmp_path):
    first = start_server_process(env=ORDERING, data_dir=tmp_path)
    try:
        assert first.health().json()["ordering"]["role"] == "leader"
        second = serve_briefly(first)
        assert second.returncode == 2, second.stderr[-2000:]
        assert "already serves the SQLite database" in second.stderr
        assert re.search(r"another w3gate \(pid \d+\)", second.stderr)  # the binary's: its unpacked child's
        assert first.health().status_code == 200  # the first one is untouched
    finally:
        first.kill()  # kill -9: the kernel frees the lock, the lock file stays
    again = start_server_process(env=ORDERING, data_dir=tmp_path)
    try:
        assert again.health().json()["ordering"]["role"] == "leader"
    finally:
        assert again.stop() == 0


def wait_for(fn: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := fn()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.1)
    return value


@pytest.mark.skipif(not POSTGRES, reason="needs PostgreSQL")
def test_frozen_leader_is_let_go_after_leader_timeout_and_steps_down(tmp_path):
    url = new_postgres_database(POSTGRES)
    env = {**ORDERING, "W3GATE_LEADER_TIMEOUT": "3"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start_server_process(env=env, database_url=url, data_dir=tmp_path / "a")
    b = start_server_process(env=env, database_url=url, data_dir=tmp_path / "b")
    servers = [a, b]
    try:
        roles = lambda: [s.health().json()["ordering"]["role"] for s in servers]  # noqa: E731
        wait_for(lambda: sorted(roles()) == ["leader", "standby"], 30)
        leader, standby = servers if roles()[0] == "leader" else servers[::-1]
        leader.proc.send_signal(signal.SIGSTOP)  # no more checks; the kernel keeps its socket open
        try:
            wait_for(lambda: standby.health().json()["ordering"]["role"] == "leader", 30)
        finally:
            leader.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: leader.health().json()["ordering"]["role"] == "standby", 30)
        assert standby.health().json()["ordering"]["role"] == "leader"
        assert "ordering role: standby (the ordering lock's connection was lost" in leader.log_text()
    finally:
        for s in servers:
            s.kill()


UPGRADE_AT = """
import sys, time, trio
from w3gate.store.db import Database

async def main() -> None:
    db = Database(sys.argv[1])
    await trio.sleep_until(trio.current_time() + float(sys.argv[2]) - time.time())  # all at once
    try:
        print(await db.open())
    finally:
        await db.close()

trio.run(main)
"""


@pytest.mark.skipif(not POSTGRES, reason="needs PostgreSQL")
def test_instances_started_together_on_a_new_database_upgrade_it_once():
    """A fleet's instances start at the same moment on a new database: each schema step runs once, none fails."""
    url = new_postgres_database(POSTGRES)
    at = str(time.time() + 3)  # past every process's imports
    procs = [subprocess.Popen([sys.executable, "-c", UPGRADE_AT, url, at], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-1500:] for _, err in results]
    from w3gate.store.migrations import LATEST

    befores = sorted(int(out.strip().strip("()").split(",")[0]) for out, _ in results)
    assert befores[0] == 0 and all(out.strip().endswith(f"{LATEST})") for out, _ in results)


def test_leader_timeout_setting():
    from w3gate.config import ConfigError, load_settings

    assert load_settings(env={}).leader_timeout == 30.0
    assert load_settings(env={"W3GATE_LEADER_TIMEOUT": "7.5"}).leader_timeout == 7.5
    with pytest.raises(ConfigError, match="leader_timeout"):
        load_settings(env={"W3GATE_LEADER_TIMEOUT": "0.5"})
