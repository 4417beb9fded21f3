"""A runtime upgrade while w3gate runs, on a real Crust runtime (issue 13, item 1).

The chain is Crust mainnet's genesis (spec 1), upgraded in place the way Crust's own chain was: ``Sudo`` +
``System.set_code`` with mainnet's own spec-4 code (the ``:code`` of the Rocky genesis: ``spec_name`` crust,
spec 4). chopsticks runs it with Crust's polkadot.js types registered, as ``../shared/crust-devchain/run``
does for rocky: without them it cannot build blocks once the spec-4 runtime runs. Only mainnet runs here,
because it is the only runtime with a later one to upgrade to (Rocky's genesis already is spec 4).

``dev_setStorage`` of ``:code`` is not used: chopsticks keeps the runtime version it cached for the block, so
``state_getRuntimeVersion`` kept saying spec 1 although the next block ran spec 4. ``set_code`` is what a
chain does, and chopsticks follows it (``System.CodeUpdated``; the next block runs ``on_runtime_upgrade``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import xxhash
from devchain_fixtures import (
    ALICE,
    RUN,
    SHARED,
    Devchain,
    Relay,
    _free_port,
    add_pin,
    order_of,
    run_tasks,
    runtimes_under_test,
    settings_for,
    uniq,
    wait_status,
)

from w3gate.crust.client import CrustClient
from w3gate.store.models import CrustTx

pytestmark = pytest.mark.devchain
TYPES = SHARED / "crust-devchain" / "crust-rocky-types.json"
SPEC4_GENESIS = SHARED / "crust-devchain" / "crust-rocky-genesis.json"
CHOPSTICKS = Path(os.environ.get("CRUST_DEVCHAIN_HOME", Path.home() / ".cache" / "crust-devchain")) \
    / "node_modules" / ".bin" / "chopsticks"
SUDO = "//Bob"  # not the ordering account: the upgrade must not use the nonce of the batch it outdates


def _twox128(name: str) -> bytes:
    data = name.encode()
    return xxhash.xxh64_digest(data, seed=0)[::-1] + xxhash.xxh64_digest(data, seed=1)[::-1]


class UpgradableMainnet(Devchain):
    """Crust mainnet's genesis runtime under chopsticks with Crust's types registered (for after the upgrade)."""

    def __init__(self, port: int, log_path: Path, config: Path) -> None:
        super().__init__(port, log_path, "mainnet")
        self.config = config

    def command(self) -> list[str]:
        return [str(CHOPSTICKS), "--config", str(self.config), "--host", "127.0.0.1", "--port", str(self.port),
                "--build-block-mode", "Manual", "--runtime-log-level", "1"]

    def account_value(self, c: Any, address: str, free: int) -> tuple[str, str]:
        s = c.substrate
        current = s.query("System", "Account", [address]).value
        current["data"]["free"] = free
        current["providers"] = max(1, current["providers"])
        return (s.create_storage_key("System", "Account", [address]).to_hex(),
                s.runtime_config.create_scale_object("AccountInfo").encode(current).to_hex())

    def upgrade(self, code: str) -> str:
        """Upgrade to ``code`` as the chain would: ``Sudo.sudo_unchecked_weight(System.set_code(code))``, signed
        by the sudo key, in one block; then one more block (it runs ``on_runtime_upgrade``). Beforehand, state
        the live chain had by then: the market pots hold the new runtime's existential deposit (mainnet's
        genesis funds them with 10**7, the spec-4 runtime's deposit is 10**8: every order would fail with
        ``Balances.ExistentialDeposit``), and the spec-4 market switch ``EnableMarket`` is on (an unknown key
        to spec 1). Returns the upgrade block's hash."""
        from scalecodec.utils.ss58 import ss58_encode
        from substrateinterface import Keypair

        sudo = Keypair.create_from_uri(SUDO, ss58_format=66)
        with self.connected() as c:
            deposit = 10**8
            pots = [ss58_encode((b"modlcrmarket\x10" + tag).ljust(32, b"\0"), 66)
                    for tag in (b"coll", b"stor", b"stak", b"rese")]
            self.set_storage([
                *(self.account_value(c, pot, deposit) for pot in pots),
                self.account_value(c, sudo.ss58_address, 10**18),
                ("0x" + (_twox128("Sudo") + _twox128("Key")).hex(), "0x" + sudo.public_key.hex()),
                ("0x" + (_twox128("Market") + _twox128("EnableMarket")).hex(), "0x01"),
            ])
            s = c.substrate
            set_code = s.compose_call("System", "set_code", {"code": code})
            call = s.compose_call("Sudo", "sudo_unchecked_weight", {"call": set_code, "_weight": 0})
            ext = s.create_signed_extrinsic(call, sudo, era="00").data.to_hex()
        block = self.new_block([ext])
        self.new_block()
        return block

    def spec_at(self, block_hash: str | None = None) -> int:
        return int(self.rpc("state_getRuntimeVersion", [block_hash] if block_hash else [])["specVersion"])

    def events_of(self, block_hash: str) -> list[str]:
        with self.connected() as c:
            return [f"{e.value['module_id']}.{e.value['event_id']}" for e in c.substrate.get_events(block_hash)]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpgradableMainnet]:
    if "mainnet" not in runtimes_under_test():
        pytest.skip("upgrades the mainnet runtime (spec 1 -> 4): W3GATE_TEST_CRUST_RUNTIMES does not choose mainnet")
    if not RUN.exists():
        pytest.skip(f"no Crust devchain at {RUN}: these tests need ../shared/crust-devchain (set W3GATE_SHARED_DIR)")
    if not CHOPSTICKS.exists():  # `run` installs chopsticks on first use; --help then makes it exit at once
        subprocess.run([str(RUN), "0", "Manual", "--help"], check=True, capture_output=True, timeout=600)
    here = tmp_path_factory.mktemp("upgrade")
    config = here / "chopsticks.json"
    config.write_text(json.dumps({
        "genesis": str(SHARED / "crust-devchain" / "crust-mainnet-genesis.json"),
        "registered-types": {"types": json.loads(TYPES.read_text())["types"]},
    }))
    c = UpgradableMainnet(_free_port(), here / "chopsticks.log", config)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def db(crust_db):
    return crust_db


def spec4_code() -> str:
    return json.loads(SPEC4_GENESIS.read_text())["genesis"]["raw"]["top"]["0x3a636f6465"]


async def crust_txs(h) -> list[dict[str, Any]]:
    return list(await CrustTx.all().order_by("created_ms").values())


async def wait_for(predicate: Any, timeout: float = 60) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.1)


async def test_upgrade_while_running_resigns_the_held_batch_at_once_without_charging(db, chain):
    """spec 1 -> 4 with a signed batch held back: it is dropped (the spec-4 runtime refuses it), and w3gate
    re-queues it as soon as a finalized block runs the new runtime, long before its era ends; it is re-signed
    with spec 4's 4-argument call, and every CID is ordered once, with no attempt charged.
    Before: the batch waited for its era to end (64 blocks) and was then re-signed, so in this chain, where no
    block is made without a submission, its CIDs stayed queued."""
    from substrateinterface import Keypair

    relay = Relay(chain)
    code = await trio.to_thread.run_sync(spec4_code)
    alice = Keypair.create_from_uri(ALICE, ss58_format=66).ss58_address
    await trio.to_thread.run_sync(chain.fund, alice, 10**18)
    await trio.to_thread.run_sync(chain.market_on)  # Market.MarketSwitch at spec 1
    first, held = uniq("upg-a"), [uniq("upg-b"), uniq("upg-c")]
    # the poller is kept idle: the spec-4 code migrates no spec-1 records (the live chain had none: its
    # market was switched off at spec 1), so a spec-1 record does not decode as a spec-4 one; this test is
    # about the submitter
    settings = settings_for(relay, W3GATE_CRUST_POLL_INTERVAL="3600")
    try:
        async with trio.open_nursery() as nursery:
            ordering = await run_tasks(nursery, db, settings)
            await add_pin(db, "u1", first)
            await wait_status(db, [first], "pinning")
            shown = ordering.status().chain
            assert (shown.spec_version, shown.order_call) == (1, "Market.place_storage_order")

            relay.hold = True
            for cid in held:
                await add_pin(db, "u1", cid)
            await wait_for(lambda: relay.held)
            stale = relay.held[0]  # one batch in flight at a time: its CIDs may be one or both of `held`
            sent = [t for t in await db.run(crust_txs) if t["status"] == "sent"]
            assert [(t["extrinsic"], t["spec_version"]) for t in sent] == [(stale, 1)]
            assert set(json.loads(sent[0]["cids"])) <= set(held)
            era_end = sent[0]["era_end"]

            early = CrustClient(chain.settings())  # reads the runtime now, before the upgrade
            await trio.to_thread.run_sync(early.connect)
            assert (early.spec_version, early.order_arity) == (1, 3)
            upgrade = await trio.to_thread.run_sync(chain.upgrade, code)
            assert chain.spec_at(upgrade) == 4 and chain.spec_at() == 4
            assert "System.CodeUpdated" in await trio.to_thread.run_sync(chain.events_of, upgrade)
            # the pool drops it: applied to a block now, the spec-4 runtime refuses it and the block is made without
            # it (anything else the relay held was signed at spec 1 too, while the upgrade was not final yet)
            relay.hold, relay.held = False, []
            dropped_in = await trio.to_thread.run_sync(chain.new_block, [stale])
            assert stale not in chain.rpc("chain_getBlock", [dropped_in])["block"]["extrinsics"]

            await wait_status(db, held, "pinning")
            assert ordering.status().chain.spec_version == 4
            # signing follows the runtime even without check_runtime: substrate-interface moves to the new runtime
            # by itself on every call, and the order call is read again with it (never signed against old metadata)
            signed = await trio.to_thread.run_sync(early.sign_batch, [(uniq("upg-x"), 1024)], 0, chain.head())
            assert (signed.spec_version, early.spec_version, early.order_arity) == (4, 4, 4)
            early.close()
            nursery.cancel_scope.cancel()
    finally:
        relay.stop()

    assert chain.head() < era_end  # re-signed because of the upgrade, not because its era ended
    txs = {t["hash"]: t for t in await db.run(crust_txs)}
    outdated = [t for t in txs.values() if t["extrinsic"] == stale]
    assert [(t["status"], t["included_block"]) for t in outdated] == [("dropped", None)]
    resigned = [t for t in txs.values() if t["status"] == "included" and set(json.loads(t["cids"])) & set(held)]
    assert sorted(c for t in resigned for c in json.loads(t["cids"])) == sorted(held)
    assert {t["spec_version"] for t in resigned} == {4}
    for cid in held:
        order = await order_of(db, cid)
        assert (order.status, order.attempts) == ("pinning", 0)
    assert await trio.to_thread.run_sync(chain.orders_of, {first, *held}) == {first: 1, held[0]: 1, held[1]: 1}
    with chain.connected() as c:  # the re-signed orders are spec 4's records (compact amounts, spower)
        assert c.spec_version == 4 and c.order_arity == 4
        records = c.files(held)
    assert all(r is not None and r.file_size > 0 for r in records.values())
