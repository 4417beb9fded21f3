"""Two builds of w3gate side by side: the same requests, alternated between them, paired ratios.

On a machine whose speed drifts from minute to minute (shared cores), two benchmark runs minutes apart
differ by more than a small change costs. Here both builds run at once, each on a copy of the same
database (``--pins`` pins of one user, as bench_api.py fills them), and every wrk run against one is
followed at once by the same run against the other, the order swapped each round; the table gives each
round and the medians of the B/A ratios (req/s and the server's CPU time per request). It is a
benchmark, not a test. The database is filled by the w3gate this script imports: put the older tree first
on PYTHONPATH (a newer build upgrades its copy at start; an older one refuses a newer schema).

    PYTHONPATH=/tmp/before-tree python bench/bench_ab.py --a /tmp/before-tree --b . --rounds 6
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from bench_api import REQUESTS, fill, free_port, owner_of, start_process, stop_process, substrate_token, wrk
from helpers import UNBINDING_LIMITS  # tests/, put on the path by bench_api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", required=True, help="source tree of build A (the baseline)")
    parser.add_argument("--b", required=True, help="source tree of build B")
    parser.add_argument("--pins", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    token = substrate_token("//BenchUser")
    work = Path(tempfile.mkdtemp(prefix="w3gate-ab-"))
    (work / "a").mkdir()
    fill(f"sqlite://{work / 'a' / 'w3gate.sqlite3'}", owner_of(token), args.pins)
    shutil.copytree(work / "a", work / "b")
    servers = {}
    try:
        for name in ("a", "b"):
            port = free_port()
            # limits far above what a run sends (a build without them ignores the variables): the request path is
            # measured, not 429s
            env = {**os.environ, "PYTHONPATH": str(Path(getattr(args, name)).resolve()), "W3GATE_LOG_LEVEL": "warning",
                   **UNBINDING_LIMITS}
            base = f"http://127.0.0.1:{port}"
            proc = start_process(["-m", "w3gate", "serve", "--port", str(port), "--data-dir", str(work / name)],
                                 base + "/healthz", env, cwd=work / name)  # not the caller's tree
            servers[name] = (proc, base)
        print(f"A = {args.a}, B = {args.b}; {args.pins} pins, {args.connections} connections, {args.seconds} s runs")
        print(f"{'request':<30} {'round':>5} {'A req/s':>8} {'B req/s':>8} {'B/A':>6} {'A cpu us':>8} {'B cpu us':>8} "
              f"{'B/A':>6}")
        for label, path, lua in REQUESTS:
            ratios, cpu_ratios = [], []
            for i in range(args.rounds):
                order = ("a", "b") if i % 2 == 0 else ("b", "a")
                got = {}
                for name in order:
                    proc, base = servers[name]
                    got[name] = wrk(base + path, args.seconds, args.connections, token, lua, pid=proc.pid)
                a, b = got["a"], got["b"]
                if a["errors"] or b["errors"]:
                    raise SystemExit(f"{label}: non-2xx answers (A {a['errors']}, B {b['errors']}): not comparable")
                ratios.append(b["rps"] / a["rps"])
                cpu_ratios.append(b["cpu_us"] / a["cpu_us"])
                print(f"{label:<30} {i + 1:>5} {a['rps']:>8.0f} {b['rps']:>8.0f} {ratios[-1]:>6.3f} "
                      f"{a['cpu_us']:>8.0f} {b['cpu_us']:>8.0f} {cpu_ratios[-1]:>6.3f}")
            print(f"{label:<30} {'med':>5} {'':>8} {'':>8} {statistics.median(ratios):>6.3f} {'':>8} {'':>8} "
                  f"{statistics.median(cpu_ratios):>6.3f}")
    finally:
        for proc, _ in servers.values():
            stop_process(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
