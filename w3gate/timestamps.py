"""Instants: the time in milliseconds, and one text form of it for the API's ``created``, bound tokens' messages
and their refusals."""

from __future__ import annotations

import functools
import time


def rfc3339_ms(ms: int) -> str:
    """``2020-07-27T17:32:28.276Z``: UTC with milliseconds, as the spec's examples and EIP-4361's times."""
    return f"{_second(ms // 1000)}.{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)  # a page of pins made close together shares its seconds: strftime ~1 us each
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def now_ms() -> int:
    """Milliseconds since the epoch (the store's unit of time)."""
    return int(time.time() * 1000)
