"""Benchmark (not a test): a new valid user's first request while one client floods random signatures.

    python bench/bench_fairness.py [--flood-connections 25] [--samples 200] [--max-seconds 90]

Starts ``w3gate serve`` on loopback (SQLite in a temp dir). The flood comes from a child process: 25
keep-alive connections from 127.0.0.2 (one client address, as one attacker host), each sending
``GET /psa/pins`` with a well-formed sub- token of a real address and 64 random bytes as its signature
(no key needed; every one is a new, uncached signature check) as fast as the answers come. Meanwhile new
users, each with a fresh sr25519 key (substrate-interface), open a connection from 127.0.0.1 and send their
first request (uncached): the time from connect to the complete 200 answer is what is printed, p50/p99/max,
first without the flood (idle), then with it. Stops by itself after ``--samples`` or ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers import start_server_process, substrate_token  # noqa: E402

FLOOD_ADDRESS = "cTGcuvpYfDYtnbw4uE8GEd16pcUrxJyuvnnWrV3TQpEFaKjQn"  # a real address (vector v001); no key needed


def request_bytes(port: int, header: str) -> bytes:
    return (f"GET /psa/pins HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {header}\r\n\r\n").encode()


def read_response(sock: socket.socket, buf: bytearray) -> int:
    """Read one HTTP/1.1 response with a Content-Length body from ``sock``; returns its status."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    total = len(head) + 4 + length
    while len(buf) < total:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    del buf[:total]
    return status


def flood(port: int, connections: int, stop_at: float, counter: multiprocessing.Value) -> None:  # type: ignore[valid-type]
    def one() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", port))
        buf = bytearray()
        while time.monotonic() < stop_at:
            token = f"sub-{FLOOD_ADDRESS}:0x{os.urandom(64).hex()}"
            sock.sendall(request_bytes(port, "Bearer " + base64.b64encode(token.encode()).decode()))
            try:
                read_response(sock, buf)
            except (ConnectionError, OSError):
                sock.close()
                sock = socket.socket()
                sock.bind(("127.0.0.2", 0))
                sock.connect(("127.0.0.1", port))
                buf.clear()
                continue
            with counter.get_lock():
                counter.value += 1
        sock.close()

    threads = [threading.Thread(target=one, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def first_request_ms(port: int, header: str) -> float:
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_bytes(port, header))
        status = read_response(sock, bytearray())
    took = (time.perf_counter() - t) * 1000
    if status != 200:
        raise RuntimeError(f"a valid user's first request got {status}")
    return took


def measure(port: int, tokens: list[str], deadline: float, pause: float) -> list[float]:
    times = []
    for header in tokens:
        if time.monotonic() > deadline:
            break
        times.append(first_request_ms(port, header))
        time.sleep(pause)
    return times


def summary(times: list[float]) -> str:
    q = statistics.quantiles(times, n=100, method="inclusive")
    return f"n={len(times)} p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(times):.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flood-connections", type=int, default=25)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--idle-samples", type=int, default=50)
    ap.add_argument("--max-seconds", type=float, default=90)
    ap.add_argument("--pause", type=float, default=0.02, help="seconds between new users")
    args = ap.parse_args()

    tokens = [substrate_token(f"//fair{i}") for i in range(args.idle_samples + args.samples)]
    server = start_server_process(env={"W3GATE_LOG_LEVEL": "warning"})
    port = int(server.base_url.rsplit(":", 1)[1])
    try:
        idle = measure(port, tokens[: args.idle_samples], time.monotonic() + args.max_seconds / 3, args.pause)
        print(f"idle: a new user's first request {summary(idle)}")
        counter = multiprocessing.Value("q", 0)
        stop_at = time.monotonic() + args.max_seconds
        flooder = multiprocessing.Process(target=flood, args=(port, args.flood_connections, stop_at, counter))
        flooder.start()
        time.sleep(2)  # let the flood fill the queue
        start_count, t = counter.value, time.monotonic()
        busy = measure(port, tokens[args.idle_samples:], stop_at - 1, args.pause)
        rate = (counter.value - start_count) / (time.monotonic() - t)
        flooder.terminate()
        flooder.join()
        print(f"flood ({args.flood_connections} connections from 127.0.0.2, random signatures): "
              f"{rate:.0f} rejected requests/s answered")
        print(f"under flood: a new user's first request {summary(busy)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
