"""The Crust status poller: file records of placed orders -> pinned / info / renewal / failed.

Cost per round: one header read plus one multi-key ``state_queryStorageAt`` per page of CIDs (never one
RPC per CID). A page is bounded by bytes, not by a key count: a record carries its replica map (200
replicas are tens of KB), so the next page's key count follows the record size measured so far, aiming
at ``poll_bytes`` of answer (and at most ``poll_batch_size`` keys). Records are decoded only when their bytes
changed since the last pass (:class:`KnownRecords`, kept on the status for the CIDs still watched).
"""

from __future__ import annotations

import logging
from typing import Any

from w3gate.crust.records import KnownRecords
from w3gate.crust.settings import CrustSettings
from w3gate.services.crust import Connection, CrustStatus, now_ms
from w3gate.store import orders
from w3gate.store.db import Database
from w3gate.store.models import RENEW_PREPAID

log = logging.getLogger(__name__)
# updates written per transaction: on SQLite the store runs in the service's own thread, and 1,900 changed
# orders in one call held it (and so every API request) for 0.64 s; 100 take about 40 ms
APPLY_CHUNK = 100


async def poll_once(db: Database, settings: CrustSettings, status: CrustStatus, conn: Connection) -> dict[str, int]:
    """One pass over every placed order; returns counters (rpc round trips, records, changes)."""
    client = conn.client
    head = await conn.call(client.head)
    stats = {"rpc": 1, "orders": 0, "records": 0, "updated": 0, "bytes": 0, "largest_answer": 0}
    after = ""
    if status.known_records is None:
        status.known_records = KnownRecords()
    watched: set[str] = set()
    while True:
        keys = page_keys(settings, status.record_bytes)
        page = await db.run(orders.watched_page, after, keys)
        if not page:
            break
        cids = [p["cid"] for p in page]
        watched.update(cids)
        records, size = await conn.call(client.files_sized, cids, None, status.known_records)
        found = sum(1 for r in records.values() if r is not None)
        if found:  # a moving average of the record size, per record found
            status.record_bytes = (status.record_bytes * 3 + size / found) / 4 if status.record_bytes else size / found
        stats["rpc"] += 1
        stats["bytes"] += size
        stats["largest_answer"] = max(stats["largest_answer"], size)
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
                elif expires and p["renew_due"] == RENEW_PREPAID:  # prepaid covers it: due at expiry, or renewed
                    if expires <= head:
                        u["renew_due"] = 1
                    elif expires - head > settings.renewal_window:
                        u["renew_due"] = 0
            elif p["status"] == "pinning":
                if now - (p["submitted_ms"] or now) > settings.order_timeout * 1000:
                    u.update(status="failed", expect="pinning",
                             error=f"no file record on chain {settings.order_timeout:g} s after the order was placed")
            elif p["status"] == "pinned":
                # the record is gone (expired and removed): order it again
                u.update(status="queued", expect="pinned", attempts=0, next_try_ms=0, renew_due=0,
                         error="file record expired on chain; ordering again")
            if u:
                u["cid"] = p["cid"]
                updates.append(u)
        for start in range(0, len(updates), APPLY_CHUNK):  # each update stands alone: no need for one transaction
            await db.run(orders.apply_poll, updates[start:start + APPLY_CHUNK], now)
        stats["updated"] += len(updates)
        stats["orders"] += len(page)
        after = page[-1]["cid"]
        if len(page) < keys:
            break
    status.known_records.keep(watched)
    status.last_poll_ms = now_ms()
    return stats


def page_keys(settings: CrustSettings, record_bytes: float) -> int:
    """Keys for the next storage query: ``poll_bytes`` of records at the measured size, within 1..poll_batch_size."""
    if record_bytes <= 0:
        return min(settings.poll_batch_size, 100)  # nothing measured yet: a modest first page
    return max(1, min(settings.poll_batch_size, int(settings.poll_bytes // record_bytes)))


async def run_poller(db: Database, settings: CrustSettings, status: CrustStatus, conn: Connection) -> None:
    async def once() -> float:
        stats = await poll_once(db, settings, status, conn)
        if stats["updated"]:
            log.info("crust poll: %d placed orders, %d records, %d updated (%d round trips, %d bytes)",
                     stats["orders"], stats["records"], stats["updated"], stats["rpc"], stats["bytes"])
        return settings.poll_interval

    await conn.keep_running(once)
