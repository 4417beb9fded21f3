"""A minimal w3gate admission plugin: the template docs/plugins.md walks through.

It admits a pin request only if its identity (the user key ``<chain>:<account>``, as ``w3gate users list``
shows it) or its CID is a line of the operator's file, or if the pin's ``meta`` carries the file's
``meta:<key>=<value>`` line: e.g. a list of wallets that paid, of contents an operator sponsors, or a
pass phrase an app puts in meta. Configured in the ``[admission.admit_example]`` table::

    [admission.admit_example]
    allow_file = "/etc/w3gate/allowed.txt"

The file is read again when it changes, so the operator edits it without restarting w3gate. A missing
or unreadable file raises: w3gate then refuses the request with 503 (fail closed) and logs why.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from w3gate.hookspecs import PinRequest, Quota, Refusal, hookimpl

__version__ = "0.1.0"

_lock = threading.Lock()  # the hook runs in worker threads
_cache: dict[str, tuple[float, frozenset[str]]] = {}


def _lines(path: str) -> frozenset[str]:
    """The file's non-empty, non-comment lines, read again when its modification time changes."""
    stamp = os.stat(path).st_mtime_ns
    with _lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    with open(path, encoding="utf-8") as fh:
        lines = frozenset(s for line in fh if (s := line.strip()) and not s.startswith("#"))
    with _lock:
        _cache[path] = (stamp, lines)
    return lines


@hookimpl
def w3gate_admit(request: PinRequest, settings: Mapping[str, Any]) -> Refusal | Quota | None:
    path = settings.get("admit_example", {}).get("allow_file")
    if not path:
        return None  # not configured: no opinion
    listed = _lines(str(path))
    if request.identity.user_key in listed or request.cid in listed:
        return None
    if any(f"meta:{key}={value}" in listed for key, value in request.meta.items()):
        return None
    return Refusal("NOT_LISTED", "this service pins only for listed wallets or contents (admit_example)")
