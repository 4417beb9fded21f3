"""Users (identities): usage, the operator's per-user limits and blocks, and the atomic quota check.

Live pins and their bytes are kept by triggers on ``pins`` (schema 9), so they are right whatever code
writes pins. A pin is admitted by one conditional ``UPDATE`` of the user's row in the transaction that
inserts it: the row lock serialises one user's concurrent requests on PostgreSQL (each re-checks the
committed totals), SQLite runs one transaction at a time, so a quota holds under any concurrency. A
refused request rolls back: nothing is stored and the day's count is unchanged.

These are asyncio coroutines for the ORM's loop; trio code reaches them through ``Database.run``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from w3gate.domain.users import PER_USER
from w3gate.hookspecs import Quota
from w3gate.store.pin_rules import ADMIT, WITHIN_ADDRESS_DAY, render
from w3gate.store.rawsql import Handle, Sql
from w3gate.store.rawsql import dialect as _dialect

DAY_MS = 86_400_000
ADMIT_ATTEMPTS = 4  # the row is made (at most once) and may appear between two statements (at most once)
_COLUMNS = ("user_key, address, pins, bytes, day, day_pins, last_seen_ms, blocked, note, "
            + ", ".join(PER_USER))


@dataclass(frozen=True)
class AddressQuota:
    """The per-address day limits a pin request from ``address`` (a client key: an IPv4 address, an IPv6
    /64) is counted against (0: no bound). No address known (a unix socket): nothing to count by."""

    address: str
    pins_per_day: int = 0
    identities_per_day: int = 0

    @property
    def active(self) -> bool:
        return bool(self.address) and bool(self.pins_per_day or self.identities_per_day)


class QuotaExceeded(Exception):
    """The pin would take the user past ``limit`` (a :class:`Quota` field's limit name)."""

    def __init__(self, limit: str, current: int, maximum: int) -> None:
        super().__init__(limit)
        self.limit, self.current, self.maximum = limit, current, maximum


@dataclass(frozen=True)
class UserRow:
    user_key: str
    address: str | None
    pins: int
    bytes: int
    pins_today: int
    last_seen_ms: int
    blocked: bool
    note: str | None
    limits: dict[str, int | None]  # the operator's own values for this user; None: the configuration's


def _row(r: Mapping[str, Any], today: int) -> UserRow:
    return UserRow(
        user_key=r["user_key"], address=r["address"], pins=int(r["pins"]), bytes=int(r["bytes"]),
        pins_today=int(r["day_pins"]) if int(r["day"]) == today else 0, last_seen_ms=int(r["last_seen_ms"]),
        blocked=bool(r["blocked"]), note=r["note"],
        limits={k: (None if r[k] is None else int(r[k])) for k in PER_USER},
    )


async def admit(conn: Any, owner: str, quota: Quota, size: int, now_ms: int) -> None:
    """Count a pin of ``size`` bytes against ``quota`` in ``conn``'s transaction, or raise
    :class:`QuotaExceeded` (the caller's transaction then rolls back). An unbounded quota costs nothing."""
    if not (quota.pins or quota.bytes or quota.pins_per_day):
        return
    today = now_ms // DAY_MS
    bounds = {"owner": owner, "size": size, "today": today, "max_pins": quota.pins or 0,
              "max_bytes": quota.bytes or 0, "pins_per_day": quota.pins_per_day or 0}
    within = render(_dialect(conn), ADMIT, bounds)
    for _ in range(ADMIT_ATTEMPTS):
        rows = await conn.execute_query_dict(*within)
        if rows:
            return
        sql = Sql(_dialect(conn))
        found = await conn.execute_query_dict(
            f"SELECT pins, bytes, day, day_pins FROM users WHERE user_key = {sql.arg(owner)}", sql.args)
        if not found:  # a new user: make the row (a concurrent first request may make it first), check again
            sql = Sql(_dialect(conn))
            await conn.execute_query(
                f"INSERT INTO users (user_key) VALUES ({sql.arg(owner)}) ON CONFLICT DO NOTHING", sql.args)
            continue
        r = found[0]
        if quota.pins and int(r["pins"]) >= quota.pins:
            raise QuotaExceeded("pins_per_user", int(r["pins"]), quota.pins)
        if quota.bytes and int(r["bytes"]) + size > quota.bytes:
            raise QuotaExceeded("bytes_per_user", int(r["bytes"]), quota.bytes)
        if quota.pins_per_day and int(r["day"]) == today and int(r["day_pins"]) >= quota.pins_per_day:
            raise QuotaExceeded("pins_per_day_per_user", int(r["day_pins"]), quota.pins_per_day)
        # Within every bound: on PostgreSQL the row was committed by a concurrent first request after the
        # UPDATE's snapshot and before the SELECT's (READ COMMITTED); the UPDATE will see it now.
    raise RuntimeError(f"could not count a pin for {owner!r} in {ADMIT_ATTEMPTS} attempts")


async def admit_address(conn: Any, owner: str, quota: AddressQuota | None, now_ms: int) -> None:
    """Count a pin against its client address's day in ``conn``'s transaction, or raise
    :class:`QuotaExceeded` (``pins_per_address_per_day``, ``identities_per_address_per_day``).

    An identity is new on the day of its first admitted pin (``users.first_day``): then it also counts
    against the address's identities of the day. Both statements are upserts: on PostgreSQL the second of
    two concurrent requests waits for the first's row lock and is checked against what it committed
    (``ON CONFLICT DO UPDATE`` sees the latest row even under READ COMMITTED), so the bounds hold under any
    concurrency; a refusal rolls the transaction back, first day included.
    """
    if quota is None or not quota.active:
        return
    today = now_ms // DAY_MS
    sql = Sql(_dialect(conn))
    first = await conn.execute_query_dict(
        f"INSERT INTO users (user_key, first_day) VALUES ({sql.arg(owner)}, {sql.arg(today)}) "
        "ON CONFLICT (user_key) DO UPDATE SET first_day = excluded.first_day WHERE users.first_day IS NULL "
        "RETURNING user_key", sql.args)
    new = 1 if first else 0
    within = WITHIN_ADDRESS_DAY.format(row="address_days.", new="excluded.identities = 1")
    counted = await conn.execute_query_dict(*render(
        _dialect(conn),
        "INSERT INTO address_days (address, day, pins, identities) VALUES (:address, :today, 1, :new_identity) "
        "ON CONFLICT (address, day) DO UPDATE SET pins = address_days.pins + 1, "
        f"identities = address_days.identities + excluded.identities WHERE {within} RETURNING pins",
        {"address": quota.address, "today": today, "new_identity": new, "address_pins": quota.pins_per_day,
         "address_identities": quota.identities_per_day}))
    if counted:
        return
    sql = Sql(_dialect(conn))
    r = (await conn.execute_query_dict(
        f"SELECT pins, identities FROM address_days WHERE address = {sql.arg(quota.address)} AND day = "
        f"{sql.arg(today)}", sql.args))[0]
    if new and quota.identities_per_day and int(r["identities"]) >= quota.identities_per_day:
        raise QuotaExceeded("identities_per_address_per_day", int(r["identities"]), quota.identities_per_day)
    raise QuotaExceeded("pins_per_address_per_day", int(r["pins"]), quota.pins_per_day)


async def address_day(db: Handle, address: str, now_ms: int) -> tuple[int, int]:
    """(pins, new identities) counted for a client address on the UTC day of ``now_ms``."""
    conn = db.client
    sql = Sql(_dialect(conn))
    rows = await conn.execute_query_dict(
        f"SELECT pins, identities FROM address_days WHERE address = {sql.arg(address)} AND day = "
        f"{sql.arg(now_ms // DAY_MS)}", sql.args)
    return (int(rows[0]["pins"]), int(rows[0]["identities"])) if rows else (0, 0)


async def forget_address_days(db: Handle, now_ms: int) -> int:
    """Drop the per-address counts of days before yesterday (UTC): nothing reads them; returns how many."""
    conn = db.client
    sql = Sql(_dialect(conn))
    rows = await conn.execute_query_dict(
        f"DELETE FROM address_days WHERE day < {sql.arg(now_ms // DAY_MS - 1)} RETURNING day", sql.args)
    return len(rows)


async def known_file_size(db: Handle, key: str) -> int | None:
    """The chain-reported size of a content's order, else the size the IPFS node measured, if either is known
    (what the submitter will order)."""
    sql = Sql(db.dialect)
    rows = await db.read(
        f"SELECT COALESCE(file_size, dag_size) AS file_size FROM orders WHERE cid_key = {sql.arg(key)}", sql.args)
    return int(rows[0]["file_size"]) if rows and rows[0]["file_size"] is not None else None


async def version(db: Handle) -> int:
    rows = await db.client.execute_query_dict("SELECT version FROM users_version")
    return int(rows[0]["version"]) if rows else 0


async def with_settings(db: Handle) -> tuple[int, list[UserRow]]:
    """(version, every user with a setting of the operator's: a block or a limit of their own)."""
    conn = db.client
    any_limit = " OR ".join(f"{k} IS NOT NULL" for k in PER_USER)
    rows = await conn.execute_query_dict(f"SELECT {_COLUMNS} FROM users WHERE blocked <> 0 OR {any_limit}")
    return await version(db), [_row(r, 0) for r in rows]


async def seen(db: Handle, entries: Sequence[tuple[str, str, int]]) -> None:
    """Record (user_key, address, ms) of users seen; one statement per user, in one transaction."""
    async with db.transaction() as conn:
        for owner, address, ms in entries:
            sql = Sql(_dialect(conn))
            await conn.execute_query(
                f"INSERT INTO users (user_key, address, last_seen_ms) VALUES ({sql.arg(owner)}, "
                f"{sql.arg(address[:255])}, {sql.arg(ms)}) ON CONFLICT (user_key) DO UPDATE SET "
                "address = excluded.address, last_seen_ms = CASE WHEN excluded.last_seen_ms > users.last_seen_ms "
                "THEN excluded.last_seen_ms ELSE users.last_seen_ms END", sql.args)


async def list_users(db: Handle, limit: int, now_ms: int) -> list[UserRow]:
    """The users seen last first (then by pins)."""
    conn = db.client
    sql = Sql(_dialect(conn))
    rows = await conn.execute_query_dict(
        f"SELECT {_COLUMNS} FROM users ORDER BY last_seen_ms DESC, pins DESC, user_key LIMIT {sql.arg(limit)}",
        sql.args)
    return [_row(r, now_ms // DAY_MS) for r in rows]


async def get_user(db: Handle, owner: str, now_ms: int) -> UserRow | None:
    conn = db.client
    sql = Sql(_dialect(conn))
    rows = await conn.execute_query_dict(f"SELECT {_COLUMNS} FROM users WHERE user_key = {sql.arg(owner)}", sql.args)
    return _row(rows[0], now_ms // DAY_MS) if rows else None


async def update_settings(db: Handle, owner: str, changes: Mapping[str, Any]) -> None:
    """Set ``changes`` (per-user limits, ``blocked``, ``note``) on a user, creating the row, and move the
    settings version on so that running services re-read them."""
    allowed = {*PER_USER, "blocked", "note"}
    if not changes or set(changes) - allowed:
        raise ValueError(f"settable: {', '.join(sorted(allowed))}")
    async with db.transaction() as conn:
        sql = Sql(_dialect(conn))
        await conn.execute_query(f"INSERT INTO users (user_key) VALUES ({sql.arg(owner)}) ON CONFLICT DO NOTHING",
                                 sql.args)
        sql = Sql(_dialect(conn))
        assignments = ", ".join(f"{k} = {sql.arg(v)}" for k, v in changes.items())
        await conn.execute_query(f"UPDATE users SET {assignments} WHERE user_key = {sql.arg(owner)}", sql.args)
        await conn.execute_query("UPDATE users_version SET version = version + 1")
