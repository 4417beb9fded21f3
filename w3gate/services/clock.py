"""Creation timestamps: milliseconds, strictly increasing within the process.

The spec's pagination (``before`` = the oldest ``created`` seen) needs every ``created`` to be unique, so
two requests in the same millisecond get consecutive values instead of equal ones.
"""

from __future__ import annotations

import threading
import time


class UniqueMillis:
    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(int(time.time() * 1000), self._last + 1)
            return self._last

    def seen(self, value: int) -> None:
        """Never hand out ``value`` or less again (the store moved past a collision)."""
        with self._lock:
            self._last = max(self._last, value)

