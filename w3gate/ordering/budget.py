"""``[limits] cru_per_day``: the service's daily CRU budget for orders and renewals.

Each batch's cost is computed before it is signed and added to its UTC day's spending when it is recorded
(:func:`w3gate.store.orders.record_tx`, so it holds across restarts and instances). Once the day's spending
reaches the budget no new batch is claimed: orders wait ``queued`` (nothing fails) until the next UTC day, and
``/healthz`` says so. A batch claimed before that may take the day past the budget by at most its own cost.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from w3gate.ordering.status import BudgetStatus, now_ms
from w3gate.store.interface import Store

log = logging.getLogger(__name__)


class Budget:
    """Today's spending against ``cru_per_day`` (0: no budget); :attr:`status` shows it."""

    def __init__(self, db: Store, cru_per_day: int) -> None:
        self.db = db
        self._status = BudgetStatus(cru_per_day=cru_per_day)

    @property
    def status(self) -> BudgetStatus:
        return self._status

    async def allows_batch(self) -> bool:
        """Whether a new batch may be claimed today; records today's spending and the verdict."""
        per_day = self._status.cru_per_day
        if not per_day:
            return True
        spent = await self.db.spent_on_day(now_ms())
        over = spent >= per_day
        if over != self._status.budget_spent:
            if over:
                log.warning("crust ordering waits: today's orders cost %d, the daily budget is %d (cru_per_day); "
                            "pins stay queued until 00:00 UTC", spent, per_day)
            else:
                log.info("crust ordering resumed: a new day's budget (cru_per_day %d)", per_day)
        self._status = replace(self._status, cru_spent_today=spent, budget_spent=over)
        return not over
