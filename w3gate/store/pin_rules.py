"""The rules that create a pin, each written once as SQL text that both dialects run.

A new pin joins its content's order (inserted as queued if the content has none) and takes the pin status of
that order, unless the order failed or its renewal stopped (then it is queued again first, by the general path
of :mod:`w3gate.store.pins`); it is counted against its owner's quota and its client address's day.

On SQLite these texts run one after another in the general path's transaction (SQLite cannot put an INSERT in
a ``WITH``); on PostgreSQL the common case is one statement composed of the same texts
(:func:`create_pin_statement`, run by :mod:`w3gate.store.postgres_direct`), and the general path runs them as
SQLite does. Placeholders are ``:name``: :func:`render` gives ``?n`` (SQLite) or ``$n::type`` (PostgreSQL)
for them, one argument per name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from w3gate.ordering.lifecycle import NEW_ORDER as NEW_ORDER_STATUS
from w3gate.ordering.lifecycle import PIN_STATUS_OF_ORDER, repin_keeps_order_sql
from w3gate.store.models import INFO_FIELDS

# every placeholder the texts use, with its PostgreSQL type
TYPES = {
    "order_cid": "varchar", "key": "varchar", "now": "bigint", "requestid": "varchar", "owner": "varchar",
    "cid": "varchar", "name": "varchar", "origins": "text", "meta": "text", "size": "bigint",
    "meta_keys": "varchar[]", "meta_values": "text[]",
    "max_pins": "bigint", "max_bytes": "bigint", "pins_per_day": "bigint", "today": "bigint",
    "address": "varchar", "address_pins": "bigint", "address_identities": "bigint", "new_identity": "bigint",
}
_PLACEHOLDER = re.compile(r"(?<![:\w]):([a-z_]+)\b")

ORDER_COLUMNS = f"status, error, {', '.join(INFO_FIELDS)}, renew_due"

# the pin's status from its order's (``o``)
PIN_STATUS = "CASE o.status " + " ".join(
    f"WHEN '{order}' THEN '{pin}'" for order, pin in PIN_STATUS_OF_ORDER.items() if order != pin
) + " ELSE o.status END"

# an order (``o``) that a new pin joins as it is (w3gate.ordering.lifecycle.repin); any other is queued again first
TAKES_A_PIN = repin_keeps_order_sql("o")

# the content's order, if it has none: ``gate`` a condition (a FROM clause and WHERE) under which to insert it
INSERT_ORDER = ("INSERT INTO orders (cid, cid_key, status, created_ms, updated_ms) "
                f"SELECT :order_cid, :key, '{NEW_ORDER_STATUS}', :now, :now {{gate}} ON CONFLICT DO NOTHING")

# the pin, from its order ``o`` (``source``), if the order takes it (and ``gate``)
INSERT_PIN = ("INSERT INTO pins (requestid, owner, cid, cid_key, name, status, created_ms, origins, meta, size) "
              f"SELECT :requestid, :owner, :cid, :key, :name, {PIN_STATUS}, :now, :origins, :meta, :size "
              f"FROM {{source}} WHERE {{gate}}{TAKES_A_PIN} RETURNING id, status")

# the general path's statements: the order if new (its columns if inserted), then the pin from it
NEW_ORDER = INSERT_ORDER.format(gate="WHERE TRUE") + f" RETURNING {ORDER_COLUMNS}"
NEW_PIN = INSERT_PIN.format(source="orders o", gate="o.cid_key = :key AND ")

# the owner's ``users`` row within the quota (0: no bound) for one more pin of ``size`` bytes today (UTC days)
WITHIN_QUOTA = ("(:max_pins = 0 OR pins < :max_pins) AND (:max_bytes = 0 OR bytes + :size <= :max_bytes)"
                " AND (:pins_per_day = 0 OR day <> :today OR day_pins < :pins_per_day)")
# and the pin counted on the owner's day
COUNT_DAY = "day_pins = CASE WHEN day = :today THEN day_pins + 1 ELSE 1 END, day = :today"
# the general path's count of a pin against its owner's quota
ADMIT = f"UPDATE users SET {COUNT_DAY} WHERE user_key = :owner AND {WITHIN_QUOTA} RETURNING pins"

# the client address's ``address_days`` row (columns prefixed by ``{row}``) within its day's bounds for one more
# pin, ``{new}`` saying whether the owner is a new identity of the day
WITHIN_ADDRESS_DAY = ("(:address_pins = 0 OR {row}pins < :address_pins)"
                      " AND (:address_identities = 0 OR {row}identities < :address_identities OR NOT ({new}))")


def render(dialect: str, template: str, values: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``template``'s ``:name`` placeholders in the dialect's form, and the arguments in their order."""
    text, names = _compiled(dialect, template)
    return text, [values[name] for name in names]


@cache
def _compiled(dialect: str, template: str) -> tuple[str, tuple[str, ...]]:
    names: dict[str, int] = {}

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        n = names.setdefault(name, len(names) + 1)
        return f"${n}::{TYPES[name]}" if dialect != "sqlite" else f"?{n}"

    return _PLACEHOLDER.sub(placeholder, template), tuple(names)


@cache
def create_pin_statement(quota: bool, address: bool) -> str:
    """The common case of a new pin as one statement (PostgreSQL): the order if new, and the pin with its meta if
    the order takes it, all or nothing; with ``quota``, only within the owner's quota (the ``users`` row locked:
    a concurrent request of the same owner waits, then re-checks against the committed totals), the day counted
    for a pin written; with ``address`` (which needs ``quota``) also within the client address's day, its row
    locked after the owner's as the general path locks them. Nothing written (no such row yet, over a bound, an
    order that does not take the pin): the general path runs. Rows: the order's columns and ``pin_status``.

    Every part sees the statement's snapshot: an order that another transaction commits meanwhile is neither
    inserted (ON CONFLICT waits for it) nor seen, so no pin is inserted and the caller takes the general path.
    """
    parts, gate, order_gate = [], "", "WHERE TRUE"
    if quota:
        # a one-time filter (``EXISTS (SELECT FROM quota_ok)``) runs before any row is scanned, so the owner's row
        # is locked first whatever order the executor takes the parts in
        parts.append(f"quota_ok AS (SELECT first_day FROM users WHERE user_key = :owner AND {WITHIN_QUOTA} FOR UPDATE)")
        gate, order_gate = "EXISTS (SELECT FROM quota_ok) AND ", "FROM quota_ok"
    if address:
        within = WITHIN_ADDRESS_DAY.format(row="", new="(SELECT first_day FROM quota_ok) IS NULL")
        parts.append("address_ok AS (SELECT 1 FROM address_days WHERE EXISTS (SELECT FROM quota_ok) "
                     f"AND address = :address AND day = :today AND {within} FOR UPDATE)")
        gate += "EXISTS (SELECT FROM address_ok) AND "
        order_gate += " WHERE EXISTS (SELECT FROM address_ok)"
    parts += [
        f"new_order AS ({INSERT_ORDER.format(gate=order_gate)} RETURNING {ORDER_COLUMNS})",
        "o AS (SELECT * FROM new_order UNION ALL "
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE cid_key = :key AND NOT EXISTS (SELECT FROM new_order))",
        f"pin AS ({INSERT_PIN.format(source='o', gate=gate)})",
    ]
    if quota:
        first_day = ", first_day = COALESCE(first_day, :today)" if address else ""
        parts.append(f"counted AS (UPDATE users SET {COUNT_DAY}{first_day} "
                     "WHERE user_key = :owner AND EXISTS (SELECT FROM pin))")
    if address:
        parts.append("address_counted AS (UPDATE address_days SET pins = pins + 1, identities = identities + "
                     "CASE WHEN (SELECT first_day FROM quota_ok) IS NULL THEN 1 ELSE 0 END "
                     "WHERE address = :address AND day = :today AND EXISTS (SELECT FROM pin))")
    parts.append("meta AS (INSERT INTO pin_meta (pin_id, key, value) SELECT pin.id, m.key, m.value "
                 "FROM pin, unnest(:meta_keys, :meta_values) AS m(key, value))")
    return "WITH " + ",\n".join(parts) + "\nSELECT o.*, pin.status AS pin_status FROM o LEFT JOIN pin ON TRUE"
