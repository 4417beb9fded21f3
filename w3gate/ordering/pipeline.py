"""The ordering pipeline of one service: its components built from the settings, their tasks, and their status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from w3gate.crust.chain import ClientFactory
from w3gate.crust.settings import CrustSettings
from w3gate.metrics import Metrics
from w3gate.ordering.budget import Budget
from w3gate.ordering.connection import ChainConnection
from w3gate.ordering.poller import Poller
from w3gate.ordering.status import ChainStatus, OrderingStatus, PollerStatus, SubmitterStatus
from w3gate.ordering.submitter import Submitter
from w3gate.redact import redact_url
from w3gate.store.interface import Store

log = logging.getLogger(__name__)
Task = Callable[[], Awaitable[None]]


class Ordering:
    """The submitter and the poller, each on a chain connection of its own (taking turns), and the daily budget.

    ``fetched_only``: new orders wait until the operator's IPFS node holds and measured their content. ``guard``:
    awaited before each batch is recorded; it cancels the submitter when this instance is no longer the ordering
    leader (:class:`w3gate.ordering.leader.Leadership`), whose ``role`` is shown. Chain calls and order verdicts
    are counted in ``metrics``. With no ordering account nothing is built: :meth:`tasks` is empty."""

    def __init__(self, db: Store, settings: CrustSettings, *, cru_per_day: int = 0,
                 client_factory: ClientFactory | None = None, guard: Callable[[], Awaitable[None]] | None = None,
                 role: Callable[[], str | None] = lambda: None, metrics: Metrics | None = None,
                 fetched_only: bool = False) -> None:
        self.settings = settings
        self.budget = Budget(db, cru_per_day)
        self._role = role
        self.connections: list[ChainConnection] = []
        self.submitter: Submitter | None = None
        self.poller: Poller | None = None
        if not settings.ordering_enabled:
            log.warning(
                "crust ordering is OFF: no ordering account secret (set W3GATE_CRUST_SEED or crust.seed_file); "
                "the API serves and pins stay queued"
            )
            return
        turns = trio.CapacityLimiter(1)
        submit_conn = ChainConnection(settings, "submitter", turns, client_factory, metrics)
        poll_conn = ChainConnection(settings, "poller", turns, client_factory, metrics)
        self.connections = [submit_conn, poll_conn]
        self.submitter = Submitter(db, settings, submit_conn, self.budget, guard, fetched_only)
        self.poller = Poller(db, settings, poll_conn)

    @property
    def account(self) -> str | None:
        """The ordering account's address (None while ordering is off)."""
        return self.connections[0].client.address if self.connections else None

    def tasks(self) -> list[Task]:
        """The submitter and poller tasks (run each forever in the service's nursery), or [] if ordering is off."""
        if self.submitter is None or self.poller is None:
            return []
        return [self.submitter.run, self.poller.run]

    def max_file_size(self) -> int | None:
        """The chain's MaximumFileSize once a connection read it (admission and the fetch stage bound sizes by it)."""
        sizes = [c.status for c in self.connections if c.status.max_file_size is not None]
        return max(sizes, key=lambda c: c.seq).max_file_size if sizes else None

    def status(self) -> OrderingStatus:
        """What /healthz and /metrics show, at this moment."""
        s = self.settings
        return OrderingStatus.combine(
            [c.status for c in self.connections] or [ChainStatus()],
            self.submitter.status if self.submitter is not None else SubmitterStatus(),
            ordering_enabled=s.ordering_enabled, chain_url=redact_url(s.url), account=self.account,
            min_balance=s.min_balance, role=self._role(), poller=self.poller.status if self.poller else PollerStatus(),
            budget=self.budget.status)
