"""One connection to the Crust chain, used from trio: a worker thread at a time, timed calls, reconnection."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import trio

from w3gate.crust.chain import ChainClient, ClientFactory
from w3gate.crust.errors import ChainUnavailable, TxRejected
from w3gate.crust.settings import CrustSettings
from w3gate.crust.typedefs import UnsupportedRuntime
from w3gate.metrics import Metrics
from w3gate.ordering.status import ChainStatus, LastError, sequence
from w3gate.redact import redact_url

log = logging.getLogger(__name__)


class ChainConnection:
    """A chain client used from trio: one worker thread at a time, reconnect with back-off.
    ``client_factory`` builds the client (default ``CrustClient``; substrate-interface is imported only then);
    each call is timed, and counted if it fails, in ``metrics``. :attr:`status`: what it last knew of the chain."""

    def __init__(self, settings: CrustSettings, name: str,
                 limiter: trio.CapacityLimiter | None = None, client_factory: ClientFactory | None = None,
                 metrics: Metrics | None = None) -> None:
        if client_factory is None:
            from w3gate.crust.client import CrustClient

            client_factory = CrustClient
        self.client: ChainClient = client_factory(settings)
        self.settings = settings
        self._status = ChainStatus()
        self.name = name
        # one thread at a time in a client; the service's connections share one limiter, so that a task
        # waits for the other's chain call in trio, where cancellation (shutdown) reaches it, rather
        # than in a worker thread on SCALE_LOCK
        self.limiter = limiter or trio.CapacityLimiter(1)
        self.metrics = metrics or Metrics()
        self._delay = 0.5

    @property
    def status(self) -> ChainStatus:
        return self._status

    def error(self, text: str) -> None:
        self._status = replace(self._status, error=LastError.now(text))

    def _connected(self, connected: bool) -> None:
        if connected != self._status.connected:
            self._status = replace(self._status, connected=connected, seq=sequence())

    def runtime_read(self) -> None:
        """Show what the client read from the runtime (on connecting, and after a runtime check)."""
        c = self.client
        self._status = replace(self._status, connected=True, spec_version=c.spec_version,
                               order_call=f"Market.{c.order_call}", files_map=f"Market.{c.files_map}",
                               max_file_size=c.max_file_size, era_period=c.era_period, renewal=c.renewal,
                               seq=sequence())

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking client method in a worker thread, within ``call_timeout``. Cancellation (shutdown or
        the deadline) does not wait for it: the socket is shut so the thread ends at once, and nothing is
        lost, since every extrinsic is recorded before it is sent and every write to the store happens here
        in trio, not in the thread. ``rpc_timeout`` bounds each socket read; only this deadline bounds a
        node that keeps sending without ever answering."""
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
        while not self.client.connected:
            try:
                await self.call(self.client.connect)
            except ChainUnavailable as exc:
                self._connected(False)
                self.error(str(exc))
                log.warning("crust %s: %s; retrying in %.1f s", self.name, exc, self._delay)
                await self._back_off()
                continue
            self._delay = 0.5
            self.runtime_read()
            log.info("crust %s connected to %s", self.name, redact_url(self.settings.url))
        return self.client

    async def lost(self, exc: Exception) -> None:
        self._connected(False)
        self.error(str(exc))
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
        while True:
            try:
                await self.ensure()
                idle = await once()
            except ChainUnavailable as exc:
                await self.lost(exc)
                continue
            except UnsupportedRuntime as exc:
                log.error("crust %s stopped until the runtime changes: %s", self.name, exc)
                self.error(f"unsupported runtime: {exc}")
                await self.call(self.client.close)
                self._connected(False)
                await trio.sleep(self.settings.reconnect_max)
                continue
            except Exception as exc:  # noqa: BLE001 - see above: the service keeps serving
                log.exception("crust %s: unexpected %s; retrying in %.1f s", self.name, type(exc).__name__, self._delay)
                self.error(f"{self.name}: {type(exc).__name__}: {exc}")
                await self.call(self.client.close)
                await self._back_off()
                continue
            await trio.sleep(idle)
