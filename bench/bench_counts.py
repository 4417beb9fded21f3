"""Benchmark (not a test): the /healthz order counts on SQLite with N orders, and how long the service's
trio thread stalls meanwhile (a 1 ms sleeper's worst lateness).

    .venv/bin/python bench/bench_counts.py [--orders 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trio

from w3gate.store import orders
from w3gate.store.db import Database
from w3gate.store.models import Order

STATUSES = ["pinned"] * 8 + ["pinning", "queued"]


async def fill(h, start: int, n: int) -> None:
    await Order.bulk_create([Order(cid=f"bafy{i:010d}", status=STATUSES[i % 10], created_ms=i, updated_ms=i)
                             for i in range(start, start + n)], batch_size=5000)


async def main(n: int) -> None:
    db = Database(f"sqlite://{Path(tempfile.mkdtemp()) / 'bench.sqlite3'}")
    await db.open()
    try:
        for start in range(0, n, 50_000):
            await db.run(fill, start, min(50_000, n - start))
        worst, done = 0.0, False

        async def sleeper() -> None:
            nonlocal worst
            while not done:
                t = time.perf_counter()
                await trio.sleep(0.001)
                worst = max(worst, time.perf_counter() - t)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper)
            took = []
            for _ in range(5):
                t = time.perf_counter()
                counts = await orders.counts(db)
                took.append(time.perf_counter() - t)
            done = True
        print(f"{n} orders: counts {sorted(took)[2] * 1000:.0f} ms (median of 5) {counts}; "
              f"longest stall of the trio thread meanwhile {worst * 1000:.1f} ms")
    finally:
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    trio.run(main, parser.parse_args().orders)
