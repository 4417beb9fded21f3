"""The hot paths on PostgreSQL straight on asyncpg: one statement, one round trip, no planning, per request.

Why (measured with ``bench/bench_postgres.py``, py-spy and ``EXPLAIN ANALYZE``): through the ORM, ``POST /pins``
was five round trips (BEGIN, insert the order, read it, insert the pin, COMMIT), with the owner's ``pin_counts``
row locked from the pin's insert to COMMIT; every statement also went through the ORM's client wrappers. And
PostgreSQL planned the ``GET /pins`` statement anew on every call (a custom plan per owner: 0.4-1.2 ms of the
server's CPU, more than running it), because a prepared statement's generic plan is only taken once it looks no
dearer than a custom one.

So these run on a pool of their own (:func:`open_pool`, beside the ORM's, from the same settings; the
PostgreSQL store holds it and hands it to the store's functions in its ``Handle``) whose connections
use generic plans (``plan_cache_mode = force_generic_plan``: asyncpg prepares each statement once per connection,
PostgreSQL plans it once). Only the statements here use it: each looks up by an indexed equality (owner, request
id, content key), where a generic plan is the custom one. The ORM's queries (the submitter's, the poller's) keep
PostgreSQL's default. The SQL of the reads is the store's own (:mod:`w3gate.store.pins`); a new pin is one
statement (:data:`CREATE_PIN`) that does what ``pins._insert`` does in the common case: it inserts the order if the
content has none, and the pin with its meta, or else nothing, and then :func:`w3gate.store.pins.create_pin` takes
the general path (the content's order failed or its renewal stopped, and must be queued again; an order of an
earlier release not keyed yet; another instance inserting the same order in the same instant).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from w3gate.store.models import INFO_FIELDS, PIN_STATUS_OF_ORDER, RENEW_STOPPED
from w3gate.store.users import DAY_MS, AddressQuota

CREATED_RETRIES = 50

CLOSE_TIMEOUT = 10.0  # seconds, as Tortoise gives its own pool
ORDER_COLUMNS = f"status, error, {', '.join(INFO_FIELDS)}, renew_due"
_PIN_STATUS = "CASE o.status " + " ".join(
    f"WHEN '{order}' THEN '{pin}'" for order, pin in PIN_STATUS_OF_ORDER.items() if order != pin
) + " ELSE o.status END"

# $1 order text, $2 content key, $3 created (ms), $4 request id, $5 owner, $6 cid as given, $7 name,
# $8 origins (JSON), $9 meta (JSON), $10 meta keys, $11 meta values.
# Every part sees the statement's snapshot: an order that another transaction commits meanwhile is neither
# inserted (ON CONFLICT waits for it) nor seen, so no pin is inserted and the caller takes the general path.
CREATE_PIN = f"""
WITH new_order AS (
    INSERT INTO orders (cid, cid_key, status, created_ms, updated_ms)
    VALUES ($1::varchar, $2::varchar, 'queued', $3::bigint, $3::bigint)
    ON CONFLICT DO NOTHING
    RETURNING {ORDER_COLUMNS}
), o AS (
    SELECT * FROM new_order
    UNION ALL
    SELECT {ORDER_COLUMNS} FROM orders WHERE cid_key = $2::varchar AND NOT EXISTS (SELECT FROM new_order)
), pin AS (
    INSERT INTO pins (requestid, owner, cid, cid_key, name, status, created_ms, origins, meta, size)
    SELECT $4::varchar, $5::varchar, $6::varchar, $2::varchar, $7::varchar, {_PIN_STATUS}, $3::bigint,
           $8::text, $9::text, $12::bigint
    FROM o WHERE o.status <> 'failed' AND o.renew_due <> {RENEW_STOPPED}
    RETURNING id, status
), meta AS (
    INSERT INTO pin_meta (pin_id, key, value)
    SELECT pin.id, m.key, m.value FROM pin, unnest($10::varchar[], $11::text[]) AS m(key, value)
)
SELECT o.*, pin.status AS pin_status FROM o LEFT JOIN pin ON TRUE
"""

# CREATE_PIN within a quota, still one statement: $13 live pins, $14 bytes, $15 pins a day (0: no bound), $16 today
# (UTC days since the epoch). The owner's ``users`` row is locked (FOR UPDATE: a concurrent request of the same
# owner waits, then re-checks against the committed totals, as users.admit's conditional UPDATE does); the order
# and the pin are written only within the quota, and the day's count is moved only when the pin was. Live pins and
# bytes are kept by the pins trigger, which runs after this statement. No row (a new user) or over a bound: nothing
# is written, and the general path makes the row or says which bound (users.QuotaExceeded).
CREATE_PIN_COUNTED = CREATE_PIN.replace(
    """WITH new_order AS (
    INSERT INTO orders (cid, cid_key, status, created_ms, updated_ms)
    VALUES ($1::varchar, $2::varchar, 'queued', $3::bigint, $3::bigint)""",
    """WITH quota_ok AS (
    SELECT 1 FROM users WHERE user_key = $5::varchar
      AND ($13::bigint = 0 OR pins < $13::bigint)
      AND ($14::bigint = 0 OR bytes + $12::bigint <= $14::bigint)
      AND ($15::bigint = 0 OR day <> $16::bigint OR day_pins < $15::bigint)
    FOR UPDATE
), new_order AS (
    INSERT INTO orders (cid, cid_key, status, created_ms, updated_ms)
    SELECT $1::varchar, $2::varchar, 'queued', $3::bigint, $3::bigint FROM quota_ok""",
).replace(
    "FROM o WHERE o.status <> 'failed'", "FROM o WHERE EXISTS (SELECT FROM quota_ok) AND o.status <> 'failed'"
).replace(
    """), meta AS (""",
    """), counted AS (
    UPDATE users SET day_pins = CASE WHEN day = $16::bigint THEN day_pins + 1 ELSE 1 END, day = $16::bigint
    WHERE user_key = $5::varchar AND EXISTS (SELECT FROM pin)
), meta AS (""",
)
assert CREATE_PIN_COUNTED.count("quota_ok") == 3 and "counted AS" in CREATE_PIN_COUNTED  # every replace took

# CREATE_PIN_COUNTED also within the client address's day (users.admit_address), still one statement: $17 the
# address (a client key), $18 pins a day from it, $19 new identities a day from it (0: no bound). Its
# ``address_days`` row is locked after the owner's, as the general path locks them (else two requests deadlock):
# ``EXISTS (SELECT FROM quota_ok)`` is a one-time filter, run before the row is scanned, so it locks the owner's
# row first whatever order the executor takes the CTEs in. The row is re-checked against the committed counts; an
# identity is new when its ``first_day`` (read under the lock) is NULL, and the pin sets it. No row yet (the
# address's first pin of the day) or over a bound: nothing is written, and the general path makes the row or says
# which bound.
CREATE_PIN_ADDRESSED = CREATE_PIN_COUNTED.replace(
    "SELECT 1 FROM users WHERE user_key = $5::varchar", "SELECT first_day FROM users WHERE user_key = $5::varchar",
).replace(
    """), new_order AS (""",
    """), address_ok AS (
    SELECT 1 FROM address_days WHERE EXISTS (SELECT FROM quota_ok) AND address = $17::varchar AND day = $16::bigint
      AND ($18::bigint = 0 OR pins < $18::bigint)
      AND ($19::bigint = 0 OR identities < $19::bigint OR (SELECT first_day FROM quota_ok) IS NOT NULL)
    FOR UPDATE
), new_order AS (""",
).replace(
    "'queued', $3::bigint, $3::bigint FROM quota_ok", "'queued', $3::bigint, $3::bigint FROM quota_ok "
    "WHERE EXISTS (SELECT FROM address_ok)",
).replace(
    "FROM o WHERE EXISTS (SELECT FROM quota_ok)",
    "FROM o WHERE EXISTS (SELECT FROM quota_ok) AND EXISTS (SELECT FROM address_ok)",
).replace(
    "day = $16::bigint\n    WHERE user_key = $5::varchar AND EXISTS (SELECT FROM pin)",
    "day = $16::bigint,\n        first_day = COALESCE(first_day, $16::bigint)\n"
    "    WHERE user_key = $5::varchar AND EXISTS (SELECT FROM pin)\n"
    "), address_counted AS (\n"
    "    UPDATE address_days SET pins = pins + 1,\n"
    "        identities = identities + CASE WHEN (SELECT first_day FROM quota_ok) IS NULL THEN 1 ELSE 0 END\n"
    "    WHERE address = $17::varchar AND day = $16::bigint AND EXISTS (SELECT FROM pin)",
)
assert CREATE_PIN_ADDRESSED.count("address_ok") == 3 and "address_counted AS" in CREATE_PIN_ADDRESSED \
    and "SELECT first_day FROM users" in CREATE_PIN_ADDRESSED  # every replace took

# the ORM's statement log, which ``log_sql`` turns on (w3gate.store.db.configure_sql_log): these statements too
sql_log = logging.getLogger("tortoise.db_client")


async def open_pool(params: Mapping[str, Any]) -> Any:
    """A pool for these statements beside the ORM's: ``params`` are asyncpg's ``create_pool`` arguments for the
    ORM's pool (:func:`w3gate.store.db.asyncpg_params`: the same server, credentials, TLS, sizes and reset hook
    the operator set in ``database_url``), to which this adds generic plans."""
    import asyncpg  # type: ignore[import-untyped]

    settings = {**params.get("server_settings", {}), "plan_cache_mode": "force_generic_plan"}
    return await asyncpg.create_pool(None, **{**params, "server_settings": settings})


async def close_pool(pool: Any, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close the pool gracefully, or cut its connections after ``timeout`` seconds (as the ORM's pool is
    closed: a server or path that stopped answering must not hold up the service's exit)."""
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except TimeoutError:
        pool.terminate()


async def fetch(pool: Any, sql: str, args: list[Any]) -> list[Any]:
    """The rows of one read (asyncpg records, read by column name)."""
    if sql_log.isEnabledFor(logging.DEBUG):
        sql_log.debug("%s: %s", sql, args)
    return await pool.fetch(sql, *args)  # type: ignore[no-any-return]


async def create_pin(pool: Any, owner: str, pin: Any, requestid: str, created_ms: int, origins: str,
                     meta: str, size: int = 0, quota: tuple[int, int, int] | None = None,
                     address: AddressQuota | None = None) -> tuple[Mapping[str, Any], int] | None:
    """Insert a pin (a ``pins.NewPin``, its origins and meta as JSON text) and, if new, its content's order,
    in one statement; with ``quota`` (live pins, bytes, pins a day; 0: no bound), only within it
    (:data:`CREATE_PIN_COUNTED`), and with ``address`` (which needs ``quota``) within its client address's day
    too (:data:`CREATE_PIN_ADDRESSED`).

    Returns (the order's columns and the pin's ``pin_status``, the ``created`` used), or None when nothing was
    written and the general path must run (see the module's docstring). ``created`` collisions (another
    instance's pin in the same millisecond) move it on by 1 ms, as the general path does.
    """
    import asyncpg

    for _ in range(CREATED_RETRIES):
        args = [pin.order_cid, pin.key, created_ms, requestid, owner, pin.cid, pin.name, origins, meta,
                list(pin.meta), list(pin.meta.values()), size]
        statement = CREATE_PIN
        if quota is not None:
            statement = CREATE_PIN_COUNTED
            args += [*quota, created_ms // DAY_MS]
            if address is not None:
                statement = CREATE_PIN_ADDRESSED
                args += [address.address, address.pins_per_day, address.identities_per_day]
        if sql_log.isEnabledFor(logging.DEBUG):
            sql_log.debug("%s: %s", statement, args)
        try:
            row = await pool.fetchrow(statement, *args)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "pins_created_ms_key":
                raise
            created_ms += 1
            continue
        if row is None or row["pin_status"] is None:
            return None
        return row, created_ms
    raise RuntimeError("could not find a free created timestamp")
