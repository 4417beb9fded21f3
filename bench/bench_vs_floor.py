"""w3gate against the Quart-Trio floor and the npm mock pinning service, side by side in one run.

Starts, on loopback: the Quart-Trio floor (``bench/quart_floor_app.py``: w3gate's app shape and Hypercorn
settings, constant answers), ipfs-shipyard's ``mock-ipfs-pinning-service`` 0.4.2 (Node, pins in memory, no
persistence; installed with npm into ``build/bench-npm`` when missing), w3gate on SQLite and w3gate on
PostgreSQL (a throwaway server started here, ``fsync=off``, unless ``--postgres URL`` names one). Every
service holds ``--pins`` pins of one user (the mock gets them by POST); w3gate runs as a user would run it:
real tokens checked, limits on (set far above what a run sends, so they are checked but never refuse),
metrics counted and the access log written (``log_level`` info, to a file). Then, ``--rounds`` times,
``GET /pins`` (the default page of 10) and ``POST /pins`` (a new CID each) are sent to each service with
wrk, ``--seconds`` each, the services taking turns in a rotated order so that the machine's drift falls on
all alike. It prints, per service and request, the median req/s, the server's CPU time per request (all
its threads, or the Node process; from /proc) and the medians of the per-round ratios to the floor (and of
PostgreSQL's CPU to SQLite's). The machine's load average is printed too: on shared cores compare ratios,
not absolute figures. Needs wrk, node and npm; PostgreSQL's server binaries for the PostgreSQL column
(skipped, with a note, when not found). It is a benchmark, not a test.

    python bench/bench_vs_floor.py                       # 3 rounds of 5 s, 10,000 pins
    python bench/bench_vs_floor.py --rounds 1 --no-mock --py-spy build/profiles   # py-spy profiles of w3gate
    python bench/bench_vs_floor.py --baseline /tmp/w3gate-before   # also an earlier tree (git archive) on SQLite
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_api import (  # noqa: E402
    POST_NEW_CIDS_LUA,
    cid_of,
    fill,
    new_postgres_database,
    owner_of,
    stop_process,
    substrate_token,
    wait_ready,
    wrk,
)
from helpers import UNBINDING_LIMITS, free_port  # noqa: E402  (tests/, put on the path by bench_api)

MOCK = "mock-ipfs-pinning-service@0.4.2"
MOCK_TOKEN = "bench-secret"
NPM_DIR = HERE.parent / "build" / "bench-npm"
REQUESTS = (("GET", None), ("POST", POST_NEW_CIDS_LUA))


def mock_cli(npm_dir: Path) -> Path:
    """The mock's cli.js, installed with npm into ``npm_dir`` (outside git) if missing."""
    cli = npm_dir / "node_modules" / "mock-ipfs-pinning-service" / "cli.js"
    if not cli.exists():
        npm_dir.mkdir(parents=True, exist_ok=True)
        print(f"installing {MOCK} into {npm_dir}", flush=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(npm_dir), MOCK], check=True,
                       stdout=subprocess.DEVNULL)
    return cli


def fill_mock(base: str, n: int) -> None:
    """POST n distinct pins to the mock (it keeps them in memory only)."""

    async def main() -> None:
        headers = {"Authorization": f"Bearer {MOCK_TOKEN}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
            for i in range(n):
                r = await client.post("/pins", json={"cid": cid_of(i), "name": f"file-{i}"})
                r.raise_for_status()

    trio.run(main)


class Postgres:
    """A throwaway PostgreSQL server (as tests/run starts one), stopped and removed by :meth:`stop`."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: [int(x) for x in p.split("/")[-2].split(".") if x.isdigit()])
        if not bins:
            raise FileNotFoundError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
        self.bin = Path(bins[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="w3gate-bench-pg-"))
        self.root = os.getuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self._run("initdb", "-D", f"{self.dir}/data", "-A", "trust", "-U", "postgres")
        self._run("pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
                  "start")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd] if self.root else cmd, check=True,
                       stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", f"{self.dir}/data", "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def start(name: str, cmd: list[str], ready: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    out = open(log, "ab")
    # run from the log's folder: ``python -m`` puts the working directory first on sys.path, ahead of PYTHONPATH
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=log.parent)
    out.close()
    try:
        wait_ready(ready, proc)
    except SystemExit:
        raise SystemExit(f"{name} did not start; its output: {log}") from None
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pins", type=int, default=10_000, help="pins of the one user, in every service")
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--postgres", help="a postgres:// server URL (default: start a throwaway one)")
    parser.add_argument("--no-postgres", action="store_true", help="leave w3gate on PostgreSQL out")
    parser.add_argument("--no-mock", action="store_true", help="leave the npm mock out")
    parser.add_argument("--npm-dir", type=Path, default=NPM_DIR, help="where the npm mock is installed")
    parser.add_argument("--baseline", type=Path, metavar="TREE",
                        help="also run w3gate SQLite from this source tree (e.g. an earlier commit's), as a column")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="record py-spy profiles of the Python services' runs into DIR (they then run slower)")
    parser.add_argument("--py-spy-format", default="raw", choices=("raw", "speedscope", "flamegraph"),
                        help="raw: collapsed stacks, one per line with its sample count")
    args = parser.parse_args()
    for tool in ("wrk",) + (() if args.no_mock else ("node", "npm")):
        if not shutil.which(tool):
            raise SystemExit(f"bench_vs_floor.py needs {tool}")
    work = Path(tempfile.mkdtemp(prefix="w3gate-vs-floor-"))
    token = substrate_token("//BenchUser")
    servers: dict[str, tuple[subprocess.Popen, str, str | None]] = {}  # name -> (process, URL, Authorization)
    pg: Postgres | None = None
    try:
        port = free_port()
        servers["floor"] = (start("floor", [sys.executable, str(HERE / "quart_floor_app.py"), str(port)],
                                  f"http://127.0.0.1:{port}/psa/pins", work / "floor.log"),
                            f"http://127.0.0.1:{port}/psa/pins", "Bearer x")
        if not args.no_mock:
            cli = mock_cli(args.npm_dir)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = start("mock", ["node", str(cli), "--port", str(port), "--token", MOCK_TOKEN, "--loglevel", "error"],
                         base + "/pins", work / "mock.log")
            servers["npm mock"] = (proc, base + "/pins", f"Bearer {MOCK_TOKEN}")
            fill_mock(base, args.pins)
        databases = {"w3gate SQLite": f"sqlite://{work / 'sqlite' / 'w3gate.sqlite3'}"}
        if args.baseline:
            databases["baseline SQLite"] = f"sqlite://{work / 'baseline' / 'w3gate.sqlite3'}"
        if not args.no_postgres:
            try:
                pg_url = args.postgres or (pg := Postgres()).url
                databases["w3gate PostgreSQL"] = new_postgres_database(pg_url)
            except (FileNotFoundError, subprocess.CalledProcessError) as exc:
                print(f"PostgreSQL left out: {exc}")
        owner = owner_of(token)
        for name, db_url in databases.items():
            data_dir = work / ("baseline" if name.startswith("baseline") else name.split()[-1].lower())
            data_dir.mkdir(exist_ok=True)
            fill(db_url, owner, args.pins)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = {**os.environ, "W3GATE_DATABASE_URL": db_url, "W3GATE_LOG_LEVEL": "info", **UNBINDING_LIMITS}
            if name.startswith("baseline"):
                env["PYTHONPATH"] = str(args.baseline.resolve())
            proc = start(name, [sys.executable, "-m", "w3gate", "serve", "--port", str(port), "--data-dir",
                                str(data_dir)], base + "/healthz", data_dir / "server.log", env)
            servers[name] = (proc, base + "/psa/pins", token)
        results = run_rounds(servers, args, work)
        load = os.getloadavg()
    finally:
        for proc, _, _ in servers.values():
            stop_process(proc)
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(results, args, load)


def py_spy() -> str:
    """py-spy beside this Python (a venv's bin), else on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"


def run_rounds(servers: dict, args: argparse.Namespace, work: Path) -> dict[str, dict[str, list[dict]]]:
    results: dict[str, dict[str, list[dict]]] = {name: {"GET": [], "POST": []} for name in servers}
    names = list(servers)
    print(f"{len(names)} services, {args.pins} pins, {args.connections} connections, {args.rounds} rounds of "
          f"{args.seconds} s; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for method, lua in REQUESTS:
            for name in order:
                proc, url, auth = servers[name]
                spy = None
                if args.py_spy and name != "npm mock":
                    args.py_spy.mkdir(parents=True, exist_ok=True)
                    suffix = {"raw": "txt", "speedscope": "json", "flamegraph": "svg"}[args.py_spy_format]
                    out = args.py_spy / f"{name.replace(' ', '-').lower()}-{method.lower()}-{r + 1}.{suffix}"
                    spy = subprocess.Popen([py_spy(), "record", "--pid", str(proc.pid), "--format", args.py_spy_format,
                                            "--rate", "250", "-o", str(out)],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1)
                got = wrk(url, args.seconds, args.connections, auth, lua, pid=proc.pid)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(60)
                if got["errors"]:
                    raise SystemExit(f"{name} {method}: {got['errors']} non-2xx answers: not comparable")
                results[name][method].append(got)
                print(f"  round {r + 1} {method:4} {name:<18} {got['rps']:7.0f} req/s {got['cpu_us']:6.0f} us CPU",
                      flush=True)
    return results


def report(results: dict[str, dict[str, list[dict]]], args: argparse.Namespace, load: tuple[float, ...]) -> None:
    med = statistics.median
    floor = results["floor"]

    def ratio(name: str, method: str, key: str, base: dict[str, list[dict]]) -> float:
        return med(w[key] / b[key] for w, b in zip(results[name][method], base[method], strict=True))

    print(f"\nmedians of {args.rounds} rounds; ratios are medians of the per-round ratios; load average at the end "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| server | GET req/s | POST req/s | GET x floor | POST x floor | CPU us GET / POST |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        print(f"| {name} | {med(x['rps'] for x in runs['GET']):.0f} | {med(x['rps'] for x in runs['POST']):.0f} | "
              f"{ratio(name, 'GET', 'rps', floor):.2f} | {ratio(name, 'POST', 'rps', floor):.2f} | "
              f"{med(x['cpu_us'] for x in runs['GET']):.0f} / {med(x['cpu_us'] for x in runs['POST']):.0f} |")
    if "w3gate PostgreSQL" in results:
        sqlite = results["w3gate SQLite"]
        print(f"\nPostgreSQL CPU per request / SQLite's (the service process; PostgreSQL's own server not counted): "
              f"GET {ratio('w3gate PostgreSQL', 'GET', 'cpu_us', sqlite):.2f}, "
              f"POST {ratio('w3gate PostgreSQL', 'POST', 'cpu_us', sqlite):.2f}")
    if "baseline SQLite" in results:
        base = results["baseline SQLite"]
        now = "w3gate SQLite"
        print(f"w3gate SQLite / baseline SQLite: req/s GET {ratio(now, 'GET', 'rps', base):.2f}, "
              f"POST {ratio(now, 'POST', 'rps', base):.2f}; CPU per request GET "
              f"{ratio(now, 'GET', 'cpu_us', base):.2f}, POST {ratio(now, 'POST', 'cpu_us', base):.2f}")
    if "npm mock" in results:
        print(f"w3gate SQLite / npm mock, req/s: GET {ratio('w3gate SQLite', 'GET', 'rps', results['npm mock']):.2f}, "
              f"POST {ratio('w3gate SQLite', 'POST', 'rps', results['npm mock']):.2f}")


if __name__ == "__main__":
    main()
