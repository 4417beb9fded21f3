"""The submitter and poller against the real Crust runtime (chopsticks), driven directly (no HTTP)."""

from __future__ import annotations

import threading
import time

import pytest
import trio
from devchain_fixtures import ALICE, REPO, add_pin, order_of, run_tasks, settings_for, uniq, wait_status

from w3gate.crust.settings import load_crust_settings
from w3gate.crust.typedefs import UnsupportedRuntime
from w3gate.ordering.connection import ChainConnection
from w3gate.ordering.lifecycle import RecordedBatch
from w3gate.ordering.pipeline import Ordering
from w3gate.ordering.poller import Poller
from w3gate.store import orders, pins

pytestmark = pytest.mark.devchain


@pytest.fixture
def db(crust_db):
    return crust_db


async def test_orders_once_per_cid_then_pinned_with_info(db, devchain, relay, ordering_account):
    a, b = uniq("a"), uniq("b")
    for owner, cid in (("u1", a), ("u2", a), ("u1", b)):
        await add_pin(db, owner, cid)
    async with trio.open_nursery() as nursery:
        ordering = await run_tasks(nursery, db, settings_for(relay))
        await wait_status(db, [a, b], "pinning")
        records = await trio.to_thread.run_sync(devchain.records, [a, b])
        assert records[a] is not None and records[b] is not None
        assert records[a].file_size == 2 * 1024**3  # the default order size
        assert len(relay.submitted) == 1  # both CIDs in one batch extrinsic
        # storage nodes' reports, written as the runtime stores them
        await trio.to_thread.run_sync(devchain.set_replicas, a, 2, 5_000_000)
        await trio.to_thread.run_sync(devchain.set_replicas, b, 1, 5_000_000)
        await wait_status(db, [a], "pinned")
        assert (await order_of(db, b)).status == "pinning"  # 1 replica < threshold 2
        assert ordering.status().as_dict()["chain_connected"] is True
        assert ordering.status().as_dict()["account"] == ordering_account
        nursery.cancel_scope.cancel()
    order = await order_of(db, a)
    assert (order.replicas, order.file_size, order.expires_at) == (2, 2 * 1024**3, 5_000_000)
    counts = await trio.to_thread.run_sync(devchain.orders_of, {a, b})
    assert counts == {a: 1, b: 1}


async def test_renewal_when_expiry_is_near(db, devchain, relay, ordering_account):
    cid = uniq("r")
    await add_pin(db, "u1", cid)
    async with trio.open_nursery() as nursery:
        await run_tasks(nursery, db, settings_for(relay, W3GATE_CRUST_RENEWAL_WINDOW="1000"))
        await wait_status(db, [cid], "pinning")
        head = await trio.to_thread.run_sync(devchain.head)
        await trio.to_thread.run_sync(devchain.set_replicas, cid, 3, head + 10)
        with trio.fail_after(60):
            while (await order_of(db, cid)).renewals < 1:
                await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    assert (await order_of(db, cid)).status == "pinned"
    assert (await trio.to_thread.run_sync(devchain.orders_of, {cid}))[cid] == 2


async def test_poller_decodes_a_record_again_only_when_its_bytes_change(db, devchain, relay, ordering_account):
    a, b = uniq("dec"), uniq("dec")
    await add_pin(db, "u1", a)
    b_pin = await add_pin(db, "u1", b)
    settings = settings_for(relay)
    async with trio.open_nursery() as nursery:  # the real tasks place both orders
        await run_tasks(nursery, db, settings)
        await wait_status(db, [a, b], "pinning")
        nursery.cancel_scope.cancel()
    conn = ChainConnection(settings, "poller")
    poller = Poller(db, settings, conn)
    client = await conn.ensure()
    decoded: list[str] = []
    decode = client.decode_record

    def counting(data_hex: str, files_map: str | None = None):  # counts the strict decodes the passes make
        decoded.append(data_hex)
        return decode(data_hex, files_map)

    client.decode_record = counting  # type: ignore[method-assign]
    try:
        await poller.poll_once()
        assert len(decoded) == 2  # first pass: every record decoded
        decoded.clear()
        await poller.poll_once()
        assert decoded == []  # no record changed: nothing decoded again
        await trio.to_thread.run_sync(devchain.set_replicas, a, 1, 5_000_000)
        await poller.poll_once()
        assert len(decoded) == 1  # only the changed record, decoded in full
        assert (await order_of(db, a)).replicas == 1
        await db.run(pins.delete_pin, "u1", b_pin)  # b no longer watched: forgotten
        await poller.poll_once()
        assert len(poller.known) == 1 and poller.status.known_records == 1
    finally:
        await conn.call(client.close)


async def test_low_balance_keeps_pins_queued(db, devchain, relay, ordering_account):
    cid = uniq("low")
    await add_pin(db, "u1", cid)
    await trio.to_thread.run_sync(devchain.fund, ordering_account, 10**8)
    async with trio.open_nursery() as nursery:
        ordering = await run_tasks(nursery, db, settings_for(relay))
        with trio.fail_after(30):
            while not ordering.status().submitter.below_minimum:
                await trio.sleep(0.1)
        await trio.sleep(1.5)
        assert (await order_of(db, cid)).status == "queued"
        assert ordering.status().as_dict()["below_minimum"] is True
        assert relay.submitted == []
        await trio.to_thread.run_sync(devchain.fund, ordering_account, 10**18)
        await wait_status(db, [cid], "pinning")
        assert ordering.status().submitter.below_minimum is False
        nursery.cancel_scope.cancel()


async def test_recorded_but_unsent_batch_is_sent_once_after_restart(db, devchain, relay, ordering_account):
    """kill -9 right after the extrinsic was recorded (sent or not): the restart settles it, no double order."""
    settings = settings_for(relay)
    c1, c2 = uniq("k1"), uniq("k2")
    await add_pin(db, "u1", c1)
    await add_pin(db, "u1", c2)
    # the dead process's work: claimed, signed, recorded, sent into a pool that has not included it yet
    from w3gate.crust.client import CrustClient

    client = CrustClient(settings)
    await trio.to_thread.run_sync(client.connect)
    token = orders.CLAIM_PREFIX + "dead"
    claimed = await db.run(orders.claim, token, 10, int(time.time() * 1000))
    assert {c.cid for c in claimed} == {c1, c2}
    nonce = (await trio.to_thread.run_sync(client.account)).nonce
    signed = await trio.to_thread.run_sync(client.sign_batch, [(c1, 10), (c2, 10)], nonce, client.finalized_head())
    tx = RecordedBatch(signed.tx_hash, nonce, signed.extrinsic, signed.start_block, signed.era_end, spec_version=None)
    await db.run(orders.record_tx, token, tx, [c1, c2], int(time.time() * 1000))
    relay.hold = True
    await trio.to_thread.run_sync(client.submit, signed.extrinsic)
    client.close()
    # the new process starts while the old extrinsic is still pending, then the pool includes it
    async with trio.open_nursery() as nursery:
        await run_tasks(nursery, db, settings)
        await trio.sleep(2)
        assert (await order_of(db, c1)).status == "submitting"
        relay.hold = False
        relay.release()
        await wait_status(db, [c1, c2], "pinning")
        nursery.cancel_scope.cancel()
    counts = await trio.to_thread.run_sync(devchain.orders_of, {c1, c2})
    assert counts == {c1: 1, c2: 1}
    # every submission the service made was the recorded bytes: nothing re-signed
    assert set(relay.submitted) == {signed.extrinsic}


async def test_chain_down_then_back_resumes_ordering(db, devchain, relay, ordering_account):
    settings = settings_for(relay)
    first, second = uniq("up"), uniq("down")
    await add_pin(db, "u1", first)
    async with trio.open_nursery() as nursery:
        ordering = await run_tasks(nursery, db, settings)
        await wait_status(db, [first], "pinning")
        await trio.to_thread.run_sync(devchain.stop)
        with trio.fail_after(30):
            while ordering.status().chain_connected:
                await trio.sleep(0.1)
        await add_pin(db, "u1", second)  # the store keeps accepting while the chain is away
        await trio.sleep(1)
        assert (await order_of(db, second)).status == "queued"
        await trio.to_thread.run_sync(devchain.start)
        await trio.to_thread.run_sync(devchain.fund, ordering_account, 10**18)
        await trio.to_thread.run_sync(devchain.market_on)
        await wait_status(db, [second], "pinning", timeout=90)
        nursery.cancel_scope.cancel()


async def test_ordering_off_without_secret(db, caplog):
    settings = load_crust_settings({}, {"W3GATE_CRUST_URL": "ws://127.0.0.1:9"}, REPO)
    ordering = Ordering(db, settings)
    assert ordering.tasks() == []
    assert ordering.status().as_dict()["ordering"] == "off"
    assert sum("ordering is OFF" in r.getMessage() for r in caplog.records) == 1


# per runtime: the smallest record (every number 0, no replicas) and the call and map chosen from metadata
SMALLEST_RECORD = {"mainnet": 66, "rocky": 31}  # (FileInfo, UsedInfo) at spec 1; FileInfo with spower at rocky 4
ORDER_SHAPE = {"mainnet": ("place_storage_order", 3, "Files"), "rocky": ("place_storage_order", 4, "Files")}


def test_record_that_does_not_fit_fails_loudly(devchain):
    size = SMALLEST_RECORD[devchain.runtime]
    with devchain.connected() as client:
        with pytest.raises(UnsupportedRuntime):
            client.decode_record("0x" + "00" * (size - 1))  # too short
        with pytest.raises(UnsupportedRuntime):
            client.decode_record("0x" + "00" * size + "00")  # one byte left over
        assert client.decode_record("0x" + "00" * size).replicas == 0
        assert (client.order_call, client.order_arity, client.files_map) == ORDER_SHAPE[devchain.runtime]


def test_clients_take_turns_with_scalecodec(devchain):
    """scalecodec's decoder classes are shared by every client in the process, and two clients decoding at
    once fail now and then (bench/scale_race.py --no-lock: 6 errors in 132 connects): a client connects and
    decodes only while no other holds SCALE_LOCK."""
    from w3gate.crust.client import CrustClient

    other = CrustClient(devchain.settings())
    with devchain.connected():  # holds SCALE_LOCK in this thread
        connecting = threading.Thread(target=other.connect)
        connecting.start()
        connecting.join(1.0)
        assert connecting.is_alive() and not other.connected
    connecting.join(60)
    try:
        assert other.connected
        with devchain.connected():
            decoding = threading.Thread(target=other.decode_record,
                                        args=("0x" + "00" * SMALLEST_RECORD[devchain.runtime],))
            decoding.start()
            decoding.join(0.5)
            assert decoding.is_alive()
        decoding.join(10)
        assert not decoding.is_alive()
    finally:
        other.close()


def test_alice_secret_never_in_repr():
    s = load_crust_settings({}, {"W3GATE_CRUST_SEED": ALICE}, REPO)
    assert ALICE not in repr(s) and ALICE not in str(s.seed) and s.ordering_enabled
