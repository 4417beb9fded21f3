"""The Crust order submitter: queued CIDs -> signed Utility.batch extrinsics -> pinning.

One batch in flight at a time, so the account nonce read from the chain state after each settled batch
is the next one to use (not the node's pool view, ``system_accountNextIndex``). Each batch is claimed,
signed, priced, recorded (extrinsic bytes + hash) and only then sent; open records are settled with the
chain before anything new is claimed, which is what makes kill -9 safe (see w3gate.store.orders).

Money: nothing is signed while the market is switched off or the account cannot pay the batch (its cost
from the chain's own fee storage plus the extrinsic's fee, against the balance that is not frozen), and
a refusal that is not the CIDs' fault (the node refusing the extrinsic, the market or the account saying
no) pauses ordering with a back-off and re-queues the batch without charging its CIDs an attempt.
Inclusion and death are decided on finalized blocks, so a re-organisation cannot undo a verdict. A batch is
dead when its era ended, or as soon as a finalized block runs a newer runtime than the one it was signed
for (a runtime upgrade): then it is re-signed at once, without an attempt charged.

Renewal ``prepaid`` (:func:`plan_prepaid`): a renewal due before expiry is an ``add_prepaid`` top-up, so that
whoever calls ``calculate_reward`` once the file has expired renews it from the pool; a renewal due after
expiry is that ``calculate_reward`` (after a top-up if the fees rose), sent by w3gate if nobody did.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import trio

from w3gate.crust.chain import ChainClient, MarketCall
from w3gate.crust.errors import BAD_PROOF, EXHAUSTS, PAYMENT, TxRejected
from w3gate.crust.settings import CrustSettings, OrderTooLarge, order_size
from w3gate.ordering import lifecycle
from w3gate.ordering.budget import Budget
from w3gate.ordering.connection import ChainConnection
from w3gate.ordering.lifecycle import BatchCall, Outcome, RecordedBatch, Verdict
from w3gate.ordering.status import LastError, SubmitterStatus, now_ms
from w3gate.ordering.webhook import notify_webhook
from w3gate.store import orders
from w3gate.store.interface import Store

log = logging.getLogger(__name__)
STALE_CLAIM_MS = 30_000
# a prepaid top-up fills the pool to the renewal's price at today's fees plus this share (percent): the byte and
# keys fees move with the market, and a pool short by one unit when calculate_reward runs closes the file and
# keeps the pool (try_to_close_file)
PREPAID_HEADROOM = 10
COUNTS_EVERY_MS = 30_000  # the /healthz order counts scan the orders table: not on every idle step


class Submitter:
    """Places and renews orders, one batch at a time; :attr:`status` shows the account, pauses and counts."""

    def __init__(self, db: Store, settings: CrustSettings, conn: ChainConnection, budget: Budget | None = None,
                 guard: Callable[[], Awaitable[None]] | None = None, fetched_only: bool = False) -> None:
        self.db, self.settings, self.conn = db, settings, conn
        self.budget = budget or Budget(db, 0)  # [limits] cru_per_day
        self._status = SubmitterStatus()
        self.guard = guard  # cancels this task unless the instance still leads ordering
        self.fetched_only = fetched_only  # an IPFS node fetches and measures content before it is ordered
        self.next_nonce = 0
        self.counted_ms = 0
        self.delays = {a: int(settings.retry_delay(a) * 1000) for a in range(1, settings.max_attempts + 1)}
        self.pauses = 0  # consecutive pauses: the back-off doubles with each
        self.paused_until = 0.0  # trio clock
        self.batch_cap = settings.batch_size  # halved when the node says a batch exhausts the block

    @property
    def client(self) -> ChainClient:
        return self.conn.client

    @property
    def status(self) -> SubmitterStatus:
        return self._status

    def _show(self, **changes: Any) -> None:
        self._status = replace(self._status, **changes)

    def error(self, text: str) -> None:
        self._show(error=LastError.now(text))

    async def run(self) -> None:
        async def once() -> float:
            await self.conn.call(self.client.check_runtime)
            if self.client.spec_version != self.conn.status.spec_version:
                self.conn.runtime_read()
            return 0 if await self.step() else self.settings.order_interval

        await self.conn.keep_running(once)

    # pausing ------------------------------------------------------------------------------------
    def pause(self, reason: str) -> None:
        """Stop ordering for a while (doubling per consecutive pause, from retry_base up to retry_max)."""
        self.pauses += 1
        delay = max(self.settings.order_interval, self.settings.retry_delay(self.pauses))
        self.paused_until = trio.current_time() + delay
        self._show(paused=reason[:500], paused_until_ms=now_ms() + int(delay * 1000), error=LastError.now(reason))
        log.warning("crust ordering paused for %.0f s: %s", delay, reason)

    def resume(self) -> None:
        if self._status.paused is not None:
            log.info("crust ordering resumed (was paused: %s)", self._status.paused)
        self.pauses = 0
        self._show(paused=None, paused_until_ms=None)

    # one step -----------------------------------------------------------------------------------
    async def step(self) -> bool:
        """Settle open extrinsics, then place one batch; False when there was nothing to do."""
        for tx in await self.db.open_txs():
            await self.settle(tx, fresh=False)
        now = now_ms()
        await self.db.release_stale_claims(now - STALE_CLAIM_MS, now)
        if now - self.counted_ms >= COUNTS_EVERY_MS:
            self._show(counts=await self.db.order_counts())
            self.counted_ms = now
        if trio.current_time() < self.paused_until:
            return False
        if not await self.budget.allows_batch():  # [limits] cru_per_day
            return False
        account = await self.conn.call(self.client.account)
        self._show(free_balance=account.free, usable_balance=account.usable)
        if not await self.balance_ok(account.free):
            return False
        if not await self.conn.call(self.client.market_enabled):
            self.pause(f"the Crust market is switched off (Market.{self.client.market_switch}): an order would fail "
                       "with PlaceOrderNotAvailable and still pay its fee; pins stay queued")
            return False
        token = orders.CLAIM_PREFIX + uuid.uuid4().hex
        claimed = await self.db.claim_orders(token, self.batch_cap, now_ms(), self.fetched_only)
        if not claimed:
            return False
        try:
            nonce = account.nonce  # the account's nonce at the head: the previous batch is settled by now
            head = await self.conn.call(self.client.finalized_head)
            by_prepaid = [c.cid for c in claimed if c.renewal and self.client.renewal == "prepaid"]
            items: list[Any] = []
            too_large: dict[str, str] = {}
            for c in claimed:
                if c.cid not in by_prepaid:
                    try:
                        items.append((c.cid, order_size(c.file_size, self.settings.default_file_size,
                                                        self.client.max_file_size)))
                    except OrderTooLarge as exc:  # the chain would refuse it with FileTooLarge and keep the fee
                        too_large[c.cid] = str(exc)
            if too_large:
                for cid, reason in too_large.items():
                    log.warning("crust order of %s refused before sending: %s", cid, reason)
                    await self.db.refuse_claimed(token, [cid], reason, now_ms())
                claimed = [c for c in claimed if c.cid not in too_large]
                if not claimed:
                    return True
            if by_prepaid:
                calls, idle = await self.conn.call(plan_prepaid, self.client, by_prepaid, head)
                await self.db.prepaid_covers(token, idle, now_ms())
                claimed = [c for c in claimed if c.cid not in idle]
                items += calls
                if not items:
                    return True
            signed = await self.conn.call(self.client.sign_batch, items, nonce, head)
            sizes = [i[1] for i in items if not isinstance(i, MarketCall)]
            costs = cost_per_cid(items, await self.conn.call(self.client.order_costs, sizes),
                                 await self.conn.call(self.client.extrinsic_fee, signed.extrinsic))
            cost = sum(costs.values())
            if cost > account.usable:
                await self.db.release_claim(token, now_ms())
                self.pause(f"a batch of {len(items)} orders costs {cost} and the account can spend {account.usable} "
                           f"(free {account.free}, the rest frozen); pins stay queued until it is funded")
                await notify_webhook(self.settings.webhook, {
                    "event": "crust.balance_low", "free_balance": str(account.free),
                    "usable_balance": str(account.usable), "batch_cost": str(cost)})
                return False
            batch: tuple[BatchCall, ...] = tuple(i[0] if not isinstance(i, MarketCall) else i for i in items)
            tx = RecordedBatch(signed.tx_hash, nonce, signed.extrinsic, signed.start_block, signed.era_end,
                               signed.spec_version, batch)
            if self.guard is not None:  # the last moment to find out another instance may be ordering now
                await self.guard()
            await self.db.record_tx(token, tx, [c.cid for c in claimed], now_ms(), costs, self.client.renewal,
                                    batch)
        except orders.ClaimLost as exc:
            log.warning("crust batch abandoned before sending: %s", exc)
            await self.db.release_claim(token, now_ms())
            return True
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.db.release_claim(token, now_ms())
            raise
        self._show(last_batch_cost=cost)
        log.info("crust batch of %d calls for %d CIDs signed (nonce %d, cost %d, %s)", len(items), len(claimed),
                 nonce, cost, signed.tx_hash)
        await self.settle(tx, fresh=True)
        return True

    async def balance_ok(self, free: int) -> bool:
        low = free < self.settings.min_balance
        if low != self._status.below_minimum:
            self._show(below_minimum=low)
            payload = {"event": "crust.balance_low" if low else "crust.balance_ok", "account": self.client.address,
                       "free_balance": str(free), "min_balance": str(self.settings.min_balance)}
            if low:
                log.warning("crust ordering paused: free balance %d is below the minimum %d; pins stay queued",
                            free, self.settings.min_balance)
            else:
                log.info("crust ordering resumed: free balance %d is above the minimum", free)
            await notify_webhook(self.settings.webhook, payload)
        return not low

    async def _resolve(self, tx: RecordedBatch, outcome: dict[str, Outcome], block: int | None) -> dict[str, int]:
        counts = await self.db.resolve_tx(tx.hash, outcome, block, now_ms(), self.settings.max_attempts,
                                          self.delays)
        self.conn.metrics.order_verdicts(counts)
        return counts

    async def settle(self, tx: RecordedBatch, *, fresh: bool) -> None:
        """Follow a recorded extrinsic until it is in a finalized block (apply per-item results) or provably
        dead. ``fresh``: signed in this process and never sent, so a refusal means no pool holds it."""
        calls = list(tx.calls)
        cids = tx.cids
        scanned = tx.start_block - 1
        sent = False
        while True:
            found, final = await self.conn.call(self.client.find_inclusion, tx.hash, scanned + 1)
            if found is not None:
                results = await self.conn.call(self.client.batch_outcome, found, len(calls))
                outcome = per_cid(calls, results)
                counts = await self._resolve(tx, outcome, found.block)
                self.next_nonce = max(self.next_nonce, tx.nonce + 1)
                self._show(orders_placed=self._status.orders_placed + counts["ok"])
                log.info("crust batch %s in block %d: %d placed or renewed, %d topped up, %d failed, %d paused, "
                         "%d re-queued", tx.hash, found.block, counts["ok"], counts["topped"], counts["fail"],
                         counts["pause"], counts["requeue"])
                if counts["pause"]:
                    reason = next(r for v, r in results if v == Verdict.PAUSE)
                    self.pause(f"the chain refused orders for a reason not of the CIDs' making ({reason}); "
                               f"{counts['pause']} re-queued without an attempt charged")
                elif counts["ok"] or counts["topped"]:
                    self.resume()
                return
            scanned = final
            if await self.outdated(tx, final):
                return
            if final >= tx.era_end:
                # mortal and dead in a finalized block: it can never be included, so its orders are queued again
                await self._resolve(tx, {c: Outcome(Verdict.REQUEUE) for c in cids}, None)
                log.warning("crust batch %s expired unincluded; %d orders re-queued", tx.hash, len(cids))
                return
            if not sent:
                try:
                    await self.conn.call(self.client.submit, tx.extrinsic)
                except TxRejected as exc:
                    if not exc.in_pool and fresh:
                        await self.refused(tx, exc)
                        return
                    if not exc.in_pool:
                        log.warning("crust batch %s refused on re-sending (%s): another node may hold it; waiting "
                                    "for its era to end at block %s", tx.hash, exc, tx.era_end)
                sent = True
            await trio.sleep(self.settings.block_poll)

    async def outdated(self, tx: RecordedBatch, final: int) -> bool:
        """Re-queue (no attempt charged) a batch signed for a runtime that a finalized block replaced: the spec
        version is part of the signed payload (CheckSpecVersion), so once the runtime is newer it can never be
        included, and it was in no block up to ``final`` (scanned): no need to wait for its era to end."""
        signed = tx.spec_version
        if signed is None:  # recorded before spec versions were: its era decides
            return False
        now = await self.conn.call(self.client.spec_at, final)
        if now is None or now <= signed:
            return False
        reason = f"signed for runtime spec {signed}, replaced by spec {now} before it was included: re-signed"
        cids = tx.cids
        await self._resolve(tx, {c: Outcome(Verdict.PAUSE, reason) for c in cids}, None)
        log.warning("crust batch %s: %s; %d orders re-queued without an attempt charged", tx.hash, reason, len(cids))
        return True

    async def refused(self, tx: RecordedBatch, exc: TxRejected) -> None:
        """The node refused a batch no pool holds: re-queue it free, and pause (or fix what the kind says)."""
        reason = f"the node refused the order batch ({exc.kind}, code {exc.code}): {exc}"
        await self._resolve(tx, {c: Outcome(Verdict.PAUSE, reason) for c in tx.cids}, None)
        self.error(reason)
        if exc.kind == EXHAUSTS:
            self.batch_cap = max(1, len(tx.calls) // 2)
            log.warning("crust batch of %d orders does not fit a block; batches now of at most %d",
                        len(tx.calls), self.batch_cap)
            return
        if exc.kind == BAD_PROOF:  # signed for another runtime version: read the runtime again before re-signing
            await self.conn.call(self.client.close)
        self.pause(reason + ("; the account cannot pay the fee" if exc.kind == PAYMENT else ""))


def plan_prepaid(client: ChainClient, cids: list[str], head: int) -> tuple[list[MarketCall], list[str]]:
    """The calls that renew ``cids`` by prepaid (blocking: run in the client's thread), and the CIDs that need
    none now. Before expiry: top the pool up to the renewal's price plus :data:`PREPAID_HEADROOM` if it holds
    less. After expiry (nobody has called ``calculate_reward`` yet): top up if the pool no longer covers the
    price, then ``calculate_reward``, which renews the file from the pool (and pays its caller, w3gate here,
    the renewal reward or the expired file's remainder). A pending file (no expiry yet) or one gone needs
    nothing: the poller re-orders a file that is gone."""
    records = client.files(cids)
    fees = client.fees()
    calls: list[MarketCall] = []
    idle: list[str] = []
    for cid in cids:
        rec = records.get(cid)
        if rec is None or not rec.expires_at:
            idle.append(cid)
            continue
        price = client.renewal_price(rec.file_size, fees)
        target = price + price * PREPAID_HEADROOM // 100
        expired = rec.expires_at <= head
        if rec.prepaid < (price if expired else target):
            calls.append(MarketCall("add_prepaid", cid, target - rec.prepaid))
        if expired:
            calls.append(MarketCall("calculate_reward", cid))
        elif rec.prepaid >= target:
            idle.append(cid)
    return calls, idle


def cost_per_cid(items: list[Any], prices: list[int], fee: int) -> dict[str, int]:
    """What a batch spends per CID: its order's price and tip (``prices``, in order) or its prepaid top-ups, plus
    a share of the extrinsic's ``fee``; the shares add up to the batch's cost exactly."""
    costs: dict[str, int] = {}
    price = iter(prices)
    for item in items:
        cid, spent = (item.cid, item.amount) if isinstance(item, MarketCall) else (item[0], next(price))
        costs[cid] = costs.get(cid, 0) + spent
    for i, cid in enumerate(costs):
        costs[cid] += fee // len(costs) + (1 if i < fee % len(costs) else 0)
    return costs


def per_cid(calls: list[BatchCall], results: list[tuple[str, str | None]]) -> dict[str, Outcome]:
    """Per-call verdicts -> one per CID (the worst of its calls'). A renewal whose calls were only a prepaid top-up
    is TOPPED."""
    said: dict[str, list[Outcome]] = {}
    topped: dict[str, bool] = {}
    for call, (verdict, reason) in zip(calls, results, strict=True):
        cid = lifecycle.call_cid(call)
        topped[cid] = topped.get(cid, True) and isinstance(call, MarketCall) and call.call == "add_prepaid"
        said.setdefault(cid, []).append(Outcome(Verdict(verdict), reason))
    out: dict[str, Outcome] = {}
    for cid, outcomes in said.items():
        worst = lifecycle.worst([o.verdict for o in outcomes])
        first = next(o for o in outcomes if o.verdict == worst)  # the first call with that verdict gives the reason
        out[cid] = Outcome(Verdict.TOPPED) if worst == Verdict.OK and topped[cid] else first
    return out
