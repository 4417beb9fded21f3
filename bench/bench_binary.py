"""Figures of the one-file binary: its size, and start-to-ready time (exec to GET /healthz answering 200).

    python bench/bench_binary.py [--binary dist/w3gate] [--runs 10] [--compare]

Each run starts ``w3gate serve`` on embedded defaults (a fresh data dir: SQLite, no Crust seed) on a free
loopback port, polls /healthz every 10 ms, then stops it with SIGTERM and checks it exits 0. Also timed:
``--version`` (mostly the one-file unpacking, the fixed cost of every start) and, with ``--compare``, the
same start-to-ready of the pip-installed service (``python -m w3gate``) for reference.
Targets (issue #5): size <= 60 MB, start-to-ready <= 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIZE_TARGET_MB = 60
READY_TARGET_S = 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """user+system CPU used so far by a process and its children (the one-file bootloader runs the app
    as a child): a figure that, unlike wall time, hardly moves when other jobs share the machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += cpu_seconds(int(child))
    except (OSError, IndexError, ValueError):
        pass
    return total


CPU: list[float] = []


def start_to_ready(command: Sequence[str], timeout: float = 60) -> float:
    """Seconds from exec to the first 200 from /healthz; the server is then stopped with SIGTERM.
    The CPU time used until then is appended to CPU."""
    data_dir = Path(tempfile.mkdtemp(prefix="w3gate-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(data_dir), "W3GATE_LOG_LEVEL": "warning"}
    cmd = [*command, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    with open(data_dir / "server.log", "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir)
        try:
            while True:
                elapsed = time.perf_counter() - t0
                if proc.poll() is not None or elapsed > timeout:
                    raise RuntimeError(f"not ready ({proc.returncode=}):\n"
                                       + (data_dir / "server.log").read_text()[-2000:])
                try:
                    with urllib.request.urlopen(url, timeout=1) as resp:
                        if resp.status == 200:
                            ready = time.perf_counter() - t0
                            CPU.append(cpu_seconds(proc.pid))
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(0.01)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
    if code != 0:
        raise RuntimeError(f"exit status {code} after SIGTERM:\n" + (data_dir / "server.log").read_text()[-2000:])
    shutil.rmtree(data_dir, ignore_errors=True)
    return ready


def version_time(command: Sequence[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([*command, "--version"], check=True, capture_output=True)
    return time.perf_counter() - t0


def series(label: str, fn, runs: int) -> list[float]:
    fn()  # warm the page cache: the figures are for a warm start, as on a server restarting
    CPU.clear()
    values = [fn() for _ in range(runs)]
    cpu = f", CPU until ready median {statistics.median(CPU):.2f} s" if CPU else ""
    print(f"{label}: median {statistics.median(values):.3f} s, max {max(values):.3f} s, "
          f"min {min(values):.3f} s ({runs} runs){cpu}")
    CPU.clear()
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, default=REPO / "dist" / "w3gate")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--compare", action="store_true", help="also time the pip-installed service")
    args = parser.parse_args(argv)
    binary = args.binary.resolve()
    if not binary.is_file():
        print(f"no binary at {binary}: run packaging/build first", file=sys.stderr)
        return 2

    version = subprocess.run([str(binary), "--version"], check=True, capture_output=True, text=True).stdout.strip()
    size_mb = binary.stat().st_size / 1e6
    print(f"binary: {binary} ({version}); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"size: {size_mb:.1f} MB (target <= {SIZE_TARGET_MB} MB)")
    series("--version (unpack + interpreter start)", lambda: version_time([str(binary)]), args.runs)
    ready = series("start-to-ready, binary", lambda: start_to_ready([str(binary)]), args.runs)
    if args.compare:
        series("start-to-ready, pip-installed (python -m w3gate)",
               lambda: start_to_ready([sys.executable, "-m", "w3gate"]), args.runs)
    ok = size_mb <= SIZE_TARGET_MB and statistics.median(ready) <= READY_TARGET_S
    print(f"targets {'met' if ok else 'NOT met'}: size <= {SIZE_TARGET_MB} MB, median start-to-ready <= "
          f"{READY_TARGET_S} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
