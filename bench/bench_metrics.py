"""What the metrics cost a request, measured in-process (so another process's load does not blur it).

Times, per request, exactly what the request path does for metrics: the (route, method, status) children
looked up and a counter and a histogram bucket incremented (``Metrics.observe_request``), the auth result
counted (``Metrics.auth_result``); and, for a scrape, rendering a registry with 40 label sets. Prints the
median of ``--repeat`` runs of ``--n`` calls each, in thread CPU time. It is a benchmark, not a test.

    python bench/bench_metrics.py
"""

from __future__ import annotations

import argparse
import statistics
import time

from w3gate.metrics import Metrics

ROUTES = ("/psa/pins", "/psa/pins/<requestid>", "/healthz", "/metrics", "unmatched")


def per_call_ns(fn: object, n: int, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.thread_time_ns()
        for _ in range(n):
            fn()  # type: ignore[operator]
        runs.append((time.thread_time_ns() - started) / n)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    metrics = Metrics()
    for route in ROUTES:  # a registry as a service has it after a while: 40 label sets
        for method in ("GET", "POST", "DELETE", "HEAD"):
            for status in (200, 401):
                metrics.observe_request(route, method, status, 0.002)

    def request() -> None:
        metrics.observe_request("/psa/pins", "GET", 200, 0.0023)
        metrics.auth_result("ok")

    empty = per_call_ns(lambda: None, args.n, args.repeat)
    cost = per_call_ns(request, args.n, args.repeat) - empty
    render = per_call_ns(metrics.render, max(1, args.n // 1000), args.repeat)
    print(f"metrics work per request: {cost / 1000:.2f} us CPU (median of {args.repeat} x {args.n})")
    print(f"rendering a scrape (40 label sets, process collector): {render / 1e6:.2f} ms CPU")


if __name__ == "__main__":
    main()
