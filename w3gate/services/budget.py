"""``[limits] cru_per_day``: the service's daily CRU budget for orders and renewals.

Each batch's cost is computed before it is signed and added to its UTC day's spending when it is recorded
(:func:`w3gate.store.orders.record_tx`, so it holds across restarts and instances). Once the day's spending
reaches the budget no new batch is claimed: orders wait ``queued`` (nothing fails) until the next UTC day, and
``/healthz`` says so. A batch claimed before that may take the day past the budget by at most its own cost.
"""

from __future__ import annotations

import logging

from w3gate.services.crust import CrustStatus, now_ms
from w3gate.store import orders
from w3gate.store.db import Database

log = logging.getLogger(__name__)


async def within_budget(db: Database, status: CrustStatus) -> bool:
    """Whether a new batch may be claimed today; records today's spending and the verdict in ``status``."""
    if not status.cru_per_day:
        return True
    spent = await db.run(orders.spent_on_day, now_ms())
    status.cru_spent_today = spent
    over = spent >= status.cru_per_day
    if over != status.budget_spent:
        if over:
            log.warning("crust ordering waits: today's orders cost %d, the daily budget is %d (cru_per_day); "
                        "pins stay queued until 00:00 UTC", spent, status.cru_per_day)
        else:
            log.info("crust ordering resumed: a new day's budget (cru_per_day %d)", status.cru_per_day)
        status.budget_spent = over
    return not over
