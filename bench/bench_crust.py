"""Benchmark on the real Crust runtime (not a test): orders per block, batched vs one extrinsic each,
and the status poller's cost (round trips, bytes, this process's CPU) for N pinning CIDs whose records carry
replica maps: the first pass, a steady-state pass (no record changed), and a pass after 1% of records changed.

    .venv/bin/python bench/bench_crust.py [--runtime mainnet|rocky] [--poll-cids 10000] [--replicas 30]

Starts ../shared/crust-devchain/run on a free port (W3GATE_SHARED_DIR overrides ../shared).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from devchain_fixtures import Devchain, _free_port  # noqa: E402

from w3gate.crust.client import CrustClient  # noqa: E402


def count_orders(chain: Devchain, client: CrustClient, block_hash: str) -> int:
    events = client.substrate.get_events(block_hash)
    return sum(1 for e in events if (e.value["module_id"], e.value["event_id"]) == ("Market", "FileSuccess"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=300)
    ap.add_argument("--singles", type=int, default=300)
    ap.add_argument("--poll-cids", type=int, default=10_000)
    ap.add_argument("--poll-batch", type=int, default=2000)
    ap.add_argument("--replicas", type=int, default=30, help="mean replicas per record (0..2x, uniform)")
    ap.add_argument("--runtime", default="mainnet", choices=["mainnet", "rocky"])
    args = ap.parse_args()

    chain = Devchain(_free_port(), Path(tempfile.mkdtemp()) / "chopsticks.log", args.runtime)
    chain.start()
    try:
        settings = chain.settings(W3GATE_CRUST_POLL_BATCH_SIZE=str(args.poll_batch), W3GATE_CRUST_ERA_PERIOD="4096")
        client = CrustClient(settings)
        client.connect()
        chain.fund(client.address, 10**20)
        chain.market_on()

        # batched: one Utility.batch of N orders
        nonce = client.account().nonce
        items = [(f"bafybatch{i:06d}", 1024) for i in range(args.batch)]
        t = time.perf_counter()
        signed = client.sign_batch(items, nonce, client.finalized_head())
        sign_s = time.perf_counter() - t
        t = time.perf_counter()
        block = chain.new_block([signed.extrinsic])
        build_s = time.perf_counter() - t
        batched = count_orders(chain, client, block)
        print(f"batched: {batched} orders in 1 block (1 extrinsic, {len(signed.extrinsic) // 2} bytes; "
              f"sign {sign_s:.2f} s, block build {build_s:.2f} s)")

        # one at a time: N single-order extrinsics offered to one block
        nonce = client.account().nonce
        head = client.finalized_head()
        t = time.perf_counter()
        singles = [client.sign_batch([(f"bafysingle{i:06d}", 1024)], nonce + i, head).extrinsic
                   for i in range(args.singles)]
        sign_s = time.perf_counter() - t
        t = time.perf_counter()
        block = chain.new_block(singles)
        build_s = time.perf_counter() - t
        single = count_orders(chain, client, block)
        print(f"one at a time: {single} orders in 1 block out of {args.singles} extrinsics offered "
              f"(sign {sign_s:.2f} s, block build {build_s:.2f} s)")

        # poll cost: N pinning CIDs with records on chain
        n = args.poll_cids
        cids = [f"bafypoll{i:06d}" for i in range(n)]
        step = args.batch  # what fits one block (a 1000-order batch exceeds the block weight)
        for start in range(0, n, step):
            nonce = client.account().nonce
            signed = client.sign_batch([(c, 1024) for c in cids[start:start + step]], nonce, client.finalized_head())
            chain.new_block([signed.extrinsic])
        t = time.perf_counter()
        written = write_replicas(chain, client, cids, args.replicas)
        print(f"records: {n} with 0..{2 * args.replicas} replicas (mean {args.replicas}), {written / 1e6:.1f} MB "
              f"written with dev_setStorage in {time.perf_counter() - t:.0f} s")
        client.close()
        trio.run(poll_bench, chain, settings, cids, args.replicas)
    finally:
        chain.stop()


def write_replicas(chain: Devchain, client: CrustClient, cids: list[str], mean: int, seed: int = 7) -> int:
    """Give each placed record a replica map as storage nodes' reports leave it (there are none locally)."""
    import random

    from scalecodec.base import ScaleBytes

    rng = random.Random(seed)
    s = client.substrate
    total = 0
    for start in range(0, len(cids), 500):
        chunk = cids[start:start + 500]
        keys = [client.file_key(c) for c in chunk]
        raw = chain.rpc("state_queryStorageAt", [keys])[0]["changes"]
        pairs = []
        for key, value in raw:
            obj = s.runtime_config.create_scale_object(client._files_value_type)
            decoded = obj.decode(ScaleBytes(value))
            info = decoded[0] if isinstance(decoded, (list, tuple)) else decoded
            count = rng.randint(0, 2 * mean)
            template = {"who": client.address, "valid_at": 1, "anchor": "0x" + "ab" * 64, "is_reported": True}
            if "spower" in info:
                template["created_at"] = 1
            info["replicas"] = [dict(template) for _ in range(count)]
            info["reported_replica_count"] = count
            encoded = s.runtime_config.create_scale_object(client._files_value_type).encode(decoded).to_hex()
            total += len(encoded) // 2
            pairs.append((key, encoded))
        chain.set_storage(pairs)
    return total


async def poll_bench(chain, settings, cids, mean) -> None:
    from w3gate.ordering.connection import ChainConnection
    from w3gate.ordering.poller import Poller
    from w3gate.store.db import Database
    from w3gate.store.models import Order, Pin

    tmp = Path(tempfile.mkdtemp())
    db = Database(f"sqlite://{tmp / 'bench.sqlite3'}")
    await db.open()

    async def fill(h) -> None:
        await Order.bulk_create([Order(cid=c, status="pinning", submitted_ms=int(time.time() * 1000),
                                       created_ms=i, updated_ms=i) for i, c in enumerate(cids)], batch_size=1000)
        await Pin.bulk_create([Pin(requestid=f"{i:036d}", owner="bench", cid=c, status="pinning", created_ms=i)
                               for i, c in enumerate(cids)], batch_size=1000)  # only wanted orders are polled

    await db.run(fill)
    conn = ChainConnection(settings, "bench")
    poller = Poller(db, settings, conn)
    await conn.ensure()
    calls = {"n": 0}
    original = conn.client.substrate.rpc_request

    def counting(method, params, *a, **kw):
        calls["n"] += 1
        return original(method, params, *a, **kw)

    conn.client.substrate.rpc_request = counting
    # the first pass learns the record size; the second is the steady state; before the third, 1% of the
    # records change (a replica reported), as storage nodes' reports do between passes
    for round_ in ("first", "steady", "1% changed"):
        if round_ == "1% changed":
            write_replicas(chain, conn.client, cids[::100], mean, seed=8)
        calls["n"] = 0
        t, cpu = time.perf_counter(), time.process_time()
        stats = await poller.poll_once()
        took, cpu = time.perf_counter() - t, time.process_time() - cpu
        print(f"poll ({round_}): {cpu:.2f} s CPU, {stats['orders']} pinning CIDs, {stats['records']} records read, "
              f"{calls['n']} RPC round trips, {stats['bytes'] / 1e6:.1f} MB of records "
              f"(largest answer {stats['largest_answer'] / 1e6:.2f} MB; "
              f"poll_bytes {settings.poll_bytes / 1e6:.1f} MB, record mean {poller.status.record_bytes:.0f} B), "
              f"{took:.2f} s, "
              f"{stats['updated']} orders updated")
    await conn.call(conn.client.close)
    await db.close()


if __name__ == "__main__":
    main()
