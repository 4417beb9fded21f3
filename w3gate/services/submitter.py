"""The Crust order submitter: queued CIDs -> signed Utility.batch extrinsics -> pinning.

One batch in flight at a time, so the account nonce read from the chain state after each settled batch
is the next one to use (not the node's pool view, ``system_accountNextIndex``). A stale nonce from a
lagging node is harmless: the node refuses it and the batch is re-queued when its era ends. Each batch is
claimed, signed, recorded (extrinsic bytes + hash) and only then sent; open records are settled with
the chain before anything new is claimed, which is what makes kill -9 safe (see w3gate.store.orders).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import trio

from w3gate.crust.client import ChainUnavailable, CrustClient, TxRejected
from w3gate.crust.settings import CrustSettings
from w3gate.crust.typedefs import UnsupportedRuntime
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

    @property
    def client(self) -> CrustClient:
        return self.conn.client

    async def run(self) -> None:
        while True:
            try:
                await self.conn.ensure()
                await self.conn.call(self.client.check_runtime)
                self.status.spec_version = self.client.spec_version
                if not await self.step():
                    await trio.sleep(self.settings.order_interval)
            except ChainUnavailable as exc:
                await self.conn.lost(exc)
            except UnsupportedRuntime as exc:
                log.error("crust ordering stopped: %s", exc)
                self.status.error(f"unsupported runtime: {exc}")
                await self.conn.call(self.client.close)
                self.status.chain_connected = False
                await trio.sleep(self.settings.reconnect_max)

    async def step(self) -> bool:
        """Settle open extrinsics, then place one batch; False when there was nothing to do."""
        for tx in await self.db.run(orders.open_txs):
            await self.settle(tx, sent=False)
        now = now_ms()
        await self.db.run(orders.release_stale_claims, now - STALE_CLAIM_MS, now)
        if now - self.counted_ms >= COUNTS_EVERY_MS:
            self.status.counts = await orders.counts(self.db)
            self.counted_ms = now
        chain_nonce, free = await self.conn.call(self.client.account)
        self.status.free_balance = free
        if not await self.balance_ok(free):
            return False
        token = orders.CLAIM_PREFIX + uuid.uuid4().hex
        claimed = await self.db.run(orders.claim, token, self.settings.batch_size, now_ms())
        if not claimed:
            return False
        try:
            # the account's nonce at the head: the previous batch is settled (included or dead) by now
            nonce = chain_nonce
            head = await self.conn.call(self.client.finalized_head)
            items = [(c.cid, c.file_size or self.settings.default_file_size) for c in claimed]
            signed = await self.conn.call(self.client.sign_batch, items, nonce, head)
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
        log.info("crust batch of %d orders signed (nonce %d, %s)", len(claimed), nonce, signed.tx_hash)
        tx["cids"] = [c.cid for c in claimed]
        await self.settle(tx, sent=False)
        return True

    async def balance_ok(self, free: int) -> bool:
        low = free < self.settings.min_balance
        if low != self.status.below_minimum:
            self.status.below_minimum = low
            payload = {"event": "crust.balance_low" if low else "crust.balance_ok", "account": self.client.address,
                       "free_balance": str(free), "min_balance": str(self.settings.min_balance)}
            if low:
                log.warning("crust ordering paused: free balance %d of %s is below the minimum %d; pins stay queued",
                            free, self.client.address, self.settings.min_balance)
            else:
                log.info("crust ordering resumed: free balance %d is above the minimum", free)
            await notify_webhook(self.settings.webhook, payload)
        return not low

    async def settle(self, tx: dict[str, Any], *, sent: bool) -> None:
        """Follow a recorded extrinsic until it is on chain (apply per-item results) or provably dead."""
        cids: list[str] = tx["cids"]
        scanned = int(tx["start_block"]) - 1
        while True:
            head = await self.conn.call(self.client.head)
            found = await self.conn.call(self.client.find_inclusion, tx["hash"], scanned + 1, head)
            if found is not None:
                results = await self.conn.call(self.client.batch_outcome, found, len(cids))
                outcome = dict(zip(cids, results, strict=True))
                counts = await self.db.run(orders.resolve_tx, tx["hash"], outcome, found.block, now_ms(),
                                           self.settings.max_attempts, self.delays)
                self.next_nonce = max(self.next_nonce, int(tx["nonce"]) + 1)
                self.status.orders_placed += counts["ok"]
                log.info("crust batch %s in block %d: %d placed, %d failed, %d re-queued",
                         tx["hash"], found.block, counts["ok"], counts["fail"], counts["requeue"])
                return
            scanned = head
            if head > int(tx["era_end"]):
                # mortal: it can never be included now, so its orders are simply queued again
                await self.db.run(orders.resolve_tx, tx["hash"], {c: ("requeue", None) for c in cids}, None,
                                  now_ms(), self.settings.max_attempts, self.delays)
                log.warning("crust batch %s expired unincluded; %d orders re-queued", tx["hash"], len(cids))
                return
            if not sent:
                try:
                    await self.conn.call(self.client.submit, tx["extrinsic"])
                except TxRejected as exc:
                    if not (exc.known or exc.stale):
                        reason = f"order rejected by the node: {exc}"
                        counts = await self.db.run(orders.resolve_tx, tx["hash"], {c: ("fail", reason) for c in cids},
                                                   None, now_ms(), self.settings.max_attempts, self.delays)
                        self.status.error(reason)
                        log.warning("crust batch %s rejected (%s): %d orders to retry, %d failed",
                                    tx["hash"], exc, counts["fail"] - counts["failed"], counts["failed"])
                        return
                sent = True
            await trio.sleep(self.settings.block_poll)


async def run_submitter(db: Database, settings: CrustSettings, status: CrustStatus, conn: Connection) -> None:
    await Submitter(db, settings, status, conn).run()
