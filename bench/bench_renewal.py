"""CRU per file-year by renewal strategy, from costs measured on the real Crust runtime (not a test).

    .venv/bin/python bench/bench_renewal.py [--runtime rocky|mainnet] [--size 2147483648] [--files 1]

``reorder``: places ``--files`` orders in one batch (as the submitter sends them) on the devchain, measures what
they took from the account (the balance before and after: market price + the extrinsic's fee) against w3gate's
own estimate (``CrustClient.batch_cost``), reads ``FileDuration``, and prints what keeping one file for a year
costs when each renewal is placed ``window`` blocks before expiry. A renewal sets the expiry to the current block
+ FileDuration (cstrml/market from spec 3), so a file renewed ``window`` blocks early is re-bought every
``FileDuration - window`` blocks.

``prepaid``: the same files, given one replica each and an expiry 3 blocks ahead, get the submitter's own plan
(:func:`w3gate.ordering.submitter.plan_prepaid`): an ``add_prepaid`` batch before expiry, then a
``calculate_reward`` batch once expired, which renews each file from its pool. Measured: what both batches took
from the account, what is left in the pools (the headroom, spent on the next renewal, not lost), and the new
expiry (the renewal period); a file-year is then ``year / period`` renewals at (taken - left).
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
from w3gate.ordering.submitter import plan_prepaid  # noqa: E402

YEAR_BLOCKS = 365 * 24 * 3600 // 6  # 6-second blocks


def send(chain: Devchain, client: CrustClient, items: list) -> int:
    """Sign ``items`` as one batch, put it in a block; what it took from the account."""
    before = client.account()
    signed = client.sign_batch(items, before.nonce, client.finalized_head())
    chain.new_block([signed.extrinsic])
    return before.free - client.account().free


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", default="rocky", choices=["mainnet", "rocky"])
    ap.add_argument("--size", type=int, default=2 * 1024**3)
    ap.add_argument("--files", type=int, default=1, help="files per batch (the fee is shared)")
    args = ap.parse_args()
    chain = Devchain(_free_port(), Path(tempfile.mkdtemp()) / "chopsticks.log", args.runtime)
    chain.start()
    try:
        client = CrustClient(chain.settings(W3GATE_CRUST_RENEWAL="prepaid"))
        client.connect()
        chain.fund(client.address, 10**18)
        chain.market_on()
        cids = [f"bafyrenewalbench{i}" for i in range(args.files)]
        before = client.account()
        signed = client.sign_batch([(c, args.size) for c in cids], before.nonce, client.finalized_head())
        estimate = client.batch_cost([args.size] * len(cids), signed.extrinsic)
        chain.new_block([signed.extrinsic])
        spent = (before.free - client.account().free) / len(cids)
        duration = client.file_duration
        print(f"{args.runtime} spec {client.spec_version}, {len(cids)} file(s) of {args.size} bytes per batch, "
              f"FileDuration {duration} blocks")
        print(f"  reorder: one order took {spent:.0f} units per file ({spent / CRU:.9f} CRU; w3gate's estimate "
              f"{estimate / len(cids):.0f})")
        for window, label in ((432_000, "30 days early (the old default)"), (14_400, "1 day early (default)"),
                              (1_200, "2 hours early")):
            orders_per_year = YEAR_BLOCKS / (duration - window)
            wasted = window / duration
            print(f"  reorder {label:32s}: {orders_per_year:.3f} orders per file-year, "
                  f"{orders_per_year * spent / CRU:.9f} CRU per file-year ({wasted:.1%} of each renewal re-bought)")

        expiry = chain.head() + 3
        for cid in cids:
            chain.set_replicas(cid, 3, expiry, holders=1)
        calls, _ = plan_prepaid(client, cids, chain.head())
        topup = send(chain, client, calls)
        while chain.head() < expiry:
            chain.new_block()
        calls, _ = plan_prepaid(client, cids, chain.head())
        assert {c.call for c in calls} == {"calculate_reward"}, calls
        trigger = send(chain, client, calls)
        records = client.files(cids)
        assert all(r is not None and r.expires_at > expiry for r in records.values()), records
        left = sum(r.prepaid for r in records.values()) / len(cids)
        period = sum(r.expires_at - expiry for r in records.values()) / len(cids)
        taken = (topup + trigger) / len(cids)
        renewals = YEAR_BLOCKS / period
        print(f"  prepaid: top-up batch {topup / len(cids):.0f} + calculate_reward batch {trigger / len(cids):.0f} "
              f"units per file, {left:.0f} left in the pool for the next renewal; renewed for {period:.0f} blocks")
        print(f"  prepaid {'renew at expiry':32s}: {renewals:.3f} renewals per file-year, "
              f"{renewals * (taken - left) / CRU:.9f} CRU per file-year (nothing re-bought; prepaid not withdrawable)")
        print(f"  prepaid {'renewed by another caller':32s}: {renewals:.3f} renewals per file-year, "
              f"{renewals * (topup / len(cids) - left) / CRU:.9f} CRU per file-year (the top-up batch only: a paid "
              "liquidator sends calculate_reward and keeps the reward)")
        client.close()
    finally:
        chain.stop()


if __name__ == "__main__":
    main()
