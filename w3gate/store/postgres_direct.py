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
statement (:func:`w3gate.store.pin_rules.create_pin_statement`, made of the same SQL texts that ``pins._insert``
runs one by one) in the common case: it inserts the order if the content has none, and the pin with its meta, or
else nothing, and then :func:`w3gate.store.pins.create_pin` takes the general path (the content's order failed or
its renewal stopped, and must be queued again; an order of an earlier release not keyed yet; another instance
inserting the same order in the same instant).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from w3gate.store.pin_rules import create_pin_statement, render
from w3gate.store.rawsql import sql_log
from w3gate.store.users import DAY_MS, AddressQuota

CREATED_RETRIES = 50

CLOSE_TIMEOUT = 10.0  # seconds, as Tortoise gives its own pool

# The hot-path pool's session settings. Generic plans: see the module's docstring. A random page read priced as
# a cached one (1.1, the value PostgreSQL's documentation suggests for SSDs; the default 4.0 is for spinning disks):
# at 4.0 the generic plan of GET /pins (the owner's newest pins in one status) walked the unique index on
# ``created_ms`` back from the newest pin and skipped every pin in another status, as that index follows the
# table's order and so looked cheaper than (owner, status, created_ms); after 5,850 newer pins in another status it
# read 5,860 rows for 10 (6.3 ms to run, growing with each new pin). These statements are indexed lookups of a few
# rows, where the page price only chooses between indexes.
HOT_SETTINGS = {"plan_cache_mode": "force_generic_plan", "random_page_cost": "1.1"}

# Seconds a connection keeps a prepared statement (asyncpg's ``max_cached_statement_lifetime``, 300 by default)
# before preparing it again. A generic plan is made from the statistics of the moment it is prepared, and is made
# again only when an ANALYZE of its tables (autovacuum's, about a minute after they changed enough) invalidates it:
# a plan made while ``orders`` was empty read every order for each pin of a GET /pins page (12,996 orders read for
# each of 10 pins after 4,000 POSTs; the PostgreSQL processes' CPU per GET went from 0.2 to 4-10 ms). Prepared again,
# the plan sees the tables' sizes as they are. Preparing again is one round trip per statement and connection
# every PLAN_LIFETIME seconds.
PLAN_LIFETIME = 10.0


async def open_pool(params: Mapping[str, Any]) -> Any:
    """A pool for these statements beside the ORM's: ``params`` are asyncpg's ``create_pool`` arguments for the
    ORM's pool (:func:`w3gate.store.db.asyncpg_params`: the same server, credentials, TLS, sizes and reset hook
    the operator set in ``database_url``), to which this adds :data:`HOT_SETTINGS` and :data:`PLAN_LIFETIME`."""
    import asyncpg  # type: ignore[import-untyped]

    settings = {**params.get("server_settings", {}), **HOT_SETTINGS}
    return await asyncpg.create_pool(None, **{**params, "server_settings": settings,
                                              "max_cached_statement_lifetime": PLAN_LIFETIME})


async def close_pool(pool: Any, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close the pool gracefully, or cut its connections after ``timeout`` seconds (as the ORM's pool is
    closed: a server or path that stopped answering must not hold up the service's exit)."""
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except TimeoutError:
        pool.terminate()


async def create_pin(pool: Any, values: Mapping[str, Any], quota: tuple[int, int, int] | None = None,
                     address: AddressQuota | None = None) -> tuple[Mapping[str, Any], int] | None:
    """Insert a pin (``values``: its arguments for :mod:`w3gate.store.pin_rules`) and, if new, its content's order,
    in one statement (:func:`~w3gate.store.pin_rules.create_pin_statement`); with ``quota`` (live pins, bytes,
    pins a day; 0: no bound), only within it, and with ``address`` (which needs ``quota``) within its client
    address's day too.

    Returns (the order's columns and the pin's ``pin_status``, the ``created`` used), or None when nothing was
    written and the general path must run (see the module's docstring). ``created`` collisions (another
    instance's pin in the same millisecond) move it on by 1 ms, as the general path does.
    """
    import asyncpg

    values = dict(values)
    created_ms = int(values["now"])
    if quota is not None:
        values.update(max_pins=quota[0] or 0, max_bytes=quota[1] or 0, pins_per_day=quota[2] or 0,
                      today=created_ms // DAY_MS)
    if address is not None:
        values.update(address=address.address, address_pins=address.pins_per_day,
                      address_identities=address.identities_per_day)
    statement = create_pin_statement(quota is not None, address is not None)
    for _ in range(CREATED_RETRIES):
        values["now"] = created_ms
        sql, args = render("postgres", statement, values)
        if sql_log.isEnabledFor(logging.DEBUG):
            sql_log.debug("%s: %s", sql, args)
        try:
            row = await pool.fetchrow(sql, *args)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "pins_created_ms_key":
                raise
            created_ms += 1
            continue
        if row is None or row["pin_status"] is None:
            return None
        return row, created_ms
    raise RuntimeError("could not find a free created timestamp")
