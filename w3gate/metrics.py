"""Prometheus metrics (``GET /metrics``): every metric object of one service, on a registry of its own.

Each service (and each app a test builds) has its own :class:`Metrics`, on a private ``CollectorRegistry``
rather than prometheus_client's global one, so that several in one process neither clash nor mix counts.
Events are counted where they happen (requests in the ASGI connection, chain calls in the Crust
connection, order verdicts in the submitter); what the database or the service's state already knows
(pins by status, queued orders, the ordering account's balance, the token cache's counters) is read when
scraped and handed to :meth:`Metrics.render` as ready families, so nothing on the hot path keeps it.

The hot path pays one dict look-up, a counter and a histogram bucket per request: label children are made
once per (route, method, status) and kept (:meth:`Metrics.http_child`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus reads (what is rendered here)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CHAIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
FETCH_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0)
# how a fetch try of the operator's IPFS node ends without the content (w3gate.ordering.fetcher): the first two
# fail the pins; the others are tried again (stalled, node_unavailable, error) or no longer wanted (cancelled)
FETCH_FAILURES = ("timeout", "too_large", "stalled", "node_unavailable", "error", "cancelled")
# a client may send any method token: anything else is counted as "other", so labels stay few
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request no route matched (404, 405, a CORS preflight)
# no ``*_created`` series beside each counter and histogram (creation times: noise in the text format, and
# a series per label set); a process-wide switch of prometheus_client
disable_created_metrics()


class Metrics:
    """The service's metric objects. The ones counted as events are attributes; see the module docstring."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, open fds...
        PlatformCollector(registry=r)  # python_info
        self.http_requests = Counter(
            "w3gate_http_requests", "HTTP requests answered, by route template, method and status "
            '(status "closed": the client left before its answer)', ["route", "method", "status"], registry=r)
        self.http_duration = Histogram(
            "w3gate_http_request_duration_seconds", "Time from a request's arrival to its answer being sent",
            ["route", "method", "status"], buckets=HTTP_BUCKETS, registry=r)
        self.auth = Counter("w3gate_auth_results", "Authentication of /psa requests, by result (ok or the reason "
                            "it failed)", ["result"], registry=r)
        self.chain_duration = Histogram(
            "w3gate_chain_call_duration_seconds", "Crust chain client calls (one or a few JSON-RPC requests each), "
            "by call", ["call"], buckets=CHAIN_BUCKETS, registry=r)
        self.chain_errors = Counter("w3gate_chain_call_errors", "Crust chain client calls that failed, by call and "
                                    "error (unavailable, rejected, timeout, other)", ["call", "error"], registry=r)
        self.orders = Counter(
            "w3gate_orders", "Crust order verdicts, by outcome: placed (a new order on chain), renewed, topped_up "
            "(a prepaid renewal paid in), retry (an attempt failed), failed (given up), requeued, paused "
            "(re-queued, no attempt charged)", ["outcome"], registry=r)
        self.limits_hit = Counter("w3gate_limits_hit", "Requests refused by a limit, by limit", ["limit"], registry=r)
        self.fetches_started = Counter("w3gate_ipfs_fetches_started", "Fetch tries of the IPFS node (a content "
                                       "waiting for providers is tried again)", registry=r)
        self.fetches_succeeded = Counter("w3gate_ipfs_fetches_succeeded", "Fetch tries that ended with the content "
                                         "pinned on the node and measured", registry=r)
        self.fetches_failed = Counter(
            "w3gate_ipfs_fetches_failed", "Fetch tries that ended without the content, by reason: timeout (not "
            "fetched within fetch_timeout) and too_large (at or over MaximumFileSize) fail the pins; stalled, "
            "node_unavailable and error are tried again; cancelled: no longer wanted", ["reason"], registry=r)
        for reason in FETCH_FAILURES:  # every reason shows from the start, at 0
            self.fetches_failed.labels(reason)
        self.fetched_bytes = Counter("w3gate_ipfs_fetched_bytes", "Size (CumulativeSize) of the content fetched "
                                     "onto the IPFS node", registry=r)
        self.fetch_duration = Histogram(
            "w3gate_ipfs_fetch_duration_seconds", "Time from a fetch's start to the content being pinned and measured "
            "(a restart or the node's return starts the clock again)", buckets=FETCH_BUCKETS, registry=r)
        self._http: dict[tuple[str, str, int | str], tuple[Any, Any]] = {}
        self._auth: dict[str, Any] = {}

    def http_child(self, route: str, method: str, status: int | str) -> tuple[Any, Any]:
        """The (request counter, duration histogram) children for these labels, made once."""
        if method not in METHODS:  # before the look-up: the cache must stay as small as the label sets
            method = "other"
        key = (route, method, status)
        child = self._http.get(key)
        if child is None:
            labels = (route, method, str(status))
            child = self._http[key] = (self.http_requests.labels(*labels), self.http_duration.labels(*labels))
        return child

    def observe_request(self, route: str, method: str, status: int | str, seconds: float) -> None:
        requests, duration = self.http_child(route, method, status)
        requests.inc()
        duration.observe(seconds)

    def auth_result(self, result: str) -> None:
        child = self._auth.get(result)
        if child is None:
            child = self._auth[result] = self.auth.labels(result)
        child.inc()

    def order_verdicts(self, counts: dict[str, int]) -> None:
        """Count a batch's verdicts (the counts :func:`w3gate.store.orders.resolve_tx` returns)."""
        for outcome, n in (("placed", counts.get("ok", 0) - counts.get("renewed", 0)),
                           ("renewed", counts.get("renewed", 0)), ("topped_up", counts.get("topped", 0)),
                           ("retry", counts.get("fail", 0) - counts.get("failed", 0)),
                           ("failed", counts.get("failed", 0)), ("requeued", counts.get("requeue", 0)),
                           ("paused", counts.get("pause", 0))):
            if n:
                self.orders.labels(outcome).inc(n)

    def fetch_ended(self, outcome: str, size: int = 0, seconds: float = 0.0) -> None:
        """One fetch try's end: ``fetched`` (with the content's size and the fetch's time) or a failure reason."""
        if outcome == "fetched":
            self.fetches_succeeded.inc()
            self.fetched_bytes.inc(size)
            self.fetch_duration.observe(seconds)
        else:
            self.fetches_failed.labels(outcome).inc()

    def render(self, extra: Iterable[Metric] = ()) -> bytes:
        """The text exposition of the registry and of ``extra`` (families read at scrape time)."""
        return generate_latest(_Joined(self.registry, list(extra)))  # type: ignore[arg-type]


class _Joined:
    """A registry's families followed by some made for one scrape."""

    def __init__(self, registry: CollectorRegistry, extra: list[Metric]) -> None:
        self.registry, self.extra = registry, extra

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()
        yield from self.extra
