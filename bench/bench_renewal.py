"""CRU per file-year by renewal point, from an order's cost measured on the real Crust runtime (not a test).

    .venv/bin/python bench/bench_renewal.py [--runtime rocky|mainnet] [--size 2147483648]

Places one order (a batch of one, as the submitter sends it) on the devchain, measures what it took from the
account (the balance before and after: market price + the extrinsic's fee) against w3gate's own estimate
(``CrustClient.batch_cost``), reads ``FileDuration``, and prints what keeping one file for a year costs when
each renewal is placed ``window`` blocks before expiry. A renewal sets the expiry to the current block +
FileDuration (cstrml/market from spec 3), so a file renewed ``window`` blocks early is re-bought every
``FileDuration - window`` blocks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from devchain_fixtures import Devchain, _free_port  # noqa: E402

from w3gate.crust.client import CrustClient  # noqa: E402
from w3gate.crust.settings import CRU  # noqa: E402

YEAR_BLOCKS = 365 * 24 * 3600 // 6  # 6-second blocks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", default="rocky", choices=["mainnet", "rocky"])
    ap.add_argument("--size", type=int, default=2 * 1024**3)
    args = ap.parse_args()
    chain = Devchain(_free_port(), Path(tempfile.mkdtemp()) / "chopsticks.log", args.runtime)
    chain.start()
    try:
        client = CrustClient(chain.settings())
        client.connect()
        chain.fund(client.address, 10**18)
        chain.market_on()
        before = client.account()
        signed = client.sign_batch([("bafyrenewalbench", args.size)], before.nonce, client.finalized_head())
        estimate = client.batch_cost([args.size], signed.extrinsic)
        chain.new_block([signed.extrinsic])
        after = client.account()
        spent = before.free - after.free
        duration = client.file_duration
        print(f"{args.runtime} spec {client.spec_version}: one {args.size}-byte order took {spent} units "
              f"({spent / CRU:.9f} CRU; w3gate's estimate {estimate}); FileDuration {duration} blocks")
        for window, label in ((432_000, "30 days early (the old default)"), (14_400, "1 day early (default)"),
                              (1_200, "2 hours early")):
            orders_per_year = YEAR_BLOCKS / (duration - window)
            wasted = window / duration
            print(f"  renew {label:32s}: {orders_per_year:.3f} orders per file-year, "
                  f"{orders_per_year * spent / CRU:.9f} CRU per file-year ({wasted:.1%} of each renewal re-bought)")
        client.close()
    finally:
        chain.stop()


if __name__ == "__main__":
    main()
