"""Where the service's CPU goes by thread, and what a request costs the PostgreSQL server, phase by phase.

Fills ``--pins`` pins of one user into the database at ``--db`` (a ``postgres://`` server URL, on which a fresh
database is made, or ``sqlite``), starts a real ``w3gate serve`` on it (limits, metrics and the access log on, as
``bench_vs_floor.py`` runs it) and sends, with wrk over loopback, ``GET /pins`` (the default page) and ``POST
/pins`` (a new CID each) in turns: GET, POST, GET, POST, GET by default, so that the later GETs read a store the
POSTs grew. For each phase it prints the requests served, the service's CPU per request for each of its threads
(from /proc/PID/task), its voluntary and involuntary context switches per request, and the CPU per request of
every ``postgres`` process on the machine (the server's backends and background workers). It is a benchmark, not a
test; it answers questions ``bench_vs_floor.py``'s one CPU figure cannot, such as how many times a request hands
the GIL between threads.

    python bench/bench_threads.py --db postgres://postgres@127.0.0.1:5432/postgres
    python bench/bench_threads.py --db sqlite --phases GET,POST
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_api import (  # noqa: E402
    POST_NEW_CIDS_LUA,
    fill,
    new_postgres_database,
    owner_of,
    stop_process,
    substrate_token,
    wait_ready,
)
from helpers import UNBINDING_LIMITS, free_port  # noqa: E402  (tests/, put on the path by bench_api)

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(stat_path: str) -> float:
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def threads_cpu(pid: int) -> dict[tuple[str, str], float]:
    """CPU seconds of each thread of ``pid``, keyed by (thread id, name)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            out[(tid, name)] = _cpu_s(f"/proc/{pid}/task/{tid}/stat")
        except FileNotFoundError:  # a thread that just ended
            continue
    return out


def switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of all the threads of ``pid``."""
    voluntary = involuntary = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:
            continue
        voluntary += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
        involuntary += int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
    return voluntary, involuntary


def postgres_cpu_s() -> float:
    """CPU seconds of every process named ``postgres`` (the server, its backends and workers)."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres":
                total += _cpu_s(f"/proc/{pid}/stat")
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="a postgres:// server URL, or sqlite")
    parser.add_argument("--pins", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--phases", default="GET,POST,GET,POST,GET")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="w3gate-bench-threads-"))
    db_url = f"sqlite://{work / 'w3gate.sqlite3'}" if args.db == "sqlite" else new_postgres_database(args.db)
    token = substrate_token("//BenchUser")
    fill(db_url, owner_of(token), args.pins)
    port = free_port()
    env = {**os.environ, "W3GATE_DATABASE_URL": db_url, "W3GATE_LOG_LEVEL": "info", **UNBINDING_LIMITS}
    with open(work / "server.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "w3gate", "serve", "--port", str(port), "--data-dir",
                                 str(work)], env=env, stdout=log, stderr=log, cwd=work)
    script = work / "post.lua"
    script.write_text(POST_NEW_CIDS_LUA)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
        print(f"{args.db.split('@')[-1]}: {args.pins} pins, {args.connections} connections, {args.seconds} s a phase")
        for method in args.phases.split(","):
            cmd = ["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "-H", f"Authorization: {token}"]
            if method == "POST":
                cmd += ["-s", str(script)]
            before, switched, server = threads_cpu(proc.pid), switches(proc.pid), postgres_cpu_s()
            out = subprocess.run([*cmd, f"http://127.0.0.1:{port}/psa/pins"], capture_output=True, text=True,
                                 check=True).stdout
            after, switched_after, server_after = threads_cpu(proc.pid), switches(proc.pid), postgres_cpu_s()
            n = max(1, int(re.search(r"(\d+) requests in", out).group(1)))
            per = {key: (after[key] - before.get(key, 0.0)) / n * 1e6 for key in after}
            shown = ", ".join(f"{name} {us:.0f}" for (_, name), us in sorted(per.items(), key=lambda kv: -kv[1])
                              if us >= 1)
            print(f"{method:4} {n:6} requests: service {sum(per.values()):5.0f} us/request ({shown}); context "
                  f"switches/request {(switched_after[0] - switched[0]) / n:.2f} voluntary, "
                  f"{(switched_after[1] - switched[1]) / n:.2f} involuntary; postgres processes "
                  f"{(server_after - server) / n * 1e6:.0f} us/request", flush=True)
    finally:
        stop_process(proc)


if __name__ == "__main__":
    main()
