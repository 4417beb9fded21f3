"""A cheap GET /pins's latency while another client runs the heaviest filtered list (issue 9, item 7).

Fills N pins (default 300,000) for one user straight into the store, starts a real ``w3gate serve`` and
drives it over loopback with wrk (Debian package ``wrk``): first the cheap request alone (``GET /pins``,
the default page: the newest pinned pins), then the same while a second wrk runs, back to back, the
heaviest list there is: ``name`` ``ipartial`` that matches nothing, which has to read every one of the
user's pins twice (the count and the page). One connection each, requests back to back, ``--rounds``
pairs of runs; prints medians of p50/p99 of the cheap request in both runs and what the heavy client got
(req/s, p50, non-2xx: 503 QUERY_TIMEOUT past ``statement_timeout``). A benchmark, not a test.

    python bench/bench_heavy_list.py [--pins 300000] [--seconds 10] [--rounds 3] [--statement-timeout 1.0]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import in_store, owner_of, start_process, stop_process
from helpers import UNBINDING_LIMITS, free_port, substrate_token  # bench_api put tests/ on the path

HEAVY = "/psa/pins?name=zz-no-such-name&match=ipartial"
CHEAP = "/psa/pins"


def fill(db_url: str, owner: str, n: int) -> None:
    """n pins of ``owner`` (a quarter in each status), made by the database itself."""

    async def insert(h: Any) -> None:
        statuses = "CASE i % 4 WHEN 0 THEN 'queued' WHEN 1 THEN 'pinning' WHEN 2 THEN 'pinned' ELSE 'failed' END"
        await h.client.execute_query(
            f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {n - 1}) "
            "INSERT INTO pins (requestid, owner, cid, name, status, created_ms, origins, meta) "
            f"SELECT 'r' || i, '{owner}', 'bafkqa' || i, 'file-' || i, {statuses}, "
            f"{int(time.time() * 1000) - n - 10_000} + i, '[]', '{{}}' FROM n"
        )
        await h.client.execute_script("ANALYZE")

    in_store(db_url, insert)


def wrk1(url: str, seconds: int, token: str) -> dict:
    """One wrk connection sending requests back to back (30 s timeout: a stalled answer is counted, not
    dropped); requests/s, p50/p99 ms, non-2xx."""
    out = subprocess.run(["wrk", "-t1", "-c1", f"-d{seconds}s", "--timeout", "30s", "--latency",
                          "-H", f"Authorization: {token}", url], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.MULTILINE)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50"), "p99": ms("99"),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "errors": int(non2xx.group(1)) if non2xx else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pins", type=int, default=300_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="(alone, beside) pairs; medians are printed")
    parser.add_argument("--statement-timeout", default=None, help="W3GATE_STATEMENT_TIMEOUT for the server")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench_heavy_list.py needs wrk (Debian: apt-get install wrk)")
    token = substrate_token("//BenchHeavy")
    data_dir = Path(tempfile.mkdtemp(prefix="w3gate-bench-heavy-"))
    db_url = f"sqlite://{data_dir / 'w3gate.sqlite3'}"
    started = time.monotonic()
    fill(db_url, owner_of(token), args.pins)
    print(f"{args.pins} pins filled in {time.monotonic() - started:.1f} s")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "W3GATE_DATABASE_URL": db_url, "W3GATE_LOG_LEVEL": "warning", **UNBINDING_LIMITS}
    if args.statement_timeout:
        env["W3GATE_STATEMENT_TIMEOUT"] = args.statement_timeout
    server = start_process(["-m", "w3gate", "serve", "--port", str(port), "--data-dir", str(data_dir)],
                           base + "/healthz", env)
    runs: list[tuple[dict, dict, dict]] = []
    try:
        for _ in range(args.rounds):
            alone = wrk1(base + CHEAP, args.seconds, token)
            heavy: dict = {}
            heavy_client = threading.Thread(
                target=lambda h=heavy: h.update(wrk1(base + HEAVY, args.seconds + 2, token)))
            heavy_client.start()
            time.sleep(1)  # the heavy client is under way before the cheap one starts, and outlasts it
            beside = wrk1(base + CHEAP, args.seconds, token)
            heavy_client.join()
            runs.append((alone, beside, heavy))
    finally:
        stop_process(server)
        shutil.rmtree(data_dir, ignore_errors=True)
    med = statistics.median
    for i, label in enumerate(("cheap GET /pins alone", "cheap GET /pins beside the heavy list", "heavy list")):
        rows = [run[i] for run in runs]
        print(f"{label:<38} req/s {med(r['rps'] for r in rows):7.1f}  p50 {med(r['p50'] for r in rows):7.1f} ms  "
              f"p99 {med(r['p99'] for r in rows):7.1f} ms  requests {sum(r['requests'] for r in rows):6}  "
              f"non-2xx {sum(r['errors'] for r in rows)}")

if __name__ == "__main__":
    main()
