"""The Crust order submitter: queued CIDs -> signed Utility.batch extrinsics -> pinning.

One batch in flight at a time, so the account nonce read from the chain state after each settled batch
is the next one to use (not the node's pool view, ``system_accountNextIndex``). Each batch is claimed,
signed, priced, recorded (extrinsic bytes + hash) and only then sent; open records are settled with the
chain before anything new is claimed, which is what makes kill -9 safe (see w3gate.store.orders).

Money: nothing is signed while the market is switched off or the account cannot pay the batch (its cost
from the chain's own fee storage plus the extrinsic's fee, against the balance that is not frozen), and
a refusal that is not the CIDs' fault (the node refusing the extrinsic, the market or the account saying
no) pauses ordering with a back-off and re-queues the batch without charging its CIDs an attempt.
Inclusion and death are decided on finalized blocks, so a re-organisation cannot undo a verdict.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import trio

from w3gate.crust.chain import ChainClient
from w3gate.crust.errors import BAD_PROOF, EXHAUSTS, PAYMENT, TxRejected
from w3gate.crust.settings import CrustSettings
from w3gate.services.crust import Connection, CrustStatus, notify_webhook, now_ms
from w3gate.store import orders
from w3gate.store.db import Database

log = logging.getLogger(__name__)
STALE_CLAIM_MS = 30_000
COUNTS_EVERY_MS = 30_000  # the /healthz order counts scan the orders table: not on every idle step


class Submitter:
    def __init__(self, db: Database, settings: CrustSettings, status: CrustStatus, conn: Connection) -> None:
        self.db, self.settings, self.status, self.conn = db, settings, status, conn
        self.next_nonce = 0
        self.counted_ms = 0
        self.delays = {a: int(settings.retry_delay(a) * 1000) for a in range(1, settings.max_attempts + 1)}
        self.pauses = 0  # consecutive pauses: the back-off doubles with each
        self.paused_until = 0.0  # trio clock
        self.batch_cap = settings.batch_size  # halved when the node says a batch exhausts the block

    @property
    def client(self) -> ChainClient:
        return self.conn.client

    async def run(self) -> None:
        async def once() -> float:
            await self.conn.call(self.client.check_runtime)
            self.status.spec_version = self.client.spec_version
            return 0 if await self.step() else self.settings.order_interval

        await self.conn.keep_running(once)

    # pausing ------------------------------------------------------------------------------------
    def pause(self, reason: str) -> None:
        """Stop ordering for a while (doubling per consecutive pause, from retry_base up to retry_max)."""
        self.pauses += 1
        delay = max(self.settings.order_interval, self.settings.retry_delay(self.pauses))
        self.paused_until = trio.current_time() + delay
        self.status.paused = reason[:500]
        self.status.paused_until_ms = now_ms() + int(delay * 1000)
        self.status.error(reason)
        log.warning("crust ordering paused for %.0f s: %s", delay, reason)

    def resume(self) -> None:
        if self.status.paused is not None:
            log.info("crust ordering resumed (was paused: %s)", self.status.paused)
        self.pauses = 0
        self.status.paused = None
        self.status.paused_until_ms = None

    # one step -----------------------------------------------------------------------------------
    async def step(self) -> bool:
        """Settle open extrinsics, then place one batch; False when there was nothing to do."""
        for tx in await self.db.run(orders.open_txs):
            await self.settle(tx, fresh=False)
        now = now_ms()
        await self.db.run(orders.release_stale_claims, now - STALE_CLAIM_MS, now)
        if now - self.counted_ms >= COUNTS_EVERY_MS:
            self.status.counts = await orders.counts(self.db)
            self.counted_ms = now
        if trio.current_time() < self.paused_until:
            return False
        account = await self.conn.call(self.client.account)
        self.status.free_balance, self.status.usable_balance = account.free, account.usable
        if not await self.balance_ok(account.free):
            return False
        if not await self.conn.call(self.client.market_enabled):
            self.pause(f"the Crust market is switched off (Market.{self.client.market_switch}): an order would fail "
                       "with PlaceOrderNotAvailable and still pay its fee; pins stay queued")
            return False
        token = orders.CLAIM_PREFIX + uuid.uuid4().hex
        claimed = await self.db.run(orders.claim, token, self.batch_cap, now_ms())
        if not claimed:
            return False
        try:
            nonce = account.nonce  # the account's nonce at the head: the previous batch is settled by now
            head = await self.conn.call(self.client.finalized_head)
            size_cap = self.client.max_file_size
            items = [(c.cid, min(c.file_size or self.settings.default_file_size, size_cap)) for c in claimed]
            signed = await self.conn.call(self.client.sign_batch, items, nonce, head)
            cost = await self.conn.call(self.client.batch_cost, [size for _, size in items], signed.extrinsic)
            if cost > account.usable:
                await self.db.run(orders.release_claim, token, now_ms())
                self.pause(f"a batch of {len(items)} orders costs {cost} and the account can spend {account.usable} "
                           f"(free {account.free}, the rest frozen); pins stay queued until it is funded")
                await notify_webhook(self.settings.webhook, {
                    "event": "crust.balance_low", "free_balance": str(account.free),
                    "usable_balance": str(account.usable), "batch_cost": str(cost)})
                return False
            tx = {"hash": signed.tx_hash, "nonce": nonce, "extrinsic": signed.extrinsic,
                  "start_block": signed.start_block, "era_end": signed.era_end}
            await self.db.run(orders.record_tx, token, tx, [c.cid for c in claimed], now_ms())
        except orders.ClaimLost as exc:
            log.warning("crust batch abandoned before sending: %s", exc)
            await self.db.run(orders.release_claim, token, now_ms())
            return True
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.db.run(orders.release_claim, token, now_ms())
            raise
        self.status.last_batch_cost = cost
        log.info("crust batch of %d orders signed (nonce %d, cost %d, %s)", len(claimed), nonce, cost, signed.tx_hash)
        tx["cids"] = [c.cid for c in claimed]
        await self.settle(tx, fresh=True)
        return True

    async def balance_ok(self, free: int) -> bool:
        low = free < self.settings.min_balance
        if low != self.status.below_minimum:
            self.status.below_minimum = low
            payload = {"event": "crust.balance_low" if low else "crust.balance_ok", "account": self.client.address,
                       "free_balance": str(free), "min_balance": str(self.settings.min_balance)}
            if low:
                log.warning("crust ordering paused: free balance %d is below the minimum %d; pins stay queued",
                            free, self.settings.min_balance)
            else:
                log.info("crust ordering resumed: free balance %d is above the minimum", free)
            await notify_webhook(self.settings.webhook, payload)
        return not low

    async def _resolve(self, tx: dict[str, Any], outcome: dict[str, tuple[str, str | None]],
                       block: int | None) -> dict[str, int]:
        return await self.db.run(orders.resolve_tx, tx["hash"], outcome, block, now_ms(),
                                 self.settings.max_attempts, self.delays)

    async def settle(self, tx: dict[str, Any], *, fresh: bool) -> None:
        """Follow a recorded extrinsic until it is in a finalized block (apply per-item results) or provably
        dead. ``fresh``: signed in this process and never sent, so a refusal means no pool holds it."""
        cids: list[str] = tx["cids"]
        scanned = int(tx["start_block"]) - 1
        sent = False
        while True:
            found, final = await self.conn.call(self.client.find_inclusion, tx["hash"], scanned + 1)
            if found is not None:
                results = await self.conn.call(self.client.batch_outcome, found, len(cids))
                outcome = dict(zip(cids, results, strict=True))
                counts = await self._resolve(tx, outcome, found.block)
                self.next_nonce = max(self.next_nonce, int(tx["nonce"]) + 1)
                self.status.orders_placed += counts["ok"]
                log.info("crust batch %s in block %d: %d placed, %d failed, %d paused, %d re-queued",
                         tx["hash"], found.block, counts["ok"], counts["fail"], counts["pause"], counts["requeue"])
                if counts["pause"]:
                    reason = next(r for v, r in results if v == "pause")
                    self.pause(f"the chain refused orders for a reason not of the CIDs' making ({reason}); "
                               f"{counts['pause']} re-queued without an attempt charged")
                elif counts["ok"]:
                    self.resume()
                return
            scanned = final
            if final >= int(tx["era_end"]):
                # mortal and dead in a finalized block: it can never be included, so its orders are queued again
                await self._resolve(tx, {c: ("requeue", None) for c in cids}, None)
                log.warning("crust batch %s expired unincluded; %d orders re-queued", tx["hash"], len(cids))
                return
            if not sent:
                try:
                    await self.conn.call(self.client.submit, tx["extrinsic"])
                except TxRejected as exc:
                    if not exc.in_pool and fresh:
                        await self.refused(tx, exc)
                        return
                    if not exc.in_pool:
                        log.warning("crust batch %s refused on re-sending (%s): another node may hold it; waiting "
                                    "for its era to end at block %s", tx["hash"], exc, tx["era_end"])
                sent = True
            await trio.sleep(self.settings.block_poll)

    async def refused(self, tx: dict[str, Any], exc: TxRejected) -> None:
        """The node refused a batch no pool holds: re-queue it free, and pause (or fix what the kind says)."""
        reason = f"the node refused the order batch ({exc.kind}, code {exc.code}): {exc}"
        await self._resolve(tx, {c: ("pause", reason) for c in tx["cids"]}, None)
        self.status.error(reason)
        if exc.kind == EXHAUSTS:
            self.batch_cap = max(1, len(tx["cids"]) // 2)
            log.warning("crust batch of %d orders does not fit a block; batches now of at most %d",
                        len(tx["cids"]), self.batch_cap)
            return
        if exc.kind == BAD_PROOF:  # signed for another runtime version: read the runtime again before re-signing
            await self.conn.call(self.client.close)
        self.pause(reason + ("; the account cannot pay the fee" if exc.kind == PAYMENT else ""))


async def run_submitter(db: Database, settings: CrustSettings, status: CrustStatus, conn: Connection) -> None:
    await Submitter(db, settings, status, conn).run()
