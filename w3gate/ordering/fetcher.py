"""The operator's IPFS node at work: fetch each queued content, measure it, hold it until Crust has it.

What it makes true (w3gate.store.ipfs_content has the states): a new order is claimed by the submitter only once
the node has pinned its content (recursive ``pin/add``, after ``swarm/connect`` to the pin's public origins) and
measured it (``files/stat`` CumulativeSize, ``dag/stat`` where the node has it): the order reports that size, and
Crust's storage nodes can fetch the content from this node (provided to the DHT where the node can). Content
that cannot be fetched within ``fetch_timeout`` fails its pins with the reason, and nothing is ordered (and the node
is left with no pin of it); content at or over the chain's MaximumFileSize fails before ordering (here when the
chain's limit is known, else in the submitter before sending). ``hold`` decides when the node unpins it again.

Faults: a node down or slow makes pins wait ("waiting for the IPFS node"), never fail, and /healthz says why; the
fetcher retries with back-off. A fetch cut by a kill is resumed at start. At each (re)connection the node's pins
are reconciled with the store: content w3gate holds that the node lost is fetched again (if still queued),
content no longer needed is unpinned, and content the node had pinned before w3gate asked is never unpinned.
It runs as leader work (w3gate.ordering.leader): one instance of a fleet fetches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableSequence
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from w3gate.cids import CidError, parse
from w3gate.ipfs.addresses import NodeAddresses
from w3gate.ipfs.kubo import CALL_TIMEOUT, Kubo, NodeError, NodeUnavailable
from w3gate.ipfs.settings import IpfsSettings
from w3gate.metrics import Metrics
from w3gate.ordering import lifecycle
from w3gate.ordering.status import now_ms
from w3gate.store.interface import Store
from w3gate.store.ipfs_content import Due

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks for new work
RETRY_MAX = 300.0  # seconds between tries of a content waiting for providers, at most
NODE_RETRY_MAX = 10.0  # seconds between tries to reach a node that is down, at most (an `id` call is cheap)
DELEGATES_EVERY = 300.0  # seconds between reads of the node's addresses for the delegates


@dataclass(frozen=True)
class IpfsStatus:
    """What /healthz shows about the node (never the RPC URL's credentials)."""

    enabled: bool = False
    rpc_url: str = ""
    connected: bool = False
    peer_id: str | None = None
    hold: str = ""
    delegates: tuple[str, ...] = ()
    fetching: int = 0
    held: Mapping[str, int] = field(default_factory=dict)  # replaced, never changed in place
    last_error: str | None = None
    last_error_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "rpc_url": self.rpc_url, "connected": self.connected,
                "peer_id": self.peer_id, "hold": self.hold, "delegates": list(self.delegates),
                "fetching": self.fetching, "content": dict(self.held), "last_error": self.last_error,
                "last_error_ms": self.last_error_ms}


class Fetcher:
    """The fetch stage of ordering; :attr:`status` shows the node. ``max_file_size``: the chain's limit (None
    until the chain was reached)."""

    def __init__(self, db: Store, settings: IpfsSettings, max_file_size: Callable[[], int | None],
                 delegates: MutableSequence[str], kubo: Kubo | None = None, metrics: Metrics | None = None) -> None:
        self.db, self.settings, self.max_file_size = db, settings, max_file_size
        self.metrics = metrics or Metrics()
        self.kubo = kubo or Kubo(settings.rpc_url)
        self.delegates = delegates  # the PinService's list: replaced in place by the node's addresses
        self.addresses = NodeAddresses(settings, delegates)
        self.busy: dict[str, trio.CancelScope] = {}
        self.node_pins: set[str] = set()  # content keys the node had pinned at the last reconciliation
        self.tries: dict[str, int] = {}
        self.node_delay = 1.0
        self.wake = trio.Event()
        self._status = IpfsStatus(enabled=True, hold=settings.hold, rpc_url=self.kubo.shown,
                                  delegates=tuple(delegates))

    @property
    def status(self) -> IpfsStatus:
        return self._status

    def _show(self, **changes: Any) -> None:
        self._status = replace(self._status, **changes)

    def error(self, text: str) -> None:
        self._show(last_error=text[:500], last_error_ms=now_ms())

    # the loop ---------------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    await self.step(nursery)
                    with trio.move_on_after(POLL if self._status.connected else self.node_delay):
                        await self.wake.wait()
                    self.wake = trio.Event()
        finally:
            with trio.CancelScope(shield=True):
                await self.kubo.aclose()

    async def step(self, nursery: trio.Nursery) -> None:
        """Reach the node (reconciling at each connection), release what is no longer needed, start fetches."""
        try:
            if not self._status.connected:
                await self.connect()
            await self.release()
            free = self.settings.fetch_concurrency - len(self.busy)
            if free > 0:
                for item in await self.db.ipfs_due(free, now_ms(), list(self.busy)):
                    self.busy[item.key] = trio.CancelScope()
                    nursery.start_soon(self.fetch, item)
            self._show(fetching=len(self.busy), held=await self.db.ipfs_counts())
        except NodeUnavailable as exc:
            self.lost(str(exc))
        except Exception as exc:  # noqa: BLE001 - the service keeps serving; pins wait
            log.exception("ipfs fetcher: unexpected %s", type(exc).__name__)
            self.error(f"{type(exc).__name__}: {exc}")
            self.node_delay = min(NODE_RETRY_MAX, self.node_delay * 2)
            self._show(connected=False)

    def lost(self, why: str) -> None:
        if self._status.connected or self._status.last_error != why:
            log.warning("ipfs node unavailable (%s); pins wait; retrying in %.0f s", why, self.node_delay)
        self._show(connected=False)
        self.error(why)
        self.node_delay = min(NODE_RETRY_MAX, self.node_delay * 2)

    async def connect(self) -> None:
        ident = await self.kubo.id()
        self.delegates[:] = learned = self.addresses.learn(ident)
        self._show(peer_id=str(ident.get("ID", "")), delegates=tuple(learned))
        await self.reconcile()
        self._show(connected=True)
        self.node_delay = 1.0
        log.info("ipfs node %s (%s) connected; delegates: %s", self.kubo.shown, self._status.peer_id,
                 ", ".join(self.delegates) or "none")

    async def reconcile(self) -> None:
        """The node's pins against the store's rows: held content the node lost is forgotten (fetched again while
        its order is queued); fetches under way get a fresh ``fetch_timeout``."""
        pinned = set()
        for text in await self.kubo.pin_ls():
            try:
                pinned.add(parse(text).key)
            except CidError:
                continue
        self.node_pins = pinned
        lost = 0
        for r in await self.db.ipfs_all_rows():
            if r["state"] == "held" and r["cid_key"] not in pinned:
                await self.db.ipfs_forget(r["cid_key"])
                lost += 1
        await self.db.ipfs_restart_clocks(now_ms())
        if lost:
            log.warning("ipfs node: %d contents w3gate held are no longer pinned there: fetched again where needed",
                        lost)

    async def release(self) -> None:
        """Unpin what the hold mode no longer needs (only what w3gate pinned), and forget it."""
        for r in await self.db.ipfs_releasable(self.settings.hold, 100):
            key = r["cid_key"]
            if key in self.busy:  # no longer wanted while it is being fetched: stop; the next pass forgets it
                self.busy[key].cancel()
                continue
            if r["ours"]:
                try:
                    await self.kubo.pin_rm(r["cid"])
                except NodeError as exc:
                    log.warning("ipfs node: pin/rm %s: %s", r["cid"], exc)
                    continue
                log.info("ipfs node: released %s (hold %s)", r["cid"], self.settings.hold)
            await self.db.ipfs_forget(key)

    # one fetch --------------------------------------------------------------------------------------
    async def fetch(self, item: Due) -> None:
        self.metrics.fetches_started.inc()
        outcome = "cancelled"  # stays so when release() stops the fetch (or the service stops)
        try:
            with self.busy[item.key]:
                outcome = await self._fetch(item)
        except NodeUnavailable as exc:
            outcome = "node_unavailable"
            await self._wait(item, f"waiting for the IPFS node: {exc}", self.node_delay)
            self.lost(str(exc))
        except Exception as exc:  # noqa: BLE001 - one content's trouble stops neither the others nor the service
            outcome = "error"
            log.exception("ipfs fetch of %s: unexpected %s", item.cid, type(exc).__name__)
            await self._wait(item, f"fetch interrupted ({type(exc).__name__}); retrying", self._backoff(item.key))
        finally:
            if outcome != "fetched":  # a success is counted with its size where it is known
                self.metrics.fetch_ended(outcome)
            self.busy.pop(item.key, None)
            self._show(fetching=len(self.busy))
            self.wake.set()

    def _backoff(self, key: str) -> float:
        n = self.tries[key] = self.tries.get(key, 0) + 1
        return min(RETRY_MAX, self.settings.stall_timeout, 2.0 * 2 ** (n - 1))

    async def _wait(self, item: Due, reason: str, delay: float) -> None:
        with trio.CancelScope(shield=True):
            await self.db.ipfs_waiting(item.key, reason, now_ms() + int(delay * 1000), now_ms())

    async def _fetch(self, item: Due) -> str:
        """One try: its outcome, ``fetched`` or a reason of :data:`w3gate.metrics.FETCH_FAILURES`."""
        s = self.settings
        # pinned on the node before w3gate asked (seen at the last reconciliation; ``pin/ls`` of one CID would
        # fetch it): then it is not w3gate's to unpin
        ours = item.key not in self.node_pins
        started, ours = await self.db.ipfs_begin(item.key, item.cid, ours, now_ms())
        while True:
            # at least one try, even past the deadline: content the node already holds (a re-pin, a restart after
            # the fetch ended) is then found at once rather than given up
            remaining = max(s.fetch_timeout - (now_ms() - started) / 1000, s.stall_timeout)
            for addr in await self.addresses.dialable(item.origins):
                await self.kubo.swarm_connect(addr)
            before = await self.kubo.repo_size()
            result = await self.kubo.pin_add(item.cid, remaining, s.stall_timeout)
            if result.done and await self.kubo.pin_ls(item.cid):
                break
            grew = await self.kubo.repo_size() > before
            remaining = s.fetch_timeout - (now_ms() - started) / 1000
            if remaining <= 0:
                if ours:  # the node may finish a pin w3gate stopped waiting for: none may stay without a record
                    await self.kubo.pin_rm(item.cid)
                await self.db.ipfs_give_up(item.key, (
                    f"could not be fetched: no provider gave its blocks within fetch_timeout ({s.fetch_timeout:g} s)"
                    f"; tried {len(item.origins)} origins"), now_ms())
                self.tries.pop(item.key, None)
                log.warning("ipfs fetch of %s failed: not fetched within %g s", item.cid, s.fetch_timeout)
                return "timeout"
            if not result.saw_progress and grew and not result.done:
                continue  # a node that reports no progress (js-ipfs) is fetching: ask again at once
            delay = min(self._backoff(item.key), max(0.0, remaining - 0.5))
            await self._wait(item, f"waiting for providers: nothing fetched for {s.stall_timeout:g} s (gives up "
                                   f"{s.fetch_timeout:g} s after the fetch began)", delay)
            return "stalled"
        self.tries.pop(item.key, None)
        size = await self.kubo.cumulative_size(item.cid, CALL_TIMEOUT)
        dag = await self.kubo.dag_size(item.cid, CALL_TIMEOUT)
        size = max(size, dag or 0)
        # the chain's limit is unknown until the chain is reached: the content is recorded as held all the same
        # (it is on the node: never asked for again, released by the hold mode) and the submitter, which claims
        # only once connected, refuses an order at or over the limit before sending it
        cap = self.max_file_size()
        refused = lifecycle.too_large(size, cap)
        if refused is not None:
            if ours:
                await self.kubo.pin_rm(item.cid)
            await self.db.ipfs_give_up(item.key, refused, now_ms())
            log.warning("ipfs fetch of %s: %d bytes is at or over MaximumFileSize %d: failed", item.cid, size, cap)
            return "too_large"
        await self.db.ipfs_fetched(item.key, size, now_ms())
        self.metrics.fetch_ended("fetched", size, max(0.0, (now_ms() - started) / 1000))
        log.info("ipfs node fetched %s: %d bytes", item.cid, size)
        try:
            provided = await self.kubo.provide(item.cid)
        except (NodeError, NodeUnavailable) as exc:
            log.info("ipfs node: providing %s failed (%s); Crust's nodes can still fetch it from the delegates",
                     item.cid, exc)
        else:
            if not provided:
                log.debug("ipfs node: no routing/provide; %s is not announced to the DHT by w3gate", item.cid)
        return "fetched"


def ipfs_tasks(db: Store, settings: IpfsSettings, max_file_size: Callable[[], int | None],
               delegates: MutableSequence[str], metrics: Metrics | None = None) -> tuple[Fetcher | None, list[Any]]:
    """The node's work: (the fetcher, whose ``run`` is leader work, so that one instance of a fleet fetches; the
    delegates' refresh, a task for every instance). None and [] without a node, and the start-up log says what is
    then not guaranteed."""
    if not settings.enabled:
        log.warning(
            "no IPFS node ([ipfs] rpc_url unset): CIDs are ordered on Crust as given, at [crust] default_file_size, "
            "without w3gate seeing the content; nothing makes sure it exists or that Crust's nodes can fetch it, "
            "and PinStatus delegates are the configured ones"
        )
        return None, []
    fetcher = Fetcher(db, settings, max_file_size, delegates, metrics=metrics)

    async def delegates_task() -> None:
        await keep_delegates(settings, delegates)

    return fetcher, [delegates_task]


async def keep_delegates(settings: IpfsSettings, delegates: MutableSequence[str]) -> None:
    """Every instance (the fetcher runs on the leader only): the PinStatus delegates from the node's ``id``, asked
    again every :data:`DELEGATES_EVERY` seconds (sooner while the node does not answer)."""
    kubo = Kubo(settings.rpc_url)
    addresses = NodeAddresses(settings, delegates)
    delay = 1.0
    try:
        while True:
            try:
                delegates[:] = addresses.learn(await kubo.id())
                delay = DELEGATES_EVERY
            except (NodeUnavailable, NodeError) as exc:
                log.debug("ipfs node: delegates not refreshed (%s)", exc)
                delay = min(NODE_RETRY_MAX, delay * 2)
            await trio.sleep(delay)
    finally:
        with trio.CancelScope(shield=True):
            await kubo.aclose()

