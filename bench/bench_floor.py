"""How close to the ceiling a Quart-Trio app can get before w3gate does any work of its own.

Runs bench/quart_floor_app.py (w3gate's app shape, constant answers: no token check, no database, no CID
check) against the bare trio ASGI hello-world, paired runs as in bench_api.py, and prints the medians.
A request type whose floor is below a throughput target cannot meet it in this framework, whatever the
service does. It is a benchmark, not a test.

    python bench/bench_floor.py [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_api import POST_NEW_CIDS_LUA, start_process, stop_process, wrk  # noqa: E402
from helpers import free_port  # noqa: E402  (bench_api put tests/ on the path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    ceiling_port, floor_port = free_port(), free_port()
    ceiling_url, floor_url = f"http://127.0.0.1:{ceiling_port}/", f"http://127.0.0.1:{floor_port}/psa/pins"
    ceiling = start_process([str(HERE / "hello_asgi.py"), str(ceiling_port)], ceiling_url)
    floor = start_process([str(HERE / "quart_floor_app.py"), str(floor_port)], floor_url)
    runs: dict[str, list[tuple[dict, dict]]] = {"GET": [], "POST": []}
    try:
        for _ in range(args.rounds):
            for method, lua in (("GET", None), ("POST", POST_NEW_CIDS_LUA)):
                c = wrk(ceiling_url, args.seconds, args.connections, pid=ceiling.pid)
                f = wrk(floor_url, args.seconds, args.connections, "Bearer x", lua, pid=floor.pid)
                runs[method].append((c, f))
    finally:
        stop_process(floor)
        stop_process(ceiling)
    med = statistics.median
    print(f"{args.rounds} paired rounds of {args.seconds} s, {args.connections} connections; medians")
    for method, pairs in runs.items():
        print(f"Quart-Trio floor, {method:4} /psa/pins: {med(f['rps'] for _, f in pairs):6.0f} req/s, "
              f"{med(f['rps'] / c['rps'] for c, f in pairs):.2f} of the ceiling, "
              f"{med(f['cpu_us'] for _, f in pairs):4.0f} us CPU a request (ceiling "
              f"{med(c['cpu_us'] for c, _ in pairs):4.0f} us)")


if __name__ == "__main__":
    main()
