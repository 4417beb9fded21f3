"""``GET /healthz``: up or not for anyone, the details for the operator only, answered within a deadline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from w3gate import __version__
from w3gate.ordering.fetcher import IpfsStatus
from w3gate.ordering.status import OrderingStatus
from w3gate.store.interface import Store
from w3gate.store.migrations import LATEST

HEALTH_TIMEOUT = 5.0  # seconds the database may take to answer before /healthz says it is unavailable


class Health:
    """The health answer. Anyone may ask whether the service is up (``{"status": ...}``, 200 or 503);
    the details (database, chains, the ordering account, its balance, the chain endpoint) are for the
    operator (``detailed``), since they tell an attacker what is worth aiming at."""

    def __init__(self, db: Store, chains: Sequence[str], crust: Callable[[], OrderingStatus],
                 timeout: float = HEALTH_TIMEOUT, ipfs: Callable[[], IpfsStatus] = IpfsStatus) -> None:
        self.db = db
        self.ipfs = ipfs  # each returns the component's status as it is now
        self.chains = list(chains)
        self.crust = crust
        self.timeout = timeout

    async def __call__(self, detailed: bool) -> tuple[int, dict[str, Any]]:
        try:
            await self.db.ping(self.timeout)
            database, code = "ok", 200
        except Exception as exc:  # a health check reports, it does not raise
            database, code = f"unavailable: {type(exc).__name__}", 503
        status = "ok" if code == 200 else "degraded"
        if not detailed:
            return code, {"status": status}
        return code, {"version": __version__, "schema": LATEST, "database": database, "status": status,
                      "chains": self.chains, "ordering": self.crust().as_dict(), "ipfs": self.ipfs().as_dict()}
