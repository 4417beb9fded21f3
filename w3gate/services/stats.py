"""What ``GET /metrics`` reads when scraped rather than counts as it happens: the database's pins by status,
queued orders and content on the IPFS node, the ordering account's balance, the token cache's counters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from w3gate.ordering.status import OrderingStatus
from w3gate.store.interface import Store
from w3gate.store.models import PIN_STATUSES

if TYPE_CHECKING:
    from w3gate.w3auth.authenticator import Authenticator

log = logging.getLogger(__name__)
SCRAPE_TIMEOUT = 5.0  # seconds the counts may take (Prometheus' default scrape timeout is 10 s)
# pin_counts is kept by triggers (one row per owner and status); a queued order counts while a pin wants it,
# as the submitter claims only those: both read from indexes, on a read-only connection beside the API
COUNTS_SQL = (
    "SELECT 'pins', status, COALESCE(SUM(n), 0) FROM pin_counts GROUP BY status UNION ALL "
    "SELECT 'queued', '', COUNT(*) FROM orders o WHERE o.status = 'queued' "
    "AND EXISTS (SELECT 1 FROM pins p WHERE p.cid_key = o.cid_key) UNION ALL "
    "SELECT 'ipfs', state, COUNT(*) FROM ipfs_content GROUP BY state"
)
IPFS_STATES = ("fetching", "held")


class ServiceStats:
    """Builds the scrape-time metric families of one service."""

    def __init__(self, db: Store, crust: Callable[[], OrderingStatus], authenticator: Authenticator) -> None:
        self.db, self.crust, self.authenticator = db, crust, authenticator

    async def __call__(self) -> list[Metric]:
        return [*await self._counts(), *self._cache(), *self._crust()]

    async def _counts(self) -> list[Metric]:
        try:
            rows = await self.db.read_aside(COUNTS_SQL, timeout=SCRAPE_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - a scrape reports what it can; the series are left out
            log.warning("metrics: pin and order counts unavailable: %s: %s", type(exc).__name__, exc)
            return []
        by_status = {str(status): int(n) for kind, status, n in rows if kind == "pins"}
        pins = GaugeMetricFamily("w3gate_pins", "Pin requests by status", labels=["status"])
        for status in PIN_STATUSES:
            pins.add_metric([status], by_status.get(status, 0))
        queued = sum(int(n) for kind, _, n in rows if kind == "queued")
        by_state = {str(state): int(n) for kind, state, n in rows if kind == "ipfs"}
        content = GaugeMetricFamily("w3gate_ipfs_content", "Contents w3gate has pinned on the IPFS node, by state: "
                                    "fetching, or held (fetched and measured, kept until the hold mode releases it)",
                                    labels=["state"])
        for state in IPFS_STATES:
            content.add_metric([state], by_state.get(state, 0))
        return [pins, GaugeMetricFamily("w3gate_orders_queued", "Crust orders waiting to be placed (queue depth)",
                                        value=queued), content]

    def _cache(self) -> list[Metric]:
        auth = self.authenticator
        cache = CounterMetricFamily("w3gate_token_cache_lookups", "Token cache look-ups: hit (a verified token), "
                                    "rejected (a token rejected lately), miss (a signature check ran)",
                                    labels=["result"])
        cache.add_metric(["hit"], auth.cache_hits)
        cache.add_metric(["rejected"], auth.cache_rejections)
        cache.add_metric(["miss"], auth.cache_misses)
        return [cache, GaugeMetricFamily("w3gate_token_cache_entries", "Verified tokens in the cache",
                                         value=auth.cached_tokens)]

    def _crust(self) -> list[Metric]:
        c = self.crust()
        s = c.submitter
        out: list[Metric] = [
            GaugeMetricFamily("w3gate_crust_ordering_enabled", "1 if an ordering account is configured",
                              value=int(c.ordering_enabled)),
            GaugeMetricFamily("w3gate_crust_chain_connected", "1 while the chain endpoint is connected",
                              value=int(c.chain.connected)),
            GaugeMetricFamily("w3gate_crust_ordering_paused", "1 while ordering waits (balance below the minimum, "
                              "market off, a batch the account cannot pay, node refusals)",
                              value=int(s.paused is not None or s.below_minimum)),
            # several instances on PostgreSQL: exactly one of them should say 1 (w3gate.ordering.leader)
            GaugeMetricFamily("w3gate_crust_ordering_leader", "1 while this instance is the ordering leader",
                              value=int(c.role == "leader")),
        ]
        if s.free_balance is not None:
            balance = GaugeMetricFamily("w3gate_crust_account_balance", "The ordering account's balance in the "
                                        "smallest unit (10^-12 CRU): free, and usable (free less frozen)",
                                        labels=["kind"])
            balance.add_metric(["free"], s.free_balance)
            if s.usable_balance is not None:
                balance.add_metric(["usable"], s.usable_balance)
            out.append(balance)
        return out
