"""What a request costs on PostgreSQL against SQLite, and whether a second instance on one PostgreSQL adds throughput.

Fills N pins for one user in a SQLite file and in a fresh PostgreSQL database, starts a real ``w3gate serve`` on
each, and drives them over loopback with wrk (Debian package ``wrk``): ``GET /pins`` (the default page of 10),
``GET /pins/{requestid}`` (100 of the user's pins in turn) and ``POST /pins`` (a new CID each). The two services
run side by side and each round measures both, one after the other, so that the machine's drift (and other work
on it) falls on both alike. Per request it reports:

- ``cpu us``: the service process's CPU seconds (user + system, all threads, /proc) over the requests it served.
  This is the figure compared (target: PostgreSQL within 1.5x of SQLite); it does not depend on what else loads
  the machine the way throughput does;
- ``pg us``: the PostgreSQL server's CPU (the postmaster and every child) per request, the database work SQLite does
  inside the service (``cpu+pg / SQLite`` compares the two together; it counts whatever else that server runs);
- ``stmts``: statements PostgreSQL ran per request (``pg_stat_statements`` when the server preloads it;
  ``BEGIN`` and ``COMMIT`` count);
- throughput and latency.

Then the scaling: one instance, then two on the same PostgreSQL database, each driven by its own wrk with half the
connections, ``--scale-seconds`` each, the throughput summed. It is a benchmark, not a test.

    python bench/bench_postgres.py --db postgres://postgres@127.0.0.1:5432/postgres
    python bench/bench_postgres.py --db postgres://... --rounds 5 --seconds 5 --no-scale
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import (  # noqa: E402
    POST_NEW_CIDS_LUA,
    cid_of,
    in_store,
    new_postgres_database,
    owner_of,
    start_process,
    stop_process,
    substrate_token,
    wrk,
)
from helpers import UNBINDING_LIMITS, free_port  # noqa: E402  (tests/, put on the path by bench_api)

GET_ONE_LUA = """
local ids = {%s}
local i = 0
request = function()
  i = i %% #ids + 1
  return wrk.format("GET", "/psa/pins/" .. ids[i])
end
"""

REQUESTS = ("GET /pins", "GET /pins/{id}", "POST /pins")
OTHER_OWNERS = 100  # other users, as many pins in all as the measured one, so that plans are chosen as in a service


def fill(db_url: str, owner: str, n: int) -> None:
    """n pins of ``owner`` and n of other users, each content with its order as the service keeps them (a quarter
    of them in each status; pinned orders with their chain info), in large transactions."""
    from w3gate.store.db import Database
    from w3gate.store.rawsql import Sql

    statuses = ("queued", "pinning", "pinned", "failed")
    pins_sql = orders_sql = ""

    async def insert(h: Any) -> None:
        nonlocal pins_sql, orders_sql
        sql = Sql(Database(db_url).dialect)
        pins_sql = (f"INSERT INTO pins (requestid, owner, cid, cid_key, name, status, created_ms, origins, meta) "
                    f"VALUES ({', '.join(sql.arg(None) for _ in range(9))})")
        sql = Sql(Database(db_url).dialect)
        orders_sql = (f"INSERT INTO orders (cid, cid_key, status, file_size, expires_at, replicas, created_ms, "
                      f"updated_ms) VALUES ({', '.join(sql.arg(None) for _ in range(8))})")
        base = int(time.time() * 1000) - 2 * n - 10_000
        step = 20_000
        for start in range(0, 2 * n, step):
            pins, orders = [], []
            for i in range(start, min(2 * n, start + step)):
                who = owner if i % 2 else f"substrate:0x{i // 2 % OTHER_OWNERS:064x}"
                status = statuses[i // 2 % 4]
                pins.append([str(uuid.uuid4()), who, cid_of(i), cid_of(i), f"file-{i}", status, base + i, "[]", "{}"])
                placed = status in ("pinning", "pinned")
                orders.append([cid_of(i), cid_of(i), status, 1024 + i if placed else None, 5_000_000 + i if placed
                               else None, 3 if status == "pinned" else None, base + i, base + i])
            async with h.transaction() as tx:
                await tx.execute_many(pins_sql, pins)
                await tx.execute_many(orders_sql, orders)
        await h.client.execute_script("ANALYZE")

    in_store(db_url, insert)


class PgServer:
    """The PostgreSQL server behind ``url``: its processes' CPU and its statement counts."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.postmaster = self._postmaster()
        try:
            self._query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            self._query("SELECT pg_stat_statements_reset()")
            self.statements = True
        except Exception:  # noqa: BLE001 - not preloaded (shared_preload_libraries): no counts
            self.statements = False

    def _postmaster(self) -> psutil.Process | None:
        """The server's main process: the parent of this connection's backend (looked up while it lives)."""
        import asyncio

        import asyncpg

        async def run() -> psutil.Process | None:
            conn = await asyncpg.connect(self.url)
            try:
                return psutil.Process(await conn.fetchval("SELECT pg_backend_pid()")).parent()
            except psutil.Error:  # not on this machine, or not ours to read
                return None
            finally:
                await conn.close()

        return asyncio.run(run())

    def _query(self, sql: str) -> list[Any]:
        import asyncio

        import asyncpg

        async def run() -> list[Any]:
            conn = await asyncpg.connect(self.url)
            try:
                return list(await conn.fetch(sql))
            finally:
                await conn.close()

        return asyncio.run(run())

    def cpu_s(self) -> float:
        if self.postmaster is None:
            return 0.0
        total = 0.0
        for proc in [self.postmaster, *self.postmaster.children()]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:  # a backend that just ended
                pass
        return total

    def sample_backends(self, running: Any) -> list[tuple[int, int]]:
        """(active backends, of which waiting on a lock) of this database every 0.1 s while ``running()``."""
        import asyncio

        import asyncpg

        async def run() -> list[tuple[int, int]]:
            conn = await asyncpg.connect(self.url)
            samples = []
            try:
                while running():
                    row = await conn.fetchrow(
                        "SELECT count(*) FILTER (WHERE state = 'active'), count(*) FILTER (WHERE state = 'active' "
                        "AND wait_event_type = 'Lock') FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()")
                    samples.append((row[0], row[1]))
                    await asyncio.sleep(0.1)
            finally:
                await conn.close()
            return samples

        return asyncio.run(run())

    def calls(self) -> int:
        """Statements run so far in this database, this counter's own queries left out."""
        if not self.statements:
            return 0
        rows = self._query("SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements s JOIN pg_database d "
                           "ON d.oid = s.dbid WHERE d.datname = current_database() "
                           "AND s.query NOT ILIKE '%pg_stat_statements%' AND s.query NOT ILIKE '%pg_backend_pid%'")
        return int(rows[0][0])


class Service:
    """One ``w3gate serve`` on ``db_url``."""

    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "W3GATE_DATABASE_URL": db_url, "W3GATE_LOG_LEVEL": "warning", **UNBINDING_LIMITS}
        self.proc = start_process(["-m", "w3gate", "serve", "--port", str(self.port), "--data-dir", str(data_dir)],
                                  self.base + "/healthz", env)
        self.ps = psutil.Process(self.proc.pid)

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        stop_process(self.proc)


def script_for(label: str, ids: list[str]) -> tuple[str, str | None]:
    if label == "GET /pins":
        return "/psa/pins", None
    if label == "GET /pins/{id}":
        return "/psa/pins", GET_ONE_LUA % ", ".join(f'"{i}"' for i in ids)
    return "/psa/pins", POST_NEW_CIDS_LUA


def measure(service: Service, pg: PgServer | None, label: str, ids: list[str], args: argparse.Namespace,
            token: str) -> dict[str, float]:
    path, lua = script_for(label, ids)
    cpu0, pg0, calls0 = service.cpu_s(), pg.cpu_s() if pg else 0.0, pg.calls() if pg else 0
    run = wrk(service.base + path, args.seconds, args.connections, token, lua)
    requests = run["rps"] * args.seconds  # wrk's own count is what its rate is made of
    run["cpu_us"] = (service.cpu_s() - cpu0) / requests * 1e6
    run["pg_us"] = (pg.cpu_s() - pg0) / requests * 1e6 if pg else 0.0
    run["stmts"] = (pg.calls() - calls0) / requests if pg and pg.statements else float("nan")
    return run


def concurrent_wrk(services: list[Service], pg: PgServer, args: argparse.Namespace, token: str, path: str,
                   lua: str | None) -> dict[str, Any]:
    """wrk against every service at once (connections split): the summed req/s, each service's CPU us/req, the
    machine's idle share meanwhile, and PostgreSQL's backends of this database sampled every 0.1 s (active, and
    waiting on a lock: one user's POSTs all update that user's ``pin_counts`` rows)."""
    per = max(1, args.connections // len(services))
    script = None
    if lua:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(lua)
        script.close()
    cpu0 = [s.cpu_s() for s in services]
    machine0 = psutil.cpu_times()
    procs = [subprocess.Popen(["wrk", "-t1", f"-c{per}", f"-d{args.scale_seconds}s", "-H", f"Authorization: {token}",
                               *(["-s", script.name] if script else []), s.base + path],
                              stdout=subprocess.PIPE, text=True) for s in services]
    samples = pg.sample_backends(lambda: all(p.poll() is None for p in procs))
    outs = [p.communicate()[0] for p in procs]
    machine1 = psutil.cpu_times()
    if script:
        os.unlink(script.name)
    rates = []
    for out in outs:
        line = next(line for line in out.splitlines() if line.startswith("Requests/sec:"))
        rates.append(float(line.split()[1]))
    cpu = [(s.cpu_s() - c) / (r * args.scale_seconds) * 1e6 for s, c, r in zip(services, cpu0, rates, strict=True)]
    idle = [getattr(machine1, f) - getattr(machine0, f) for f in ("idle", "iowait")]
    total = sum(machine1) - sum(machine0)
    return {"rps": sum(rates), "cpu": cpu, "idle": sum(idle) / total if total else 0.0,
            "active": statistics.fmean(a for a, _ in samples) if samples else 0.0,
            "locked": statistics.fmean(w for _, w in samples) if samples else 0.0}


def first_ids(service: Service, token: str, n: int = 100) -> list[str]:
    body = httpx.get(service.base + f"/psa/pins?limit={n}", headers={"Authorization": token}, timeout=30).json()
    return [r["requestid"] for r in body["results"]]


def print_comparison(results: dict[tuple[str, str], list[dict[str, float]]], args: argparse.Namespace,
                     dbs: list[str]) -> None:
    med = statistics.median
    print(f"{args.pins} pins, {args.connections} connections, {args.rounds} rounds of {args.seconds} s per "
          f"request and database, medians; load average {os.getloadavg()[0]:.1f}")
    print(f"{'request':<16} {'database':<9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>7} "
          f"{'pg us':>7} {'stmts':>6} {'cpu / SQLite':>12} {'cpu+pg / SQLite':>15}")
    for label in REQUESTS:
        base_cpu = med(r["cpu_us"] for r in results[("sqlite", label)])
        for db in dbs:
            runs = results[(db, label)]
            cpu, pg_cpu = med(r["cpu_us"] for r in runs), med(r["pg_us"] for r in runs)
            print(f"{label:<16} {db:<9} {med(r['rps'] for r in runs):>7.0f} {med(r['p50'] for r in runs):>7.1f} "
                  f"{med(r['p99'] for r in runs):>7.1f} {cpu:>7.0f} {pg_cpu:>7.0f} "
                  f"{med(r['stmts'] for r in runs):>6.2f} {cpu / base_cpu:>12.2f} "
                  f"{(cpu + pg_cpu) / base_cpu:>15.2f}")
        errors = sum(r["errors"] for db in dbs for r in results[(db, label)])
        if errors:
            print(f"  {label}: {errors} non-2xx answers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="a postgres:// server URL (a fresh database is made on it)")
    parser.add_argument("--pins", type=int, default=10_000, help="pins of the one user in each database")
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (SQLite, PostgreSQL) runs per request")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--scale-seconds", type=int, default=10, help="length of each scaling run")
    parser.add_argument("--no-scale", action="store_true", help="skip the one-vs-two-instances runs")
    parser.add_argument("--scale-only", action="store_true", help="only the one-vs-two-instances runs")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench_postgres.py needs wrk (Debian: apt-get install wrk)")
    token = substrate_token("//BenchUser")
    owner = owner_of(token)
    data_dirs = [Path(tempfile.mkdtemp(prefix="w3gate-bench-")) for _ in range(3)]
    sqlite_url = f"sqlite://{data_dirs[0] / 'w3gate.sqlite3'}"
    pg_url = new_postgres_database(args.db)
    fill(sqlite_url, owner, args.pins)
    fill(pg_url, owner, args.pins)
    pg = PgServer(pg_url)
    services = {"sqlite": Service(sqlite_url, data_dirs[0]), "postgres": Service(pg_url, data_dirs[1])}
    second: Service | None = None
    try:
        ids = {db: first_ids(s, token) for db, s in services.items()}
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(0 if args.scale_only else args.rounds):
            for label in REQUESTS:
                for db, service in services.items():
                    run = measure(service, pg if db == "postgres" else None, label, ids[db], args, token)
                    results.setdefault((db, label), []).append(run)
        if not args.scale_only:
            print_comparison(results, args, list(services))
        if args.no_scale:
            return
        services["sqlite"].stop()
        del services["sqlite"]
        second = Service(pg_url, data_dirs[2])
        print(f"\nscaling on PostgreSQL: {args.connections} connections in all, {args.scale_seconds} s runs "
              "(one wrk per instance), one instance then two, twice")
        for label in ("GET /pins", "POST /pins"):
            path, lua = script_for(label, [])
            for _ in range(2):
                for group in ([services["postgres"]], [services["postgres"], second]):
                    r = concurrent_wrk(group, pg, args, token, path, lua)
                    print(f"{label:<12} {len(group)} instance{'s' if len(group) > 1 else ' '} {r['rps']:>6.0f} req/s  "
                          f"cpu us {', '.join(f'{c:.0f}' for c in r['cpu']):<11}  machine idle {r['idle']:>4.0%}  "
                          f"PostgreSQL backends active {r['active']:.1f}, on a lock {r['locked']:.1f}  "
                          f"load average {os.getloadavg()[0]:.1f}")
    finally:
        for service in [*services.values(), *([second] if second else [])]:
            service.stop()
        for d in data_dirs:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
