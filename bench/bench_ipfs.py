"""IPFS figures, with real js-ipfs nodes on loopback (/work/shared/ipfs-devnode) and a real ``w3gate serve``.

(a) ``upload``: memory of uploads streamed through ``POST /api/v0/add`` to a node. The body is made on the
    fly by the client (random bytes, an httpx generator; nothing is written to disk but the node's repo),
    while this process samples the w3gate process's RSS (psutil, every 20 ms). Flat means the body is never
    held: the peak should not grow with the size.
(b) ``fetch``: throughput of one node fetching from another over bitswap: N MB of random bytes added on
    node A, then timed ``pin/add`` on node B after ``swarm/connect`` (what w3gate's node does for a pin whose
    content is on the user's node).
(c) ``ordered``: seconds from ``POST /psa/pins`` to the content fetched and measured, and to the pin's order
    placed (``pinning``), with everything started here: the Crust devchain (../shared/crust-devchain, as
    tests/devchain_fixtures.py starts it, with its submission relay; Alice funded as the ordering account),
    a user's node holding the content (the pin's origin) and the service's node w3gate drives.

    python bench/bench_ipfs.py upload [--sizes 64,256,1024]      # MiB
    python bench/bench_ipfs.py fetch [--sizes 20,100]            # MB
    python bench/bench_ipfs.py ordered [--count 10] [--size 1000000] [--runtime mainnet|rocky]

Every node's repository is a temporary directory, deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import start_process, stop_process  # noqa: E402  (puts tests/ on the path)
from helpers import UNBINDING_LIMITS, free_port, substrate_token  # noqa: E402
from ipfs_fixtures import devnode  # noqa: E402

MiB = 1024 * 1024
BOUNDARY = "w3gate-bench-boundary"


def multipart(size: int) -> tuple[int, Iterator[bytes]]:
    """(length, chunks) of a multipart/form-data body holding one file of ``size`` random bytes."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def chunks() -> Iterator[bytes]:
        yield head
        left = size
        while left:
            n = min(MiB, left)
            yield os.urandom(n)
            left -= n
        yield tail

    return len(head) + size + len(tail), chunks()


class PeakRss:
    """The peak resident set size of a process, sampled every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def bench_upload(sizes_mib: list[int]) -> None:
    with devnode() as node:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        data_dir = Path(node.repo).parent / "w3gate"
        env = {**os.environ, **UNBINDING_LIMITS, "W3GATE_LOG_LEVEL": "warning", "W3GATE_IPFS_RPC_URL": node.rpc_url,
               "W3GATE_IPFS_MAX_UPLOAD_BYTES": str(max(sizes_mib) * MiB + MiB)}
        server = start_process(["-m", "w3gate", "serve", "--port", str(port), "--data-dir", str(data_dir)],
                               base + "/healthz", env)
        token = substrate_token("//BenchUpload")
        try:
            idle = psutil.Process(server.pid).memory_info().rss
            print(f"w3gate RSS before any upload: {idle / MiB:.1f} MiB")
            for size in sizes_mib:
                length, body = multipart(size * MiB)
                with PeakRss(server.pid) as rss:
                    started = time.perf_counter()
                    resp = httpx.post(base + "/api/v0/add", content=body, timeout=3600, headers={
                        "Authorization": token, "Content-Length": str(length),
                        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
                    elapsed = time.perf_counter() - started
                assert resp.status_code == 200, resp.text
                root = resp.content.splitlines()[-1].decode()
                print(f"{size:5d} MiB upload: w3gate peak RSS {rss.peak / MiB:6.1f} MiB "
                      f"(+{(rss.peak - idle) / MiB:.1f} over idle), {elapsed:6.1f} s, "
                      f"{size * MiB / 1e6 / elapsed:5.1f} MB/s end to end; node answered {root}")
                node.rpc("pin/rm", params={"arg": httpx.Response(200, content=root).json()["Hash"]})
                node.rpc("repo/gc", timeout=600)
        finally:
            stop_process(server)


def bench_fetch(sizes_mb: list[int]) -> None:
    with devnode() as a, devnode() as b:
        connected = b.rpc("swarm/connect", params={"arg": a.address})
        assert connected.status_code == 200, connected.text
        for size in sizes_mb:
            data = os.urandom(size * 1_000_000)
            cid = a.add_file(data, "fetch", **{"cid-version": "1"})["Hash"]
            del data
            started = time.perf_counter()
            resp = b.rpc("pin/add", params={"arg": cid, "timeout": "600s"}, timeout=650)
            elapsed = time.perf_counter() - started
            assert resp.status_code == 200, resp.text
            print(f"{size:5d} MB fetched by node B from node A (pin/add): {elapsed:6.1f} s, "
                  f"{size / elapsed:5.1f} MB/s")


def bench_ordered(count: int, size: int, runtime: str, timeout: float) -> None:
    """Everything started here: the Crust devchain (as tests/devchain_fixtures.py starts it, with its submission
    relay), Alice funded as the ordering account and the market on, a user's node holding the content, the
    service's node, and a ``w3gate serve`` driving both. Each pin names the user's node as its origin."""
    from devchain_fixtures import ALICE, Devchain, Relay, crust_env
    from substrateinterface import Keypair

    tmp = Path(tempfile.mkdtemp(prefix="w3gate-bench-ordered-"))
    chain = Devchain(free_port(), tmp / "chopsticks.log", runtime)
    chain.start()
    relay = Relay(chain)
    try:
        chain.fund(Keypair.create_from_uri(ALICE, ss58_format=66).ss58_address, 10**18)
        chain.market_on()
        with devnode() as user, devnode() as service:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = {**os.environ, **UNBINDING_LIMITS, **crust_env(relay), "W3GATE_LOG_LEVEL": "warning",
                   "W3GATE_IPFS_RPC_URL": service.rpc_url, "W3GATE_IPFS_PRIVATE_ORIGINS": "127.0.0.0/8"}
            server = start_process(["-m", "w3gate", "serve", "--port", str(port), "--data-dir", str(tmp)],
                                   base + "/healthz", env)
            headers = {"Authorization": substrate_token("//BenchOrdered")}
            origin = user.address
            print(f"runtime {runtime}: {count} pins of {size} random bytes each, content on the user's node")
            times: list[tuple[float, float]] = []
            try:
                for n in range(count):
                    cid = user.add_file(os.urandom(size), "ordered", **{"cid-version": "1"})["Hash"]
                    started = time.perf_counter()
                    created = httpx.post(base + "/psa/pins", json={"cid": cid, "origins": [origin]},
                                         headers=headers, timeout=30)
                    assert created.status_code == 202, created.text
                    url = f"{base}/psa/pins/{created.json()['requestid']}"
                    fetched = None
                    while True:
                        pin = httpx.get(url, headers=headers, timeout=30).json()
                        if fetched is None and pin["info"].get("dag_size"):
                            fetched = time.perf_counter() - started
                        if pin["status"] != "queued":  # pinning: the order is on the chain (failed: it could not be)
                            break
                        if time.perf_counter() - started > timeout:
                            raise SystemExit(f"not ordered in {timeout:g} s: {pin}")
                        time.sleep(0.05)
                    ordered = time.perf_counter() - started
                    assert pin["status"] == "pinning", pin
                    print(f"pin {n + 1}: POST /psa/pins -> fetched and measured {fetched or ordered:5.2f} s, "
                          f"-> ordered (pinning) {ordered:5.2f} s; dag_size {pin['info']['dag_size']}")
                    times.append((fetched or ordered, ordered))
                for label, values in (("fetched", [t[0] for t in times]), ("ordered", [t[1] for t in times])):
                    print(f"{label}: median {statistics.median(values):.2f} s, min {min(values):.2f} s, "
                          f"max {max(values):.2f} s")
            finally:
                stop_process(server)
    finally:
        relay.stop()
        chain.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    up = sub.add_parser("upload")
    up.add_argument("--sizes", default="64,256,1024", help="MiB, comma-separated")
    fetch = sub.add_parser("fetch")
    fetch.add_argument("--sizes", default="20,100", help="MB, comma-separated")
    ordered = sub.add_parser("ordered")
    ordered.add_argument("--count", type=int, default=10, help="pins, one after the other")
    ordered.add_argument("--size", type=int, default=1_000_000, help="bytes of each content")
    ordered.add_argument("--runtime", default="mainnet", choices=("mainnet", "rocky"), help="the devchain's")
    ordered.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    if args.what == "upload":
        bench_upload([int(s) for s in args.sizes.split(",")])
    elif args.what == "fetch":
        bench_fetch([int(s) for s in args.sizes.split(",")])
    else:
        bench_ordered(args.count, args.size, args.runtime, args.timeout)


if __name__ == "__main__":
    main()
