"""The Crust status poller: file records of placed orders -> pinned / info / renewal / failed.

Cost per round: one header read plus one multi-key ``state_queryStorageAt`` per page of CIDs (never one
RPC per CID). A page is bounded by bytes, not by a key count: a record carries its replica map (200
replicas are tens of KB), so the next page's key count follows the record size measured so far, aiming
at ``poll_bytes`` of answer (and at most ``poll_batch_size`` keys). Records are decoded only when their bytes
changed since the last pass (:class:`KnownRecords`, kept by the poller for the CIDs still watched). What a
record changes in an order is :func:`w3gate.ordering.lifecycle.observe`'s to say.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from w3gate.crust.chain import KnownRecords
from w3gate.crust.settings import CrustSettings
from w3gate.ordering import lifecycle
from w3gate.ordering.connection import ChainConnection
from w3gate.ordering.status import PollerStatus, now_ms
from w3gate.store.interface import Store

log = logging.getLogger(__name__)
# updates written per transaction: on SQLite the store runs in the service's own thread, and 1,900 changed
# orders in one call held it (and so every API request) for 0.64 s; 100 take about 40 ms
APPLY_CHUNK = 100


class Poller:
    """Follows the file records of placed orders; :attr:`status` shows its last pass and record size."""

    def __init__(self, db: Store, settings: CrustSettings, conn: ChainConnection) -> None:
        self.db, self.settings, self.conn = db, settings, conn
        self.known = KnownRecords()  # decoded records, by digest of their bytes
        self.rules = lifecycle.PollRules(settings.replicas, settings.renewal_window, settings.order_timeout)
        self._status = PollerStatus()

    @property
    def status(self) -> PollerStatus:
        return self._status

    async def poll_once(self) -> dict[str, int]:
        """One pass over every placed order; returns counters (rpc round trips, records, changes)."""
        client = self.conn.client
        head = await self.conn.call(client.head)
        stats = {"rpc": 1, "orders": 0, "records": 0, "updated": 0, "bytes": 0, "largest_answer": 0}
        after = ""
        watched: set[str] = set()
        record_bytes = self._status.record_bytes
        while True:
            keys = page_keys(self.settings, record_bytes)
            page = await self.db.watched_page(after, keys)
            if not page:
                break
            cids = [p.cid for p in page]
            watched.update(cids)
            records, size = await self.conn.call(client.files_sized, cids, None, self.known)
            found = sum(1 for r in records.values() if r is not None)
            if found:  # a moving average of the record size, per record found
                record_bytes = (record_bytes * 3 + size / found) / 4 if record_bytes else size / found
                self._status = replace(self._status, record_bytes=record_bytes)
            stats["rpc"] += 1
            stats["bytes"] += size
            stats["largest_answer"] = max(stats["largest_answer"], size)
            now = now_ms()
            stats["records"] += found
            updates = [u for p in page if (u := lifecycle.observe(p, records.get(p.cid), head, now, self.rules))]
            for start in range(0, len(updates), APPLY_CHUNK):  # each update stands alone: no need for one transaction
                await self.db.apply_poll(updates[start:start + APPLY_CHUNK], now)
            stats["updated"] += len(updates)
            stats["orders"] += len(page)
            after = page[-1].cid
            if len(page) < keys:
                break
        self.known.keep(watched)
        self._status = replace(self._status, last_poll_ms=now_ms(), known_records=len(self.known))
        return stats

    async def run(self) -> None:
        async def once() -> float:
            stats = await self.poll_once()
            if stats["updated"]:
                log.info("crust poll: %d placed orders, %d records, %d updated (%d round trips, %d bytes)",
                         stats["orders"], stats["records"], stats["updated"], stats["rpc"], stats["bytes"])
            return self.settings.poll_interval

        await self.conn.keep_running(once)


def page_keys(settings: CrustSettings, record_bytes: float) -> int:
    """Keys for the next storage query: ``poll_bytes`` of records at the measured size, within 1..poll_batch_size."""
    if record_bytes <= 0:
        return min(settings.poll_batch_size, 100)  # nothing measured yet: a modest first page
    return max(1, min(settings.poll_batch_size, int(settings.poll_bytes // record_bytes)))
