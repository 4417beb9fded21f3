"""SQLite log size under sustained writes: POST /pins over real HTTP for N seconds, peak ``-wal`` size.

Starts a real ``w3gate serve`` on SQLite and drives it with wrk (Debian package ``wrk``), every POST a new
CID (bench_api's Lua script), while this process samples the size of the database's ``-wal`` file every
20 ms. Prints the peak and final log size, the database size, and wrk's figures. It is a benchmark, not a
test (tests/test_store_limits.py checks the bound at store level).

    python bench/bench_wal.py [--seconds 40] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import POST_NEW_CIDS_LUA, start_process, stop_process, wrk
from helpers import UNBINDING_LIMITS, free_port, substrate_token  # bench_api put tests/ on the path

MiB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench_wal.py needs wrk (Debian: apt-get install wrk)")
    data_dir = Path(tempfile.mkdtemp(prefix="w3gate-bench-wal-"))
    db_path = data_dir / "w3gate.sqlite3"
    wal = Path(f"{db_path}-wal")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "W3GATE_DATABASE_URL": f"sqlite://{db_path}", "W3GATE_LOG_LEVEL": "warning",
           **UNBINDING_LIMITS}
    server = start_process(["-m", "w3gate", "serve", "--port", str(port), "--data-dir", str(data_dir)],
                           base + "/healthz", env)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, wal.stat().st_size)
            except FileNotFoundError:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = wrk(base + "/psa/pins", args.seconds, args.connections, substrate_token("//BenchWal"),
                     POST_NEW_CIDS_LUA, pid=server.pid)
    finally:
        done.set()
        sampler.join()
        final = wal.stat().st_size if wal.exists() else 0
        stop_process(server)
    print(f"{args.seconds} s of POST /pins, {args.connections} connections: {result['rps']:.0f} req/s, "
          f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, non-2xx {result['errors']}")
    print(f"-wal peak {peak / MiB:.1f} MiB, at the end {final / MiB:.1f} MiB; "
          f"database {db_path.stat().st_size / MiB:.1f} MiB")
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
