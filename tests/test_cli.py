"""The command line as a newcomer meets it: serve's options without ``serve``, a pipe closed early
(``| head``), quiet one-shot commands, and start-up lines that can be pasted as they are."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from helpers import free_port, start_server_process

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

BINARY = os.environ.get("W3GATE_TEST_COMMAND", "").split()  # the frozen binary, on the binary pass
COMMAND = BINARY or [sys.executable, "-m", "w3gate"]


def clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("W3GATE_", "CRUST_"))}, **extra}


def test_serve_options_without_a_command_serve(tmp_path: Path) -> None:
    """``w3gate --port N`` is ``w3gate serve --port N``, as "serve (the default command)" promises."""
    port = free_port()
    proc = subprocess.Popen([*COMMAND, "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path)],
                            env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    helped = subprocess.run([*COMMAND, "--help"], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "{serve,plugins,users,token,crust}" in helped.stdout


@pytest.mark.parametrize("args", [["serve", "--print-config"], ["plugins"], ["users", "list"], ["--print-config"]])
def test_a_reader_that_closes_early_ends_the_command_quietly(tmp_path: Path, args: list[str]) -> None:
    """``w3gate ... | head``: stdout's reader is gone before the output is written. No traceback; the exit
    status a shell reports for a process SIGPIPE ended (141), as C programs give."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone: every write to the pipe fails
    try:
        done = subprocess.run([*COMMAND, *args], env=clean_env(W3GATE_DATA_DIR=str(tmp_path)), stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


def test_a_command_other_than_serve_logs_only_warnings(tmp_path: Path) -> None:
    """``w3gate users`` on a new database: no "upgraded from schema 0" or ORM lines on stderr."""
    done = subprocess.run([*COMMAND, "users", "list"], env=clean_env(W3GATE_DATA_DIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("USER"), done.stderr
    assert done.stderr == ""
    debug = subprocess.run([*COMMAND, "users", "list"], capture_output=True, text=True, timeout=60,
                           env=clean_env(W3GATE_DATA_DIR=str(tmp_path), W3GATE_LOG_LEVEL="debug"))
    assert " DEBUG " in debug.stderr  # an operator who asks for more gets it


def installed_command() -> list[str]:
    """What a newcomer runs: the frozen binary, or the console script ``pip install .`` made."""
    if BINARY:
        return BINARY
    script = Path(sys.executable).parent / "w3gate"
    if not script.exists():
        pytest.skip(f"no console script at {script}")
    return [str(script)]


def test_startup_lines_name_the_command_as_the_user_can_run_it() -> None:
    """Not on PATH (a virtual environment not activated): the start-up line names the program's path;
    on PATH, its bare name. And the line about /metrics when no metrics_token protects it."""
    command = installed_command()
    program = os.path.abspath(command[0])
    outside = start_server_process(command=command, env={"PATH": "/usr/bin:/bin"},
                                   data_dir=Path(tempfile.mkdtemp(prefix="w3gate-test-")))
    try:
        log = outside.log_text()
    finally:
        outside.stop()
    assert f"or with `{program} token --chain" in log, log
    assert "ipfs pin remote service add w3gate " in log
    assert "/metrics is open to anyone who can reach this port: set metrics_token" in log
    inside = start_server_process(command=command, env={"PATH": f"{Path(program).parent}:/usr/bin:/bin",
                                                        "W3GATE_METRICS_TOKEN": "scraper-secret"},
                                  data_dir=Path(tempfile.mkdtemp(prefix="w3gate-test-")))
    try:
        log = inside.log_text()
    finally:
        inside.stop()
    assert f"or with `{Path(program).name} token --chain" in log, log
    assert "/metrics is open" not in log
