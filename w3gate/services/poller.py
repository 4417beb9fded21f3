"""The Crust status poller: file records of placed orders -> pinned / info / renewal / failed.

Cost per round: one header read plus one multi-key ``state_queryStorageAt`` per ``poll_batch_size``
CIDs (never one RPC per CID).
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from w3gate.crust.client import ChainUnavailable
from w3gate.crust.settings import CrustSettings
from w3gate.crust.typedefs import UnsupportedRuntime
from w3gate.services.crust import Connection, CrustStatus, now_ms
from w3gate.store import orders
from w3gate.store.db import Database

log = logging.getLogger(__name__)
# updates written per transaction: on SQLite the store runs in the service's own thread, and 1,900 changed
# orders in one call held it (and so every API request) for 0.64 s; 100 take about 40 ms
APPLY_CHUNK = 100


async def poll_once(db: Database, settings: CrustSettings, status: CrustStatus, conn: Connection) -> dict[str, int]:
    """One pass over every placed order; returns counters (rpc round trips, records, changes)."""
    client = conn.client
    head = await conn.call(client.head)
    stats = {"rpc": 1, "orders": 0, "records": 0, "updated": 0}
    after = ""
    while True:
        page = await db.run(orders.watched_page, after, settings.poll_batch_size)
        if not page:
            break
        records = await conn.call(client.files, [p["cid"] for p in page])
        stats["rpc"] += 1
        now = now_ms()
        updates: list[dict[str, Any]] = []
        for p in page:
            rec = records.get(p["cid"])
            u: dict[str, Any] = {}
            if rec is not None:
                stats["records"] += 1
                expires = rec.expires_at or None
                if (p["file_size"], p["expires_at"], p["replicas"]) != (rec.file_size, expires, rec.replicas):
                    u.update(file_size=rec.file_size, expires_at=expires, replicas=rec.replicas)
                if p["status"] == "pinning" and rec.replicas >= settings.replicas:
                    u.update(status="pinned", expect="pinning", error=None)
                if expires and expires - head <= settings.renewal_window and p["renew_due"] == 0:
                    u["renew_due"] = 1
            elif p["status"] == "pinning":
                if now - (p["submitted_ms"] or now) > settings.order_timeout * 1000:
                    u.update(status="failed", expect="pinning",
                             error=f"no file record on chain {settings.order_timeout:g} s after the order was placed")
            elif p["status"] == "pinned":
                # the record is gone (expired and removed): order it again
                u.update(status="queued", expect="pinned", attempts=0, next_try_ms=0,
                         error="file record expired on chain; ordering again")
            if u:
                u["cid"] = p["cid"]
                updates.append(u)
        for start in range(0, len(updates), APPLY_CHUNK):  # each update stands alone: no need for one transaction
            await db.run(orders.apply_poll, updates[start:start + APPLY_CHUNK], now)
        stats["updated"] += len(updates)
        stats["orders"] += len(page)
        after = page[-1]["cid"]
        if len(page) < settings.poll_batch_size:
            break
    status.last_poll_ms = now_ms()
    return stats


async def run_poller(db: Database, settings: CrustSettings, status: CrustStatus, conn: Connection) -> None:
    while True:
        try:
            await conn.ensure()
            stats = await poll_once(db, settings, status, conn)
            if stats["updated"]:
                log.info("crust poll: %d placed orders, %d records, %d updated (%d round trips)",
                         stats["orders"], stats["records"], stats["updated"], stats["rpc"])
        except ChainUnavailable as exc:
            await conn.lost(exc)
            continue
        except UnsupportedRuntime as exc:
            log.error("crust status polling stopped: %s", exc)
            status.error(f"unsupported runtime: {exc}")
            await conn.call(conn.client.close)
            await trio.sleep(settings.reconnect_max)
            continue
        await trio.sleep(settings.poll_interval)
