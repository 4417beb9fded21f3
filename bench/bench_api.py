"""Pinning Service API throughput and latency, with auth, at several database sizes.

Fills N pins for one user straight into the store, starts a real ``w3gate serve``, and drives it over
loopback with wrk (Debian package ``wrk``): GET /pins (the default and a status-filtered page) and
POST /pins, each POST a new CID as real clients send. The ceiling is the same machine's bare trio ASGI
hello-world behind Hypercorn. The machine's speed drifts from minute to minute, so every w3gate run is
paired with a ceiling run just before it, ``--rounds`` times, and the table gives medians: req/s, the
paired ratio to the ceiling, latency, and the server's CPU time per request (all its threads, from
/proc), which drifts least. It is a benchmark, not a test.

    python bench/bench_api.py                                  # SQLite, 10k and 1M pins
    python bench/bench_api.py --pins 10000 --db postgres://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from helpers import UNBINDING_LIMITS, free_port, new_postgres_database, substrate_token  # noqa: E402

# A new CIDv1 (raw, sha2-256 multihash of random bytes, base32) for every POST: validating and storing
# distinct CIDs is what real clients cost, a repeated one would flatter any cache on the way.
POST_NEW_CIDS_LUA = """
local alphabet = "abcdefghijklmnopqrstuvwxyz234567"
local function base32(s)
  local out, buffer, bits = {}, 0, 0
  for i = 1, #s do
    buffer = bit.bor(bit.lshift(buffer, 8), s:byte(i)); bits = bits + 8
    while bits >= 5 do
      bits = bits - 5
      local i5 = bit.band(bit.rshift(buffer, bits), 31)
      out[#out + 1] = alphabet:sub(i5 + 1, i5 + 1)
    end
    buffer = bit.band(buffer, bit.lshift(1, bits) - 1)
  end
  if bits > 0 then
    local i5 = bit.band(bit.lshift(buffer, 5 - bits), 31)
    out[#out + 1] = alphabet:sub(i5 + 1, i5 + 1)
  end
  return table.concat(out)
end
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
wrk.headers["Content-Type"] = "application/json"  -- added to the Authorization header given with -H
request = function()
  local digest = {}
  for i = 1, 32 do digest[i] = string.char(math.random(0, 255)) end
  local cid = "b" .. base32(string.char(1, 0x55, 0x12, 0x20) .. table.concat(digest))
  return wrk.format("POST", nil, nil, '{"cid":"' .. cid .. '","name":"bench"}')
end
"""


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: int, connections: int, header: str | None = None, lua: str | None = None,
        pid: int | None = None) -> dict:
    """Run wrk; return requests/s, p50/p99 latency in ms, and the server's CPU us per request."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    script = None
    if header:
        args += ["-H", f"Authorization: {header}"]
    if lua is not None:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        script.write(lua)
        script.close()
        args += ["-s", script.name]
    cpu_before = process_cpu_s(pid) if pid else 0.0
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    cpu_used = process_cpu_s(pid) - cpu_before if pid else 0.0
    if script:
        os.unlink(script.name)

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": ms("50"), "p99": ms("99"), "errors": int(non2xx.group(1)) if non2xx else 0,
            "cpu_us": cpu_used / max(requests, 1) * 1e6}


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
    async def insert(h: Any) -> None:
        conn = h.client
        dialect = "sqlite" if db_url.startswith("sqlite") else "postgres"
        ph = (lambda i: "?") if dialect == "sqlite" else (lambda i: f"${i}")
        sql = ("INSERT INTO pins (requestid, owner, cid, cid_key, name, status, created_ms, origins, meta) VALUES "
               f"({', '.join(ph(i) for i in range(1, 10))})")
        base = int(time.time() * 1000) - n - 10_000
        statuses = ("queued", "pinning", "pinned", "failed")
        step = 20_000
        for start in range(0, n, step):
            rows = [[str(uuid.uuid4()), owner, cid_of(i), cid_of(i), f"file-{i}", statuses[i % 4], base + i, "[]", "{}"]
                    for i in range(start, min(n, start + step))]
            async with h.transaction() as tx:
                await tx.execute_many(sql, rows)
        await conn.execute_script("ANALYZE")

    in_store(db_url, insert)


def in_store(db_url: str, work: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``work(handle)`` (an asyncio coroutine function of the ORM's loop) once on the store at ``db_url``."""
    from w3gate.store.db import Database

    async def main() -> None:
        db = Database(db_url)
        await db.open()
        try:
            await db.run(work)
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


REQUESTS = (  # label, path, wrk script
    ("GET /pins (default)", "/psa/pins", None),
    ("GET /pins?status=q,p&limit=10", "/psa/pins?status=queued,pinning&limit=10", None),
    ("POST /pins (new CID each)", "/psa/pins", POST_NEW_CIDS_LUA),
)


def start_process(args: list[str], ready_url: str, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> subprocess.Popen:
    """Start ``python args`` (in ``cwd``: ``python -m`` puts the working directory ahead of PYTHONPATH)."""
    proc = subprocess.Popen([sys.executable, *args], env=env, cwd=cwd)
    wait_ready(ready_url, proc)
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


def bench_size(n: int, db: str, args: argparse.Namespace, token: str) -> dict:
    """Fill n pins, then measure each request ``args.rounds`` times, each run paired with a ceiling run."""
    data_dir = Path(tempfile.mkdtemp(prefix="w3gate-bench-"))
    db_url = f"sqlite://{data_dir / 'w3gate.sqlite3'}" if db == "sqlite" else new_postgres_database(db)
    started = time.monotonic()
    fill(db_url, owner_of(token), n)
    result: dict = {"fill_s": time.monotonic() - started}
    port, ceiling_port = free_port(), free_port()
    base, ceiling_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ceiling_port}/"
    env = {**os.environ, "W3GATE_DATABASE_URL": db_url, "W3GATE_LOG_LEVEL": "warning", **UNBINDING_LIMITS}
    server = start_process(["-m", "w3gate", "serve", "--port", str(port), "--data-dir", str(data_dir)],
                           base + "/healthz", env)
    ceiling = start_process([str(Path(__file__).parent / "hello_asgi.py"), str(ceiling_port)], ceiling_url)
    try:
        for label, path, lua in REQUESTS:
            runs = []
            for _ in range(args.rounds):
                c = wrk(ceiling_url, args.seconds, args.connections, pid=ceiling.pid)
                w = wrk(base + path, args.seconds, args.connections, token, lua, pid=server.pid)
                runs.append((c, w))
            result[label] = runs
    finally:
        stop_process(server)
        stop_process(ceiling)
        shutil.rmtree(data_dir, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pins", default="10000,1000000", help="comma list of database sizes")
    parser.add_argument("--db", default="sqlite", help="sqlite, or a postgres:// server URL")
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="paired (ceiling, w3gate) runs per request")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench_api.py needs wrk (Debian: apt-get install wrk)")
    token = substrate_token("//BenchUser")
    print(f"database: {'sqlite' if args.db == 'sqlite' else 'postgresql'}, {args.connections} connections, "
          f"{args.rounds} paired rounds of {args.seconds} s; medians")
    print(f"{'pins':>9} {'request':<30} {'req/s':>7} {'x ceil':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'cpu us':>7} {'ceil req/s':>10} {'ceil cpu us':>11} {'non-2xx':>7}")
    med = statistics.median
    for n in [int(x) for x in args.pins.split(",")]:
        r = bench_size(n, args.db, args, token)
        for label, _, _ in REQUESTS:
            runs = r[label]
            print(f"{n:>9} {label:<30} {med(w['rps'] for _, w in runs):>7.0f} "
                  f"{med(w['rps'] / c['rps'] for c, w in runs):>7.2f} {med(w['p50'] for _, w in runs):>7.2f} "
                  f"{med(w['p99'] for _, w in runs):>7.2f} {med(w['cpu_us'] for _, w in runs):>7.0f} "
                  f"{med(c['rps'] for c, _ in runs):>10.0f} {med(c['cpu_us'] for c, _ in runs):>11.0f} "
                  f"{sum(w['errors'] for _, w in runs):>7}")
        print(f"{n:>9} (filled in {r['fill_s']:.1f} s)")


if __name__ == "__main__":
    main()
