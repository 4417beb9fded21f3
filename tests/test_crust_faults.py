"""Branches no devchain shows by itself, on the real Crust runtimes (both), through real chain state changes
(``dev_setStorage``, ``dev_newBlock``, ``dev_setHead``) and faults at the JSON-RPC wire (the test relay):
an order whose file record never appears, a pinned file whose record is gone, a batch that outlives its
era unincluded, and a re-organisation that undoes the block holding a batch."""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

import pytest
import trio
from devchain_fixtures import Devchain, add_pin, order_of, run_tasks, settings_for, uniq, wait_status

from w3gate.store.models import CrustTx, Pin

pytestmark = pytest.mark.devchain


@pytest.fixture
def db(crust_db):
    return crust_db


def tx_hash(extrinsic: str) -> str:
    return "0x" + blake2b(bytes.fromhex(extrinsic[2:]), digest_size=32).hexdigest()


def drop_record(devchain: Devchain, cid: str) -> None:
    """Remove the CID's file record from the chain's state (as the market does when a file expires)."""
    with devchain.connected() as client:
        key = client.file_key(cid)
    devchain.set_storage([(key, None)])


def head_extrinsics(devchain: Devchain) -> list[str]:
    return devchain.block_extrinsics(devchain.head())


async def tx_row(db: Any, extrinsic: str) -> Any:
    async def get(h) -> Any:
        return await CrustTx.get(hash=tx_hash(extrinsic))

    return await db.run(get)


async def pin_statuses(db: Any, cid: str) -> set[str]:
    async def get(h) -> set[str]:
        return set(await Pin.filter(cid=cid).values_list("status", flat=True))

    return await db.run(get)


async def wait_for(predicate: Any, timeout: float = 60) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.1)


async def more_calls(relay: Any, *methods: str, n: int = 3) -> None:
    """Wait until the services have called each of ``methods`` ``n`` more times (they looked again)."""
    seen = {m: relay.calls.get(m, 0) for m in methods}
    await wait_for(lambda: all(relay.calls.get(m, 0) >= seen[m] + n for m in methods))


ROUNDS = ("state_getRuntimeVersion", "chain_getHeader")  # one each per submitter round, per poller round


async def test_order_whose_record_never_appears_fails_after_order_timeout(db, devchain, relay, ordering_account):
    """Included, but the file record is gone right after: after ``order_timeout`` the pin is ``failed`` and
    says why; a failed order is not ordered again."""
    cid = uniq("norecord")
    await add_pin(db, "u1", cid)
    async with trio.open_nursery() as nursery:
        await run_tasks(nursery, db, settings_for(relay, W3GATE_CRUST_ORDER_TIMEOUT="2"))
        await wait_status(db, [cid], "pinning")
        await trio.to_thread.run_sync(drop_record, devchain, cid)
        await wait_status(db, [cid], "failed")
        await more_calls(relay, *ROUNDS)  # more order rounds and polls
        nursery.cancel_scope.cancel()
    order = await order_of(db, cid)
    assert (order.status, order.error) == ("failed", "no file record on chain 2 s after the order was placed")
    assert await pin_statuses(db, cid) == {"failed"}
    assert len(relay.submitted) == 1
    assert await trio.to_thread.run_sync(devchain.orders_of, {cid}) == {cid: 1}


async def test_pinned_file_whose_record_is_gone_is_ordered_again_once(db, devchain, relay, ordering_account):
    """A pinned file's record disappears (expired and removed): the order is queued and placed again, once."""
    cid = uniq("gone")
    await add_pin(db, "u1", cid)
    async with trio.open_nursery() as nursery:
        await run_tasks(nursery, db, settings_for(relay))
        await wait_status(db, [cid], "pinning")
        await trio.to_thread.run_sync(devchain.set_replicas, cid, 2, 9_000_000)
        await wait_status(db, [cid], "pinned")
        await trio.to_thread.run_sync(drop_record, devchain, cid)
        await wait_for(lambda: len(relay.submitted) >= 2)
        await wait_status(db, [cid], "pinning")
        await trio.to_thread.run_sync(devchain.set_replicas, cid, 2, 9_000_000)
        await wait_status(db, [cid], "pinned")
        await more_calls(relay, *ROUNDS, "state_queryStorageAt")  # more order rounds and polls: no third order
        nursery.cancel_scope.cancel()
    assert len(relay.submitted) == 2
    assert (await order_of(db, cid)).attempts == 0
    assert await trio.to_thread.run_sync(devchain.orders_of, {cid}) == {cid: 2}


async def test_batch_unincluded_past_its_era_is_requeued_free_and_never_lands(db, devchain, relay, ordering_account):
    """The node holds the batch while blocks pass its era's death: it is re-queued without an attempt charged
    (with max_attempts 1 a charge would fail the CIDs) and signed again; the stale one, released after, is
    not included (its era is over and its nonce used), so nothing is ordered twice."""
    relay.hold = True
    cids = [uniq("era1"), uniq("era2")]
    for cid in cids:
        await add_pin(db, "u1", cid)
    async with trio.open_nursery() as nursery:
        await run_tasks(nursery, db, settings_for(relay, W3GATE_CRUST_ERA_PERIOD="4", W3GATE_CRUST_MAX_ATTEMPTS="1"))
        await wait_for(lambda: relay.held)
        stale = relay.held.pop()
        relay.hold = False
        era_end = (await tx_row(db, stale)).era_end
        head = await trio.to_thread.run_sync(devchain.head)
        await trio.to_thread.run_sync(devchain.rpc, "dev_newBlock", [{"count": era_end - head}])
        await wait_status(db, cids, "pinning")
        nursery.cancel_scope.cancel()
    assert len(relay.submitted) == 2 and relay.submitted[1] != stale
    assert [(await order_of(db, c)).attempts for c in cids] == [0, 0]
    assert ((await tx_row(db, stale)).status, (await tx_row(db, relay.submitted[1])).status) == ("dropped", "included")
    try:
        await trio.to_thread.run_sync(devchain.new_block, [stale])
    except RuntimeError:
        pass  # the node may refuse to build with it at all
    assert stale not in await trio.to_thread.run_sync(head_extrinsics, devchain)
    assert await trio.to_thread.run_sync(devchain.orders_of, set(cids)) == {c: 1 for c in cids}


LAG = 3  # blocks between the best head and the finalized one


async def included_above_finality(db: Any, devchain: Devchain, relay: Any, cids: list[str], settings: Any,
                                  nursery: Any) -> tuple[str, int]:
    """Run the tasks with finality LAG blocks behind; wait until their batch is in best block B; returns the
    extrinsic and B."""
    relay.finality_lag = LAG
    for cid in cids:
        await add_pin(db, "u1", cid)
    await run_tasks(nursery, db, settings)
    await wait_for(lambda: relay.submitted)
    first = relay.submitted[0]
    with trio.fail_after(30):  # the relay builds block B with it
        while first not in await trio.to_thread.run_sync(head_extrinsics, devchain):
            await trio.sleep(0.1)
    return first, await trio.to_thread.run_sync(devchain.head)


async def grow(devchain: Devchain) -> None:
    """Blocks keep coming, as on a live chain."""
    while True:
        await trio.to_thread.run_sync(devchain.new_block)
        await trio.sleep(0.2)


@pytest.mark.parametrize("view", ["consistent", "lagging node"])
async def test_reorg_that_undoes_the_batch_block_applies_no_verdict_from_it(db, devchain, relay, ordering_account,
                                                                            view):
    """Finality lags the best head by LAG blocks (the relay, as GRANDPA). The batch is included in best block
    B; the best chain grows until B is the lowest block above finality; then the chain is rewound to B-1
    (``dev_setHead``) and a competing branch without the batch is built past its era. Nothing may be decided
    from the undone block: the batch is re-queued free and the CIDs are ordered exactly once on the
    canonical chain. ``lagging node``: the endpoint (a load balancer) also answers block B's number with the
    undone block's hash, as a node still on the undone branch would. Before, that block's events were
    taken as the batch's verdict: pinning, and never ordered on the canonical chain."""
    cids = [uniq("reorg1"), uniq("reorg2")]
    settings = settings_for(relay, W3GATE_CRUST_ERA_PERIOD="8", W3GATE_CRUST_MAX_ATTEMPTS="1")
    async with trio.open_nursery() as nursery:
        first, included = await included_above_finality(db, devchain, relay, cids, settings, nursery)
        undone = await trio.to_thread.run_sync(devchain.rpc, "chain_getBlockHash", [included])
        await trio.to_thread.run_sync(devchain.rpc, "dev_newBlock", [{"count": LAG - 1}])
        await more_calls(relay, "chain_getFinalizedHead")  # the submitter looks with B the lowest unfinalized
        assert relay.finalized == included - 1
        assert [(await order_of(db, c)).status for c in cids] == ["submitting", "submitting"]
        assert (await tx_row(db, first)).status == "sent"
        # the re-organisation: B and its descendants are undone, a competing branch grows from B-1
        await trio.to_thread.run_sync(devchain.set_head, included - 1)
        if view == "lagging node":
            relay.block_hashes[included] = undone
        nursery.start_soon(grow, devchain)
        await wait_status(db, cids, "pinning", timeout=90)
        nursery.cancel_scope.cancel()
    assert await trio.to_thread.run_sync(devchain.orders_of, set(cids)) == {c: 1 for c in cids}
    assert first not in await trio.to_thread.run_sync(devchain.block_extrinsics, included)
    again = await tx_row(db, relay.submitted[-1])
    assert len(relay.submitted) == 2 and (await tx_row(db, first)).status == "dropped"
    assert again.status == "included" and again.included_block > included
    assert relay.submitted[-1] in await trio.to_thread.run_sync(devchain.block_extrinsics, again.included_block)
    assert [(await order_of(db, c)).attempts for c in cids] == [0, 0]


async def test_block_the_node_cannot_name_is_not_skipped(db, devchain, relay, ordering_account):
    """The endpoint (a load balancer's node behind the others) answers the number of the block holding the
    batch with null. Before: the block was skipped and the scan moved past it, so the included batch was
    taken for dead at its era's end and its CIDs were ordered a second time."""
    cids = [uniq("hidden1"), uniq("hidden2")]
    async with trio.open_nursery() as nursery:
        first, included = await included_above_finality(
            db, devchain, relay, cids, settings_for(relay, W3GATE_CRUST_ERA_PERIOD="8"), nursery)
        relay.block_hashes[included] = None
        nursery.start_soon(grow, devchain)
        await wait_status(db, cids, "pinning", timeout=90)
        nursery.cancel_scope.cancel()
    assert await trio.to_thread.run_sync(devchain.orders_of, set(cids)) == {c: 1 for c in cids}
    row = await tx_row(db, first)
    assert (row.status, row.included_block, len(relay.submitted)) == ("included", included, 1)
