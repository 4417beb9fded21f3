"""Renewal by prepaid (``crust.renewal = prepaid``) on the real Crust runtimes: a top-up before expiry, sent once
through the recorded batch path, and the chain renewing the file from the pool at expiry (``calculate_reward``).

Both runtimes here have ``add_prepaid`` and ``calculate_reward`` (mainnet spec 1 too: its metadata lists them),
so the fallback for a runtime without them is tested on the decision itself, with the call names the runtime's
own metadata gives minus the missing one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from devchain_fixtures import add_pin, order_of, run_tasks, settings_for, uniq, wait_status

from w3gate.crust.chain import MarketCall
from w3gate.crust.client import CrustClient
from w3gate.crust.settings import load_crust_settings
from w3gate.ordering.lifecycle import RenewState
from w3gate.store import pins

RENEW_PREPAID = RenewState.PREPAID  # orders.renew_due: prepaid covers the renewal

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(crust_db):
    return crust_db


def test_renewal_setting_parses_and_refuses_bad_values() -> None:
    assert load_crust_settings({}, {}, REPO).renewal == "reorder"
    assert load_crust_settings({"renewal": "prepaid"}, {}, REPO).renewal == "prepaid"
    assert load_crust_settings({"renewal": "prepaid"}, {"W3GATE_CRUST_RENEWAL": "reorder"}, REPO).renewal == "reorder"
    for bad in ("Prepaid", "renew", "prepaid,reorder", "1"):
        with pytest.raises(ValueError, match="crust.renewal: expected one of reorder, prepaid"):
            load_crust_settings({}, {"W3GATE_CRUST_RENEWAL": bad}, REPO)


@pytest.mark.devchain
def test_a_runtime_without_the_prepaid_calls_falls_back_to_reorder(devchain) -> None:
    """The choice is made from the metadata at every connect: prepaid where the runtime has both calls."""
    from w3gate.crust.client import renewal_strategy

    with devchain.connected() as c:
        calls = {x.name for x in c.substrate.metadata.get_metadata_pallet("Market").calls}
    assert renewal_strategy("prepaid", calls) == ("prepaid", None)
    for missing in ("add_prepaid", "calculate_reward"):
        strategy, why = renewal_strategy("prepaid", calls - {missing})
        assert strategy == "reorder" and f"Market.{missing}" in why
    assert renewal_strategy("reorder", calls - {"add_prepaid"}) == ("reorder", None)
    c = CrustClient(devchain.settings(W3GATE_CRUST_RENEWAL="prepaid"))
    c.connect()
    try:
        assert c.renewal == "prepaid"
    finally:
        c.close()


@pytest.mark.devchain
async def test_prepaid_top_up_once_then_the_chain_renews_from_it(db, devchain, relay, ordering_account):
    """A pin near expiry gets one add_prepaid top-up (recorded, sent once, its cost in info); at expiry
    calculate_reward renews the file from the pool: no second order. A CID whose last pin is gone gets none."""
    kept, dropped = uniq("pp"), uniq("ppdrop")
    await add_pin(db, "u1", kept)
    drop = await add_pin(db, "u1", dropped)
    settings = settings_for(relay, W3GATE_CRUST_RENEWAL="prepaid", W3GATE_CRUST_RENEWAL_WINDOW="1000")
    async with trio.open_nursery() as nursery:
        ordering = await run_tasks(nursery, db, settings)
        await wait_status(db, [kept, dropped], "pinning")
        placed = ordering.status().submitter.last_batch_cost
        assert ordering.status().as_dict()["renewal"] == "prepaid"
        assert await db.run(pins.delete_pin, "u1", drop)
        # the order's cost as computed before sending: the CIDs' shares add up to the batch's cost
        first = [await order_of(db, c) for c in (kept, dropped)]
        assert sum(int(o.cost) for o in first) == placed
        head = await trio.to_thread.run_sync(devchain.head)
        expiry = head + 12
        for cid in (kept, dropped):
            await trio.to_thread.run_sync(lambda cid=cid: devchain.set_replicas(cid, 3, expiry, holders=1))
        with trio.fail_after(60):
            while (await order_of(db, kept)).renew_due != RENEW_PREPAID:
                await trio.sleep(0.2)
        topped = (await trio.to_thread.run_sync(devchain.records, [kept]))[kept]
        with devchain.connected() as c:
            price = c.renewal_price(topped.file_size, c.fees())
        assert price <= topped.prepaid <= price * 11 // 10 + 1  # one renewal and the headroom
        order = await order_of(db, kept)
        assert int(order.cost) > topped.prepaid  # the top-up and a share of its extrinsic's fee
        await trio.sleep(1.5)  # more polls before expiry: nothing more is sent
        assert (await order_of(db, kept)).renew_due == RENEW_PREPAID
        # time passes to the expiry: w3gate calls calculate_reward, the chain renews from the pool
        while await trio.to_thread.run_sync(devchain.head) < expiry:
            await trio.to_thread.run_sync(devchain.new_block)
        with trio.fail_after(60):
            while (await order_of(db, kept)).renewals < 1:
                await trio.sleep(0.2)
        with trio.fail_after(30):
            while not (await order_of(db, kept)).expires_at or (await order_of(db, kept)).expires_at <= expiry:
                await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    renewed = (await trio.to_thread.run_sync(devchain.records, [kept]))[kept]
    assert renewed.expires_at > expiry and renewed.prepaid < topped.prepaid
    count = devchain.orders_of
    assert await trio.to_thread.run_sync(count, {kept, dropped}) == {kept: 1, dropped: 1}  # never re-ordered
    assert await trio.to_thread.run_sync(count, {kept, dropped}, "AddPrepaidSuccess") == {kept: 1, dropped: 0}
    assert await trio.to_thread.run_sync(count, {kept, dropped}, "RenewFileSuccess") == {kept: 1, dropped: 0}
    (pin,) = (await db.run(pins.list_pins, "u1", pins.PinQuery(cids=(kept,))))[1]
    assert pin.info["renewal"] == "prepaid" and int(pin.info["cost"]) > 0
    assert int(pin.info["expires_at"]) == renewed.expires_at and pin.info["replicas"] == str(renewed.replicas)


@pytest.mark.devchain
async def test_a_recorded_top_up_is_sent_once_after_a_restart(db, devchain, relay, ordering_account):
    """Stopped after the top-up was recorded and sent, before a block held it: the next run settles that same
    extrinsic (re-sent byte for byte) instead of signing another top-up."""
    from w3gate.store import orders

    cid = uniq("pprestart")
    await add_pin(db, "u1", cid)
    settings = settings_for(relay, W3GATE_CRUST_RENEWAL="prepaid", W3GATE_CRUST_RENEWAL_WINDOW="1000")
    async with trio.open_nursery() as nursery:
        await run_tasks(nursery, db, settings)
        await wait_status(db, [cid], "pinning")
        relay.hold = True
        head = await trio.to_thread.run_sync(devchain.head)
        await trio.to_thread.run_sync(lambda: devchain.set_replicas(cid, 3, head + 50, holders=1))
        with trio.fail_after(60):
            while not relay.held:
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    (pending,) = await db.run(orders.open_txs)
    assert pending.calls == (MarketCall("add_prepaid", cid, pending.calls[0].amount),)
    assert pending.extrinsic == relay.held[0]
    async with trio.open_nursery() as nursery:
        await run_tasks(nursery, db, settings)
        await trio.sleep(1.5)
        assert (await order_of(db, cid)).renew_due == 2  # still in that batch: nothing new signed
        relay.hold = False
        relay.release()
        with trio.fail_after(60):
            while (await order_of(db, cid)).renew_due != RENEW_PREPAID:
                await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert await trio.to_thread.run_sync(devchain.orders_of, {cid}, "AddPrepaidSuccess") == {cid: 1}
    assert set(relay.submitted) == {relay.submitted[0], pending.extrinsic}  # the order, then only that top-up
    record = (await trio.to_thread.run_sync(devchain.records, [cid]))[cid]
    assert record.prepaid == pending.calls[0].amount


def test_a_batch_cost_is_shared_out_per_cid_exactly() -> None:
    from w3gate.crust.chain import MarketCall
    from w3gate.ordering.submitter import cost_per_cid

    items = [("a", 10), ("b", 10), MarketCall("add_prepaid", "c", 500), MarketCall("calculate_reward", "c")]
    costs = cost_per_cid(items, [100, 101], 1000)
    assert costs == {"a": 100 + 334, "b": 101 + 333, "c": 500 + 333}
    assert sum(costs.values()) == 100 + 101 + 500 + 1000
