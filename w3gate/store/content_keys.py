"""The content-key migration step (schema 7): key the pins and orders of earlier releases by content
(:mod:`w3gate.cids`).

Earlier releases keyed orders by the CID text as given, so one content pinned in several text forms
could hold several orders. Each content keeps one: the one furthest along (pinned, pinning, in flight,
queued, failed; then the oldest). The others that were never sent are deleted; those placed or in flight
keep their row (the chain holds them, and an open extrinsic names them) without a key, so they are
never claimed, renewed or polled again. An unsent order's text becomes the content's order text (it was
never on chain); a placed one keeps the text the chain knows it by. Pins keep the user's text and show
their content's order. Orders of identity CIDs (no data to store; refused from now on) fail, except one
in flight, which the submitter resolves.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from w3gate.cids import key_of_stored
from w3gate.store.models import PIN_STATUS_OF_ORDER
from w3gate.store.rawsql import Sql

RANK = {"pinned": 0, "pinning": 1, "submitting": 2, "queued": 3, "failed": 4}
UNSENT = ("queued", "failed")
IDENTITY_ERROR = "the CID's multihash is the identity hash: it holds no data to store (refused since schema 7)"


def _placeholders(dialect: str, n: int) -> list[str]:
    sql = Sql(dialect)
    return [sql.arg(None) for _ in range(n)]


async def _many(conn: Any, dialect: str, template: str, rows: list[list[Any]]) -> None:
    """``template`` with ``{}`` for each placeholder, run once per row."""
    if rows:
        await conn.execute_many(template.format(*_placeholders(dialect, len(rows[0]))), rows)


async def key_existing_cids(conn: Any, dialect: str) -> None:
    pin_cids = [r["cid"] for r in await conn.execute_query_dict("SELECT DISTINCT cid FROM pins")]
    await _many(conn, dialect, "UPDATE pins SET cid_key = {} WHERE cid = {}",
                [[key_of_stored(c)[0], c] for c in pin_cids])

    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in await conn.execute_query_dict("SELECT cid, status, created_ms FROM orders"):
        groups[key_of_stored(row["cid"])[0]].append(row)
    dropped: list[list[Any]] = []
    keyed: list[list[Any]] = []
    failing: list[list[Any]] = []
    pins_to_sync: list[list[Any]] = []
    for key, group in groups.items():
        group.sort(key=lambda r: (RANK.get(r["status"], len(RANK)), r["created_ms"], r["cid"]))
        kept, others = group[0], group[1:]
        dropped += [[o["cid"]] for o in others if o["status"] in UNSENT]
        _, order_text, holds_data = key_of_stored(kept["cid"])
        new_cid = order_text if kept["status"] in UNSENT else kept["cid"]
        keyed.append([new_cid, key, kept["cid"]])
        status = kept["status"]
        if not holds_data and status != "submitting":
            failing.append([IDENTITY_ERROR, new_cid])
            status = "failed"
        if others or status != kept["status"]:
            pin_status = PIN_STATUS_OF_ORDER.get(status, "queued")
            pins_to_sync.append([pin_status, key, pin_status])
    await _many(conn, dialect, "DELETE FROM orders WHERE cid = {}", dropped)
    await _many(conn, dialect, "UPDATE orders SET cid = {}, cid_key = {} WHERE cid = {}", keyed)
    await _many(conn, dialect, "UPDATE orders SET status = 'failed', error = {} WHERE cid = {}", failing)
    await _many(conn, dialect, "UPDATE pins SET status = {} WHERE cid_key = {} AND status <> {}", pins_to_sync)
