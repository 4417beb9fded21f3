"""The operator's webhook: a JSON notice when ordering pauses for money (balance low, or back)."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

import trio

from w3gate.redact import redact_url

log = logging.getLogger(__name__)


async def notify_webhook(url: str | None, payload: dict[str, Any]) -> None:
    """POST a JSON notice; failures are logged, never raised."""
    if not url:
        return

    def post() -> None:
        req = urllib.request.Request(
            url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - operator-configured URL
            resp.read(1024)

    try:
        await trio.to_thread.run_sync(post, abandon_on_cancel=True)  # type: ignore[call-arg]
    except Exception as exc:  # noqa: BLE001 - a webhook must not stop ordering
        log.warning("crust webhook %s failed: %s", redact_url(url), type(exc).__name__)
