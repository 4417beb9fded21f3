"""Pinning Service API throughput and latency, with auth, at several database sizes.

Fills N pins for one user straight into the store, starts a real ``w3gate serve``, and drives it over
loopback with wrk (Debian package ``wrk``): GET /pins (the default and a status-filtered page) and
POST /pins. The same machine's bare trio ASGI hello-world behind Hypercorn is the ceiling. Prints a
table; it is a benchmark, not a test.

    python bench/bench_api.py                                  # SQLite, 10k and 1M pins
    python bench/bench_api.py --pins 10000 --db postgres://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from helpers import free_port, new_postgres_database, substrate_token  # noqa: E402

CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def wrk(url: str, seconds: int, connections: int, header: str | None = None, post_body: str | None = None) -> dict:
    """Run wrk; return requests/s and p50/p99 latency in ms."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    script = None
    if header:
        args += ["-H", f"Authorization: {header}"]
    if post_body is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(post_body)}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
        script.close()
        args += ["-s", script.name]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    if script:
        os.unlink(script.name)

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": ms("50"), "p99": ms("99"), "errors": int(non2xx.group(1)) if non2xx else 0}


def wait_ready(url: str, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("server not ready")


def fill(db_url: str, owner: str, n: int) -> None:
    """Insert n pins for owner (a quarter in each status), in large transactions."""
    from tortoise import connections

    from w3gate.store.db import Database

    async def insert() -> None:
        conn = connections.get("default")
        dialect = "sqlite" if db_url.startswith("sqlite") else "postgres"
        ph = (lambda i: "?") if dialect == "sqlite" else (lambda i: f"${i}")
        sql = ("INSERT INTO pins (requestid, owner, cid, name, status, created_ms, origins, meta) VALUES "
               f"({', '.join(ph(i) for i in range(1, 9))})")
        base = int(time.time() * 1000) - n - 10_000
        statuses = ("queued", "pinning", "pinned", "failed")
        step = 20_000
        for start in range(0, n, step):
            rows = [[str(uuid.uuid4()), owner, cid_of(i), f"file-{i}", statuses[i % 4], base + i, "[]", "{}"]
                    for i in range(start, min(n, start + step))]
            async with __import__("tortoise.transactions", fromlist=["in_transaction"]).in_transaction() as tx:
                await tx.execute_many(sql, rows)
        await conn.execute_script("ANALYZE")

    async def main() -> None:
        db = Database(db_url)
        await db.open()
        try:
            await db.run(insert)
        finally:
            await db.close()

    trio.run(main)


def cid_of(i: int) -> str:
    """A distinct CIDv1 (raw, sha2-256) per pin, as real data has."""
    digest = hashlib.sha256(i.to_bytes(8, "big")).digest()
    return "b" + base64.b32encode(b"\x01\x55\x12\x20" + digest).decode().lower().rstrip("=")


def owner_of(token: str) -> str:
    from w3gate.plugins import load_chains
    from w3gate.w3auth.authenticator import Authenticator

    return Authenticator(load_chains()).authenticate_sync(token).user_key


def bench_w3gate(n: int, db: str, seconds: int, connections: int, token: str) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="w3gate-bench-"))
    db_url = f"sqlite://{data_dir / 'w3gate.sqlite3'}" if db == "sqlite" else new_postgres_database(db)
    started = time.monotonic()
    fill(db_url, owner_of(token), n)
    fill_s = time.monotonic() - started
    port = free_port()
    env = {**os.environ, "W3GATE_DATABASE_URL": db_url, "W3GATE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "w3gate", "serve", "--port", str(port), "--data-dir",
                             str(data_dir)], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/healthz", proc)
        result = {
            "fill_s": fill_s,
            "get_default": wrk(base + "/psa/pins", seconds, connections, token),
            "get_status": wrk(base + "/psa/pins?status=queued,pinning&limit=10", seconds, connections, token),
            "post": wrk(base + "/psa/pins", seconds, connections, token, json.dumps({"cid": CID, "name": "b"})),
        }
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)
    return result


def bench_ceiling(seconds: int, connections: int) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "hello_asgi.py"), str(port)])
    try:
        wait_ready(f"http://127.0.0.1:{port}/", proc)
        return wrk(f"http://127.0.0.1:{port}/", seconds, connections)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pins", default="10000,1000000", help="comma list of database sizes")
    parser.add_argument("--db", default="sqlite", help="sqlite, or a postgres:// server URL")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench_api.py needs wrk (Debian: apt-get install wrk)")
    token = substrate_token("//BenchUser")
    ceiling = bench_ceiling(args.seconds, args.connections)
    print(f"ceiling (trio ASGI hello-world): {ceiling['rps']:.0f} req/s, p50 {ceiling['p50']:.2f} ms, "
          f"p99 {ceiling['p99']:.2f} ms")
    print(f"database: {'sqlite' if args.db == 'sqlite' else 'postgresql'}, {args.connections} connections, "
          f"{args.seconds} s per run")
    print(f"{'pins':>9} {'request':<28} {'req/s':>8} {'x ceil':>7} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for n in [int(x) for x in args.pins.split(",")]:
        r = bench_w3gate(n, args.db, args.seconds, args.connections, token)
        for label, key in (("GET /pins (default)", "get_default"),
                           ("GET /pins?status=q,p&limit=10", "get_status"), ("POST /pins", "post")):
            m = r[key]
            print(f"{n:>9} {label:<28} {m['rps']:>8.0f} {m['rps'] / ceiling['rps']:>7.2f} {m['p50']:>8.2f} "
                  f"{m['p99']:>8.2f} {m['errors']:>8}")
        print(f"{n:>9} (filled in {r['fill_s']:.1f} s)")


if __name__ == "__main__":
    main()
