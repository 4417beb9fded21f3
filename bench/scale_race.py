"""Probe (not a test): two CrustClients in one process reconnecting at once, with and without SCALE_LOCK.

scalecodec attaches the decoding client's registry to shared decoder classes, so concurrent decoding
can see another client's registry half-built. This counts how often that surfaces:

    .venv/bin/python bench/scale_race.py [--seconds 30] [--no-lock]

Starts ../shared/crust-devchain/run on a free port (W3GATE_SHARED_DIR overrides ../shared).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from devchain_fixtures import Devchain, _free_port  # noqa: E402

import w3gate.crust.client as crust_client  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--no-lock", action="store_true", help="replace SCALE_LOCK by a no-op (shows the race)")
    args = parser.parse_args()
    if args.no_lock:
        crust_client.SCALE_LOCK = contextlib.nullcontext()  # type: ignore[assignment]
    chain = Devchain(_free_port(), Path(tempfile.mkdtemp()) / "chopsticks.log")
    chain.start()
    try:
        settings = chain.settings()
        clients = [crust_client.CrustClient(settings) for _ in range(2)]
        deadline = time.monotonic() + args.seconds
        connects = [0, 0]
        errors: list[str] = []

        def reconnect(i: int) -> None:
            while time.monotonic() < deadline:
                try:
                    clients[i].connect()
                    connects[i] += 1
                except Exception as exc:  # noqa: BLE001 - counted and shown
                    errors.append(f"{type(exc).__name__}: {exc}"[:120])

        threads = [threading.Thread(target=reconnect, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in clients:
            c.close()
        print(f"{'no lock' if args.no_lock else 'SCALE_LOCK'}: {args.seconds:.0f} s, connects {connects}, "
              f"errors {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    finally:
        chain.stop()


if __name__ == "__main__":
    main()
