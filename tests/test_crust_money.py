"""The operator's CRU is spent only where it must be: on the real Crust runtimes (both), faults at the wire.

Each test here failed on the code before this change (see the issue note): a switched-off market, an
account short of a batch, a node refusing the extrinsic and a deleted pin each cost orders or attempts.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from devchain_fixtures import add_pin, order_of, run_tasks, settings_for, uniq, wait_status

from w3gate.store import pins
from w3gate.store.models import Order, Pin

pytestmark = pytest.mark.devchain
FAST_RETRY = {"W3GATE_CRUST_RETRY_BASE": "0.5", "W3GATE_CRUST_RETRY_MAX": "1"}


@pytest.fixture
def db(crust_db):
    return crust_db


async def wait_for(predicate: Any, timeout: float = 60) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.1)


async def test_market_switched_off_pauses_without_sending_or_charging(db, devchain, relay, ordering_account):
    """Before: every try sent a batch that failed with PlaceOrderNotAvailable (a fee each) and charged each CID
    an attempt, until the queue was failed."""
    await trio.to_thread.run_sync(devchain.market_on, False)
    cids = [uniq("off1"), uniq("off2")]
    for cid in cids:
        await add_pin(db, "u1", cid)
    async with trio.open_nursery() as nursery:
        ordering = await run_tasks(nursery, db, settings_for(relay, **FAST_RETRY))
        await wait_for(lambda: ordering.status().submitter.paused is not None)
        await trio.sleep(2)  # several order intervals and pause periods
        assert relay.submitted == []
        for cid in cids:
            order = await order_of(db, cid)
            assert (order.status, order.attempts) == ("queued", 0)
        assert "switched off" in ordering.status().as_dict()["paused"]
        await trio.to_thread.run_sync(devchain.market_on)
        await wait_status(db, cids, "pinning")
        assert ordering.status().submitter.paused is None
        nursery.cancel_scope.cancel()
    assert len(relay.submitted) == 1
    assert await trio.to_thread.run_sync(devchain.orders_of, set(cids)) == {c: 1 for c in cids}


async def test_batch_the_account_cannot_pay_is_not_sent(db, devchain, relay, ordering_account):
    """The batch's cost (market fees + the extrinsic's fee) is checked against what the account can spend."""
    await trio.to_thread.run_sync(devchain.fund, ordering_account, 10**6)  # far below one extrinsic's fee
    cid = uniq("short")
    await add_pin(db, "u1", cid)
    async with trio.open_nursery() as nursery:
        ordering = await run_tasks(nursery, db, settings_for(relay, W3GATE_CRUST_MIN_BALANCE="0", **FAST_RETRY))
        await wait_for(lambda: ordering.status().submitter.paused is not None)
        status = ordering.status().submitter
        assert "costs" in (status.paused or "") and status.last_batch_cost is None
        await trio.sleep(1.5)
        assert relay.submitted == []
        order = await order_of(db, cid)
        # queued, or claimed again for the next look (the pause is short here) but never signed into a
        # recorded extrinsic, and never charged
        assert order.status in ("queued", "submitting") and order.attempts == 0
        assert order.tx_hash is None or order.tx_hash.startswith("claim:")
        await trio.to_thread.run_sync(devchain.fund, ordering_account, 10**18)
        await wait_status(db, [cid], "pinning")
        cost = ordering.status().submitter.last_batch_cost
        assert cost is not None and cost > 0
        nursery.cancel_scope.cancel()


# author_submitExtrinsic errors as a Substrate node sends them (code, message, data) -> the kind w3gate reads
REFUSALS = {
    "payment": (1010, "Invalid Transaction", "Inability to pay some fees (e.g. account balance too low)", "payment"),
    "bad_proof": (1010, "Invalid Transaction", "Transaction has a bad signature", "bad_proof"),
    "ancient": (1010, "Invalid Transaction", "Transaction has an ancient birth block", "ancient"),
    "exhausts": (1010, "Invalid Transaction", "Transaction would exhaust the block limits", "exhausts"),
    "priority": (1014, "Priority is too low: (0 vs 0)", "The transaction has too low priority to replace another",
                 "priority"),
    "dropped": (1016, "Immediately Dropped", "The transaction couldn't enter the pool because of the limit", "refused"),
    "unknown": (1011, "Unknown Transaction Validity", "Could not lookup information required to validate", "refused"),
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
async def test_node_refusal_requeues_the_batch_without_charging_it(db, devchain, relay, ordering_account, kind):
    """Before: a refused batch charged every CID an attempt (and failed them at max_attempts)."""
    code, message, data, read_as = REFUSALS[kind]
    relay.fail_next("author_submitExtrinsic", {"error": {"code": code, "message": message, "data": data}})
    cids = [uniq(f"{kind}1"), uniq(f"{kind}2")]
    for cid in cids:
        await add_pin(db, "u1", cid)
    async with trio.open_nursery() as nursery:
        ordering = await run_tasks(nursery, db, settings_for(relay, W3GATE_CRUST_MAX_ATTEMPTS="1", **FAST_RETRY))
        await wait_status(db, cids, "pinning")  # with max_attempts 1, one charged attempt would have failed them
        nursery.cancel_scope.cancel()
    # the refused one, then the re-signed one (too big for a block: two of half the size)
    assert len(relay.submitted) == (3 if kind == "exhausts" else 2)
    assert relay.submitted[0] not in relay.submitted[1:]
    assert await trio.to_thread.run_sync(devchain.orders_of, set(cids)) == {c: 1 for c in cids}
    for cid in cids:
        assert (await order_of(db, cid)).attempts == 0
    assert f"({read_as}, code {code})" in (ordering.status().last_error or "")


async def test_already_imported_waits_for_the_same_extrinsic(db, devchain, relay, ordering_account):
    """'already imported' means a pool holds it: nothing is re-signed; it is included as it was."""
    relay.hold = True
    cid = uniq("known")
    await add_pin(db, "u1", cid)
    async with trio.open_nursery() as nursery:
        await run_tasks(nursery, db, settings_for(relay))
        await wait_for(lambda: relay.held)
        relay.fail_next("author_submitExtrinsic",
                        {"error": {"code": 1013, "message": "Transaction Already Imported", "data": ""}})
        await trio.sleep(1)
        relay.hold = False
        relay.release()
        await wait_status(db, [cid], "pinning")
        nursery.cancel_scope.cancel()
    assert set(relay.submitted) == {relay.submitted[0]}
    assert await trio.to_thread.run_sync(devchain.orders_of, {cid}) == {cid: 1}


async def test_deleting_the_last_pin_stops_ordering_and_renewal(db, devchain, relay, ordering_account):
    """Before: a deleted pin's CID was still ordered (if queued) and renewed (if placed), paid for nobody."""
    shared, alone, placed = uniq("shared"), uniq("alone"), uniq("placed")
    keep = await add_pin(db, "u1", shared)
    drop_shared = await add_pin(db, "u2", shared)
    drop_alone = await add_pin(db, "u1", alone)
    drop_placed = await add_pin(db, "u1", placed)
    assert await db.run(pins.delete_pin, "u2", drop_shared)
    assert await db.run(pins.delete_pin, "u1", drop_alone)
    assert not await db.run(lambda _: Order.filter(cid=alone).exists())  # never sent: nothing to keep
    settings = settings_for(relay, W3GATE_CRUST_RENEWAL_WINDOW="1000")
    async with trio.open_nursery() as nursery:
        await run_tasks(nursery, db, settings)
        await wait_status(db, [shared, placed], "pinning")
        assert await db.run(pins.delete_pin, "u1", drop_placed)
        head = await trio.to_thread.run_sync(devchain.head)
        for cid in (shared, placed):  # both near expiry: only the one still pinned is renewed
            await trio.to_thread.run_sync(devchain.set_replicas, cid, 3, head + 10)
        with trio.fail_after(60):
            while (await order_of(db, shared)).renewals < 1:
                await trio.sleep(0.2)
        await trio.sleep(2)  # more polls: the unwanted one stays unrenewed
        nursery.cancel_scope.cancel()
    assert (await order_of(db, placed)).renewals == 0
    counts = await trio.to_thread.run_sync(devchain.orders_of, {shared, alone, placed})
    assert counts == {shared: 2, alone: 0, placed: 1}
    assert keep


async def test_json_rpc_errors_and_dropped_sockets_never_stop_the_tasks(db, devchain, relay, ordering_account):
    """A node answering with errors, nonsense or a closed socket: the tasks back off, say why, and recover."""
    error = {"error": {"code": -32603, "message": "Internal error"}}
    for method in ("state_queryStorageAt", "chain_getHeader", "state_getStorage", "state_call"):
        relay.fail_next(method, error, {"result": "nonsense"}, "drop")
    # (no nonsense block hash: chopsticks, asked for the header of an unknown hash, takes it for its genesis)
    relay.fail_next("chain_getFinalizedHead", error, "drop")
    cid = uniq("faults")
    await add_pin(db, "u1", cid)
    async with trio.open_nursery() as nursery:
        ordering = await run_tasks(nursery, db, settings_for(relay))
        await wait_status(db, [cid], "pinning", timeout=90)
        await trio.to_thread.run_sync(devchain.set_replicas, cid, 2, 9_000_000)
        await wait_status(db, [cid], "pinned", timeout=90)
        assert ordering.status().last_error is not None
        nursery.cancel_scope.cancel()
    assert await trio.to_thread.run_sync(devchain.orders_of, {cid}) == {cid: 1}


def test_dispatch_errors_are_sorted_by_whose_fault_they_are(devchain, ordering_account):
    """The runtime's own verdicts on an included batch: an order too large is that CID's fault (counted); the
    market switched off is nobody's (paused, free). Before: both were 'fail', charged to every CID."""
    with devchain.connected() as client:
        nonce = client.account().nonce
        # exactly MaximumFileSize is already too large: the market takes only reported_file_size < it
        items = [("bafysortok", 1024), ("bafysorttoolarge", client.max_file_size), ("bafysortafter", 1024)]
        signed = client.sign_batch(items, nonce, client.finalized_head())
        devchain.new_block([signed.extrinsic])
        found, _ = client.find_inclusion(signed.tx_hash, signed.start_block)
        assert client.batch_outcome(found, 3) == [
            ("ok", None), ("fail", "chain error Market.FileTooLarge"), ("requeue", None)]
        devchain.market_on(False)
        try:
            signed = client.sign_batch([("bafysortoff", 1024)], nonce + 1, client.finalized_head())
            devchain.new_block([signed.extrinsic])
            found, _ = client.find_inclusion(signed.tx_hash, signed.start_block)
            assert client.batch_outcome(found, 1) == [("pause", "chain error Market.PlaceOrderNotAvailable")]
        finally:
            devchain.market_on()


async def test_known_size_at_the_maximum_is_failed_not_ordered(db, devchain, relay, ordering_account):
    """The market orders only ``reported_file_size < MaximumFileSize`` (FileTooLarge otherwise, the fee kept).
    Before: a known size of exactly the maximum was sent anyway, and an unknown size with default_file_size at the
    maximum was ordered AT it: both failed on chain with FileTooLarge, each paying for it."""
    with devchain.connected() as client:
        maximum = client.max_file_size
    big, unknown = uniq("atmax"), uniq("unknownsize")
    await add_pin(db, "u1", big)
    await add_pin(db, "u1", unknown)
    # a size known before ordering (the content's, or the chain's record of an earlier order)
    await db.run(lambda _: Order.filter(cid=big).update(file_size=maximum))
    settings = settings_for(relay, W3GATE_CRUST_DEFAULT_FILE_SIZE=str(maximum), W3GATE_CRUST_MAX_ATTEMPTS="1")
    async with trio.open_nursery() as nursery:
        await run_tasks(nursery, db, settings)
        with trio.fail_after(60):
            while {(await order_of(db, c)).status for c in (big, unknown)} & {"queued", "submitting"}:
                await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert all(big.encode().hex() not in ext for ext in relay.submitted)  # never in any extrinsic: no fee spent
    order = await order_of(db, big)
    assert (order.status, order.attempts, order.tx_hash) == ("failed", 0, None)
    assert f"smaller than its MaximumFileSize, {maximum} bytes" in order.error
    assert [p.status for p in await db.run(lambda _: Pin.filter(cid=big))] == ["failed"]
    assert (await order_of(db, unknown)).status == "pinning"  # ordered, one byte under the maximum
    assert (await trio.to_thread.run_sync(devchain.records, [unknown]))[unknown].file_size == maximum - 1
    assert await trio.to_thread.run_sync(devchain.orders_of, {big, unknown}) == {big: 0, unknown: 1}
