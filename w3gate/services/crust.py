"""Crust ordering: health status and the background tasks the service runs beside the API."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from w3gate.crust.settings import CrustSettings
from w3gate.metrics import Metrics
from w3gate.redact import redact_url
from w3gate.store.db import Database

if TYPE_CHECKING:
    from w3gate.crust.chain import ChainClient, ClientFactory
    from w3gate.crust.records import KnownRecords

log = logging.getLogger(__name__)


@dataclass
class CrustStatus:
    """What /healthz shows about ordering (JSON-safe, never the secret)."""

    ordering_enabled: bool = False
    chain_connected: bool = False
    chain_url: str = ""
    account: str | None = None
    free_balance: int | None = None
    min_balance: int | None = None
    below_minimum: bool = False
    spec_version: int | None = None
    order_call: str | None = None
    files_map: str | None = None
    last_error: str | None = None
    last_error_ms: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    orders_placed: int = 0
    last_poll_ms: int | None = None
    usable_balance: int | None = None
    paused: str | None = None  # why ordering waits (market off, balance short of a batch, node refusals)
    paused_until_ms: int | None = None
    max_file_size: int | None = None
    era_period: int | None = None
    renewal: str = "reorder"
    last_batch_cost: int | None = None  # what the last batch sent was computed to cost (smallest unit)
    record_bytes: float = 0.0  # the poller's moving average of a file record's size
    known_records: KnownRecords | None = field(default=None, repr=False)  # the poller's decoded records, by digest
    role: str | None = None  # "leader" | "standby" (w3gate.services.leader); None while ordering is off
    cru_per_day: int = 0  # [limits] cru_per_day (0: no daily budget; w3gate.services.budget)
    cru_spent_today: int | None = None  # what today's recorded batches were computed to cost
    budget_spent: bool = False  # today's budget is spent: new orders wait queued until 00:00 UTC

    def error(self, text: str) -> None:
        self.last_error = text[:500]
        self.last_error_ms = int(time.time() * 1000)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ordering": "on" if self.ordering_enabled else "off",
            "ordering_enabled": self.ordering_enabled,
            "chain_connected": self.chain_connected,
            "chain_url": self.chain_url,
            "account": self.account,
            "free_balance": None if self.free_balance is None else str(self.free_balance),
            "min_balance": None if self.min_balance is None else str(self.min_balance),
            "below_minimum": self.below_minimum,
            "runtime_spec_version": self.spec_version,
            "order_call": self.order_call,
            "files_map": self.files_map,
            "last_error": self.last_error,
            "last_error_ms": self.last_error_ms,
            "orders": dict(self.counts),
            "orders_placed": self.orders_placed,
            "last_poll_ms": self.last_poll_ms,
            "usable_balance": None if self.usable_balance is None else str(self.usable_balance),
            "paused": self.paused,
            "paused_until_ms": self.paused_until_ms,
            "max_file_size": self.max_file_size,
            "era_period": self.era_period,
            "renewal": self.renewal,
            "last_batch_cost": None if self.last_batch_cost is None else str(self.last_batch_cost),
            "role": self.role,
            "cru_per_day": str(self.cru_per_day),
            "cru_spent_today": None if self.cru_spent_today is None else str(self.cru_spent_today),
            "budget_spent": self.budget_spent,
        }


def now_ms() -> int:
    return int(time.time() * 1000)


class Connection:
    """A chain client used from trio: one worker thread at a time, reconnect with back-off.
    ``client_factory`` builds the client (default ``CrustClient``; substrate-interface is imported only then);
    each call is timed, and counted if it fails, in ``metrics``."""

    def __init__(self, settings: CrustSettings, status: CrustStatus, name: str,
                 limiter: trio.CapacityLimiter | None = None, client_factory: ClientFactory | None = None,
                 metrics: Metrics | None = None) -> None:
        if client_factory is None:
            from w3gate.crust.client import CrustClient

            client_factory = CrustClient
        self.client: ChainClient = client_factory(settings)
        self.settings = settings
        self.status = status
        self.name = name
        # one thread at a time in a client; the service's connections share one limiter, so that a task
        # waits for the other's chain call in trio, where cancellation (shutdown) reaches it, rather
        # than in a worker thread on SCALE_LOCK
        self.limiter = limiter or trio.CapacityLimiter(1)
        self.metrics = metrics or Metrics()
        self._delay = 0.5

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking client method in a worker thread, within ``call_timeout``. Cancellation (shutdown or
        the deadline) does not wait for it: the socket is shut so the thread ends at once, and nothing is
        lost, since every extrinsic is recorded before it is sent and every write to the store happens here
        in trio, not in the thread. ``rpc_timeout`` bounds each socket read; only this deadline bounds a
        node that keeps sending without ever answering."""
        from w3gate.crust.client import ChainUnavailable

        name = getattr(fn, "__name__", "chain call")
        with trio.move_on_after(self.settings.call_timeout):
            try:
                return await trio.to_thread.run_sync(self._timed, name, fn, *args, limiter=self.limiter,
                                                     abandon_on_cancel=True)  # type: ignore[call-arg]
            except trio.Cancelled:
                self.client.abort()
                raise
        self.metrics.chain_errors.labels(name, "timeout").inc()
        raise ChainUnavailable(f"{name} took longer than call_timeout ({self.settings.call_timeout:g} s)")

    def _timed(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the worker thread, timed there (a wait for the other task's turn is not counted)."""
        from w3gate.crust.errors import ChainUnavailable, TxRejected

        started = time.perf_counter()
        try:
            return fn(*args)
        except Exception as exc:
            kind = ("unavailable" if isinstance(exc, ChainUnavailable) else
                    "rejected" if isinstance(exc, TxRejected) else "other")
            self.metrics.chain_errors.labels(name, kind).inc()
            raise
        finally:
            self.metrics.chain_duration.labels(name).observe(time.perf_counter() - started)

    async def ensure(self) -> ChainClient:
        """Connected client; waits (with back-off, forever) while the endpoint is down."""
        from w3gate.crust.errors import ChainUnavailable

        while not self.client.connected:
            try:
                await self.call(self.client.connect)
            except ChainUnavailable as exc:
                self.status.chain_connected = False
                self.status.error(str(exc))
                log.warning("crust %s: %s; retrying in %.1f s", self.name, exc, self._delay)
                await self._back_off()
                continue
            self._delay = 0.5
            self.status.chain_connected = True
            self.status.spec_version = self.client.spec_version
            self.status.order_call = f"Market.{self.client.order_call}"
            self.status.files_map = f"Market.{self.client.files_map}"
            self.status.max_file_size = self.client.max_file_size
            self.status.era_period = self.client.era_period
            self.status.renewal = self.client.renewal
            log.info("crust %s connected to %s", self.name, redact_url(self.settings.url))
        return self.client

    async def lost(self, exc: Exception) -> None:
        self.status.chain_connected = False
        self.status.error(str(exc))
        await self.call(self.client.close)
        log.warning("crust %s: connection lost (%s); reconnecting in %.1f s", self.name, exc, self._delay)
        await self._back_off()

    async def _back_off(self) -> None:
        """Wait the current delay, then double it (up to reconnect_max) for the next failure in a row."""
        await trio.sleep(self._delay)
        self._delay = min(self.settings.reconnect_max, self._delay * 2)

    async def keep_running(self, once: Callable[[], Awaitable[float]]) -> None:
        """Run ``once`` (it returns the seconds to wait before the next run) forever. Nothing the chain or the
        store does stops the task: a lost connection reconnects, an unsupported runtime waits for a change,
        any other error (a JSON-RPC error, a record that does not decode, a database hiccup) is logged,
        shown in /healthz, and retried after a back-off."""
        from w3gate.crust.errors import ChainUnavailable
        from w3gate.crust.typedefs import UnsupportedRuntime

        while True:
            try:
                await self.ensure()
                idle = await once()
            except ChainUnavailable as exc:
                await self.lost(exc)
                continue
            except UnsupportedRuntime as exc:
                log.error("crust %s stopped until the runtime changes: %s", self.name, exc)
                self.status.error(f"unsupported runtime: {exc}")
                await self.call(self.client.close)
                self.status.chain_connected = False
                await trio.sleep(self.settings.reconnect_max)
                continue
            except Exception as exc:  # noqa: BLE001 - see above: the service keeps serving
                log.exception("crust %s: unexpected %s; retrying in %.1f s", self.name, type(exc).__name__, self._delay)
                self.status.error(f"{self.name}: {type(exc).__name__}: {exc}")
                await self.call(self.client.close)
                await self._back_off()
                continue
            await trio.sleep(idle)


async def notify_webhook(url: str | None, payload: dict[str, Any]) -> None:
    """POST a JSON notice; failures are logged, never raised."""
    if not url:
        return

    def post() -> None:
        req = urllib.request.Request(
            url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - operator-configured URL
            resp.read(1024)

    try:
        await trio.to_thread.run_sync(post, abandon_on_cancel=True)  # type: ignore[call-arg]
    except Exception as exc:  # noqa: BLE001 - a webhook must not stop ordering
        log.warning("crust webhook %s failed: %s", redact_url(url), type(exc).__name__)


def crust_tasks(db: Database, settings: CrustSettings, status: CrustStatus,
                client_factory: ClientFactory | None = None,
                guard: Callable[[], Awaitable[None]] | None = None,
                metrics: Metrics | None = None, fetched_only: bool = False) -> list[Callable[[], Awaitable[None]]]:
    """The submitter and poller tasks (run each forever in the service's nursery), or [] if ordering is off.
    ``fetched_only``: new orders wait until the operator's IPFS node holds and measured their content.
    ``guard``: awaited before each batch is recorded; it cancels the submitter when this instance is no longer
    the ordering leader (w3gate.services.leader). Their chain calls and order verdicts are counted in
    ``metrics``."""
    from w3gate.services.poller import run_poller
    from w3gate.services.submitter import run_submitter

    status.chain_url = redact_url(settings.url)
    status.min_balance = settings.min_balance
    status.ordering_enabled = settings.ordering_enabled
    if not settings.ordering_enabled:
        log.warning(
            "crust ordering is OFF: no ordering account secret (set W3GATE_CRUST_SEED or crust.seed_file); "
            "the API serves and pins stay queued"
        )
        return []
    turns = trio.CapacityLimiter(1)
    submit_conn = Connection(settings, status, "submitter", turns, client_factory, metrics)
    status.account = submit_conn.client.address
    poll_conn = Connection(settings, status, "poller", turns, client_factory, metrics)

    async def submitter() -> None:
        await run_submitter(db, settings, status, submit_conn, guard, fetched_only)

    async def poller() -> None:
        await run_poller(db, settings, status, poll_conn)

    return [submitter, poller]
