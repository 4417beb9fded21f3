"""Per-key rate limits in memory: a token bucket per identity or client address.

A bucket holds up to ``per_minute`` tokens and refills at ``per_minute`` a minute, so a client may burst a
minute's worth and then goes at the rate. Each instance counts on its own (several instances sharing a
PostgreSQL each allow the rate). Memory stays bounded: past ``max_keys`` buckets, full ones are dropped
(a full bucket is the same as none).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MAX_KEYS = 100_000


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def _tokens(self, key: str, per_minute: int, now: float) -> float:
        tokens, when = self._buckets.get(key, (per_minute, now))
        return min(float(per_minute), tokens + (now - when) * per_minute / 60.0)

    def wait(self, key: str, per_minute: int) -> int:
        """Seconds until ``key`` may go on (0: now), without taking a token."""
        tokens = self._tokens(key, per_minute, self.clock())
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) * 60.0 / per_minute))

    def take(self, key: str, per_minute: int) -> int:
        """Take a token for ``key``: 0 when it had one, else the seconds until it will (nothing taken)."""
        now = self.clock()
        tokens = self._tokens(key, per_minute, now)
        if tokens < 1:
            return max(1, math.ceil((1 - tokens) * 60.0 / per_minute))
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._prune(now, per_minute)
        self._buckets[key] = (tokens - 1, now)
        return 0

    def _prune(self, now: float, per_minute: int) -> None:
        # buckets refilled by now are dropped; a bucket's own limit may differ, the default is a fair guess
        full = [k for k, (tokens, when) in self._buckets.items()
                if tokens + (now - when) * per_minute / 60 >= per_minute]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:  # a flood of distinct keys: forget the oldest half
            for k in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: len(self._buckets) // 2]:
                del self._buckets[k]
