"""What the ordering components show /healthz and /metrics: one frozen record per component, and their sum.

Each component (a chain connection, the submitter, the poller, the budget, the leader) owns its state and hands out
an immutable record of it; :class:`OrderingStatus` puts them together for a reader, who cannot change them. Where
several components report the same thing (the chain connection's state from two connections, the last error from
any of them) the one reported last wins, as with one shared record: each record carries a sequence number.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from w3gate.timestamps import now_ms

__all__ = ["BudgetStatus", "ChainStatus", "LastError", "OrderingStatus", "PollerStatus", "SubmitterStatus", "now_ms",
           "sequence"]
_sequence = itertools.count(1)

def sequence() -> int:
    """A number larger than every one handed out before: which of two reports came last."""
    return next(_sequence)


@dataclass(frozen=True)
class LastError:
    text: str
    at_ms: int
    seq: int

    @classmethod
    def now(cls, text: str) -> LastError:
        return cls(text[:500], now_ms(), sequence())


@dataclass(frozen=True)
class ChainStatus:
    """One chain connection (:class:`w3gate.ordering.connection.ChainConnection`)."""

    connected: bool = False
    spec_version: int | None = None
    order_call: str | None = None
    files_map: str | None = None
    max_file_size: int | None = None
    era_period: int | None = None
    renewal: str = "reorder"
    error: LastError | None = None
    seq: int = 0  # when ``connected`` or the runtime's values last changed


@dataclass(frozen=True)
class SubmitterStatus:
    """The submitter (:class:`w3gate.ordering.submitter.Submitter`)."""

    free_balance: int | None = None
    usable_balance: int | None = None
    below_minimum: bool = False
    paused: str | None = None  # why ordering waits (market off, balance short of a batch, node refusals)
    paused_until_ms: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)  # orders by status (replaced, never changed in place)
    orders_placed: int = 0
    last_batch_cost: int | None = None  # what the last batch sent was computed to cost (smallest unit)
    error: LastError | None = None


@dataclass(frozen=True)
class PollerStatus:
    """The poller (:class:`w3gate.ordering.poller.Poller`)."""

    last_poll_ms: int | None = None
    record_bytes: float = 0.0  # the moving average of a file record's size
    known_records: int = 0  # records kept decoded, by digest


@dataclass(frozen=True)
class BudgetStatus:
    """``[limits] cru_per_day`` (:class:`w3gate.ordering.budget.Budget`)."""

    cru_per_day: int = 0  # 0: no daily budget
    cru_spent_today: int | None = None  # what today's recorded batches were computed to cost
    budget_spent: bool = False  # today's budget is spent: new orders wait queued until 00:00 UTC


@dataclass(frozen=True)
class OrderingStatus:
    """The ordering pipeline at one moment, as /healthz and /metrics read it (JSON-safe, never the secret)."""

    ordering_enabled: bool = False
    chain_url: str = ""
    account: str | None = None
    min_balance: int | None = None
    role: str | None = None  # "leader" | "standby" (w3gate.ordering.leader); None while ordering is off
    chain: ChainStatus = ChainStatus()
    submitter: SubmitterStatus = SubmitterStatus()
    poller: PollerStatus = PollerStatus()
    budget: BudgetStatus = BudgetStatus()
    error: LastError | None = None  # the last error any component reported

    @classmethod
    def combine(cls, chains: list[ChainStatus], submitter: SubmitterStatus, **rest: Any) -> OrderingStatus:
        """The connections' last report, and the last error of any component."""
        chain = max(chains, key=lambda c: c.seq, default=ChainStatus())
        errors = [e for e in [*(c.error for c in chains), submitter.error] if e is not None]
        return cls(chain=chain, submitter=submitter, error=max(errors, key=lambda e: e.seq, default=None), **rest)

    @property
    def chain_connected(self) -> bool:
        return self.chain.connected

    @property
    def last_error(self) -> str | None:
        return None if self.error is None else self.error.text

    @property
    def last_error_ms(self) -> int | None:
        return None if self.error is None else self.error.at_ms

    def as_dict(self) -> dict[str, Any]:
        c, s, b = self.chain, self.submitter, self.budget
        return {
            "ordering": "on" if self.ordering_enabled else "off",
            "ordering_enabled": self.ordering_enabled,
            "chain_connected": c.connected,
            "chain_url": self.chain_url,
            "account": self.account,
            "free_balance": _text(s.free_balance),
            "min_balance": _text(self.min_balance),
            "below_minimum": s.below_minimum,
            "runtime_spec_version": c.spec_version,
            "order_call": c.order_call,
            "files_map": c.files_map,
            "last_error": self.last_error,
            "last_error_ms": self.last_error_ms,
            "orders": dict(s.counts),
            "orders_placed": s.orders_placed,
            "last_poll_ms": self.poller.last_poll_ms,
            "usable_balance": _text(s.usable_balance),
            "paused": s.paused,
            "paused_until_ms": s.paused_until_ms,
            "max_file_size": c.max_file_size,
            "era_period": c.era_period,
            "renewal": c.renewal,
            "last_batch_cost": _text(s.last_batch_cost),
            "role": self.role,
            "cru_per_day": str(b.cru_per_day),
            "cru_spent_today": _text(b.cru_spent_today),
            "budget_spent": b.budget_spent,
        }


def _text(n: int | None) -> str | None:
    return None if n is None else str(n)


