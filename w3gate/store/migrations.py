"""Versioned schema: each release's changes as ordered SQL steps, applied once, in a transaction.

Why not ``generate_schemas``: it only creates missing tables, it never upgrades an existing database.
Here ``schema_version`` records the last step applied, and :func:`upgrade` runs every later step, so a
newer w3gate opens an older database and upgrades it in place. SQL is written once for both dialects;
``{pk}`` is the one difference.

Rolling upgrades: a step that older releases can live with (new tables, new columns with a default or
NULL, new indexes: nothing they read or write changes meaning) starts with the :data:`ADDITIVE` marker.
The database records ``min_compatible``: the oldest schema version a release must know to use it (the
last step before it not marked additive). A release that knows fewer steps than the database has runs on
it unchanged if it knows at least ``min_compatible`` (and says so in the log), and refuses it otherwise, so
one instance of a fleet can be replaced at a time while the others keep serving. On PostgreSQL the check and
each step run under an advisory lock, so instances starting at once take turns instead of racing.
A step that must compute (parse CIDs, say) is an async function of (connection, dialect), run in the
same transaction as the SQL around it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from w3gate.store.content_keys import key_existing_cids

PK = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgres": "BIGSERIAL PRIMARY KEY",
}



class Additive:
    """Marker, first in a step list: releases that do not know this step keep using the database."""

    def __repr__(self) -> str:
        return "ADDITIVE"


ADDITIVE = Additive()

# Never edit a released step: append a new one.
# SQL for both, SQL per dialect, code, or the ADDITIVE marker
Step = str | dict[str, str] | Callable[[Any, str], Awaitable[None]] | Additive

MIGRATIONS: list[tuple[str, list[Step]]] = [
    (
        "pins and their meta",
        [
            """CREATE TABLE pins (
                id {pk},
                requestid VARCHAR(36) NOT NULL UNIQUE,
                owner VARCHAR(255) NOT NULL,
                cid VARCHAR(255) NOT NULL,
                name VARCHAR(255),
                status VARCHAR(8) NOT NULL,
                created_ms BIGINT NOT NULL UNIQUE,
                origins TEXT NOT NULL DEFAULT '[]',
                meta TEXT NOT NULL DEFAULT '{{}}'
            )""",
            "CREATE INDEX pins_owner_created ON pins (owner, created_ms)",
            "CREATE INDEX pins_owner_status_created ON pins (owner, status, created_ms)",
            "CREATE INDEX pins_cid ON pins (cid)",
            """CREATE TABLE pin_meta (
                id {pk},
                pin_id BIGINT NOT NULL REFERENCES pins (id) ON DELETE CASCADE,
                key VARCHAR(255) NOT NULL,
                value TEXT NOT NULL
            )""",
            "CREATE INDEX pin_meta_key_value ON pin_meta (key, value, pin_id)",
            "CREATE INDEX pin_meta_pin ON pin_meta (pin_id)",
        ],
    ),
    (
        "crust storage orders",
        [
            """CREATE TABLE orders (
                cid VARCHAR(255) PRIMARY KEY,
                status VARCHAR(10) NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_try_ms BIGINT NOT NULL DEFAULT 0,
                error TEXT,
                tx_hash VARCHAR(66),
                tx_nonce BIGINT,
                submitted_ms BIGINT,
                placed_block BIGINT,
                file_size BIGINT,
                expires_at BIGINT,
                replicas INTEGER,
                renewals INTEGER NOT NULL DEFAULT 0,
                created_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL
            )""",
            "CREATE INDEX orders_status_next ON orders (status, next_try_ms, created_ms)",
            "CREATE INDEX orders_expires ON orders (status, expires_at)",
            # pins accepted before orders existed get their order now
            """INSERT INTO orders (cid, status, created_ms, updated_ms)
               SELECT cid, 'queued', MIN(created_ms), MIN(created_ms) FROM pins GROUP BY cid""",
        ],
    ),
    (
        "crust extrinsics and order renewals",
        [
            # every signed extrinsic, recorded BEFORE it is sent: after a crash it is found on chain,
            # re-sent byte for byte while its era lives, or known dead after it: never re-signed blindly
            """CREATE TABLE crust_txs (
                hash VARCHAR(66) PRIMARY KEY,
                nonce BIGINT NOT NULL,
                extrinsic TEXT NOT NULL,
                cids TEXT NOT NULL,
                start_block BIGINT NOT NULL,
                era_end BIGINT NOT NULL,
                status VARCHAR(10) NOT NULL,
                included_block BIGINT,
                created_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL
            )""",
            "CREATE INDEX crust_txs_status ON crust_txs (status, created_ms)",
            # 0 = nothing due, 1 = renewal order due, 2 = renewal order in flight (tx_hash)
            "ALTER TABLE orders ADD COLUMN renew_due INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX orders_tx_hash ON orders (tx_hash)",
        ],
    ),
    (
        "pin counts per owner and status, kept by triggers",
        [
            # GET /pins must return the total count; counting a million rows per request is too slow,
            # so the database keeps the per-(owner, status) totals itself, whatever code changes pins.
            """CREATE TABLE pin_counts (
                owner VARCHAR(255) NOT NULL,
                status VARCHAR(8) NOT NULL,
                n BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (owner, status)
            )""",
            "CREATE INDEX pins_owner_cid ON pins (owner, cid, created_ms)",
            """INSERT INTO pin_counts (owner, status, n)
               SELECT owner, status, COUNT(*) FROM pins GROUP BY owner, status""",
            {
                "sqlite": """
                CREATE TRIGGER pins_count_insert AFTER INSERT ON pins BEGIN
                    INSERT INTO pin_counts (owner, status, n) VALUES (NEW.owner, NEW.status, 1)
                    ON CONFLICT (owner, status) DO UPDATE SET n = n + 1;
                END;
                CREATE TRIGGER pins_count_delete AFTER DELETE ON pins BEGIN
                    UPDATE pin_counts SET n = n - 1 WHERE owner = OLD.owner AND status = OLD.status;
                END;
                CREATE TRIGGER pins_count_update AFTER UPDATE OF status, owner ON pins
                WHEN OLD.status IS NOT NEW.status OR OLD.owner IS NOT NEW.owner BEGIN
                    UPDATE pin_counts SET n = n - 1 WHERE owner = OLD.owner AND status = OLD.status;
                    INSERT INTO pin_counts (owner, status, n) VALUES (NEW.owner, NEW.status, 1)
                    ON CONFLICT (owner, status) DO UPDATE SET n = n + 1;
                END;
                """,
                "postgres": """
                CREATE FUNCTION w3gate_pin_counts() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF TG_OP IN ('DELETE', 'UPDATE') THEN
                        UPDATE pin_counts SET n = n - 1 WHERE owner = OLD.owner AND status = OLD.status;
                    END IF;
                    IF TG_OP IN ('INSERT', 'UPDATE') THEN
                        INSERT INTO pin_counts (owner, status, n) VALUES (NEW.owner, NEW.status, 1)
                        ON CONFLICT (owner, status) DO UPDATE SET n = pin_counts.n + 1;
                    END IF;
                    RETURN NULL;
                END $$;
                CREATE TRIGGER pins_count_insert_delete AFTER INSERT OR DELETE ON pins
                    FOR EACH ROW EXECUTE FUNCTION w3gate_pin_counts();
                CREATE TRIGGER pins_count_update AFTER UPDATE OF status, owner ON pins
                    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.owner IS DISTINCT FROM NEW.owner)
                    EXECUTE FUNCTION w3gate_pin_counts();
                """,
            },
        ],
    ),
    (
        "crust extrinsics: the runtime spec version they were signed under",
        [
            # the spec version is part of the signed payload (CheckSpecVersion): once a finalized block runs a
            # newer runtime, an extrinsic signed under an older one that is not in a block by then never will be,
            # so its orders are re-signed at once instead of after its era (NULL: recorded before this step)
            "ALTER TABLE crust_txs ADD COLUMN spec_version INTEGER",
        ],
    ),
    (
        "an order's cost and renewal strategy",
        [
            # what the last batch carrying the CID spent on it (its order price and tip or prepaid top-up, plus
            # its share of the extrinsic's fee), as computed before sending; a decimal string: balances are u128
            "ALTER TABLE orders ADD COLUMN cost VARCHAR(40)",
            "ALTER TABLE orders ADD COLUMN renewal VARCHAR(8)",
        ],
    ),
    (
        "one order per content: CIDs keyed by content whatever their text form",
        [
            # pins keep the user's text in cid; both tables link by the content key (w3gate.cids)
            "ALTER TABLE pins ADD COLUMN cid_key VARCHAR(255) NOT NULL DEFAULT ''",
            "ALTER TABLE orders ADD COLUMN cid_key VARCHAR(255)",
            key_existing_cids,
            "CREATE UNIQUE INDEX orders_cid_key ON orders (cid_key)",
            "CREATE INDEX pins_cid_key ON pins (cid_key)",
            "CREATE INDEX pins_owner_cid_key ON pins (owner, cid_key, created_ms)",
            "DROP INDEX pins_cid",
            "DROP INDEX pins_owner_cid",
        ],
    ),
    (
        "rolling upgrades: the oldest schema a release must know to use the database",
        [
            ADDITIVE,
            # one row, written with schema_version by every upgrade (see module docstring)
            "CREATE TABLE schema_compat (min_compatible INTEGER NOT NULL)",
        ],
    ),
    (
        "users: usage kept by triggers, per-user limits and blocks",
        [
            ADDITIVE,
            # the bytes a pin was admitted for (the order's size then): what bytes_per_user counts, and what
            # deleting it gives back; pins made before this step count 0
            "ALTER TABLE pins ADD COLUMN size BIGINT NOT NULL DEFAULT 0",
            # one row per identity (Identity.user_key): live pins and their bytes (kept by triggers, whatever
            # code writes pins, an older instance's included), pins added on UTC day `day` (kept by admission),
            # last seen, and the operator's settings: NULL limits are the configuration's
            """CREATE TABLE users (
                user_key VARCHAR(255) PRIMARY KEY,
                address VARCHAR(255),
                pins BIGINT NOT NULL DEFAULT 0,
                bytes BIGINT NOT NULL DEFAULT 0,
                day BIGINT NOT NULL DEFAULT 0,
                day_pins BIGINT NOT NULL DEFAULT 0,
                last_seen_ms BIGINT NOT NULL DEFAULT 0,
                blocked INTEGER NOT NULL DEFAULT 0,
                note TEXT,
                pins_per_user BIGINT,
                bytes_per_user BIGINT,
                pins_per_day_per_user BIGINT,
                requests_per_minute BIGINT
            )""",
            # bumped by every change of a user's settings: the service re-reads them when it moves
            "CREATE TABLE users_version (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)",
            "INSERT INTO users_version (id, version) VALUES (1, 0)",
            "INSERT INTO users (user_key, pins) SELECT owner, COUNT(*) FROM pins GROUP BY owner",
            {
                "sqlite": """
                CREATE TRIGGER pins_users_insert AFTER INSERT ON pins BEGIN
                    INSERT INTO users (user_key, pins, bytes) VALUES (NEW.owner, 1, NEW.size)
                    ON CONFLICT (user_key) DO UPDATE SET pins = pins + 1, bytes = bytes + excluded.bytes;
                END;
                CREATE TRIGGER pins_users_delete AFTER DELETE ON pins BEGIN
                    UPDATE users SET pins = pins - 1, bytes = bytes - OLD.size WHERE user_key = OLD.owner;
                END;
                """,
                "postgres": """
                CREATE FUNCTION w3gate_users_usage() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF TG_OP = 'DELETE' THEN
                        UPDATE users SET pins = pins - 1, bytes = bytes - OLD.size WHERE user_key = OLD.owner;
                    ELSE
                        INSERT INTO users (user_key, pins, bytes) VALUES (NEW.owner, 1, NEW.size)
                        ON CONFLICT (user_key) DO UPDATE SET pins = users.pins + 1, bytes = users.bytes + NEW.size;
                    END IF;
                    RETURN NULL;
                END $$;
                CREATE TRIGGER pins_users_usage AFTER INSERT OR DELETE ON pins
                    FOR EACH ROW EXECUTE FUNCTION w3gate_users_usage();
                """,
            },
        ],
    ),
    (
        "bound-token revocations",
        [
            ADDITIVE,
            # one row per user who revoked: bound tokens issued before revoked_before_ms, and every plain
            # W3Auth token of that user, are refused (w3gate.services.tokens)
            """CREATE TABLE token_revocations (
                owner VARCHAR(255) PRIMARY KEY,
                revoked_before_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL
            )""",
        ],
    ),
    (
        "per-address day counts, identities' first pinning day, the CRU spent per day",
        [
            ADDITIVE,
            # the UTC day (days since the epoch) of an identity's first admitted pin: NULL until then. A new
            # identity counts once against identities_per_address_per_day; users known before count as old
            "ALTER TABLE users ADD COLUMN first_day BIGINT",
            "UPDATE users SET first_day = 0",
            # pins added and new identities admitted from one client address (IPv4, IPv6 /64) per UTC day
            """CREATE TABLE address_days (
                address VARCHAR(64) NOT NULL,
                day BIGINT NOT NULL,
                pins BIGINT NOT NULL DEFAULT 0,
                identities BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (address, day)
            )""",
            # what the batches recorded on a UTC day were computed to cost (smallest units): cru_per_day
            "CREATE TABLE spend_days (day BIGINT PRIMARY KEY, spent BIGINT NOT NULL DEFAULT 0)",
        ],
    ),
    (
        "the operator's IPFS node: content fetched, sized and held before it is ordered",
        [
            ADDITIVE,
            # the DAG's cumulative size as the node measured it once fetched (NULL: not measured): the size an
            # order reports, shown in a pin's info as dag_size
            "ALTER TABLE orders ADD COLUMN dag_size BIGINT",
            # one row per content w3gate asked its node to pin (w3gate.ordering.fetcher): state 'fetching' (a
            # pin/add was or is under way: resumed after a restart) or 'held' (pinned and sized: the order may be
            # placed); ours 0 when the node had it pinned already (never unpinned by w3gate); started_ms: when the
            # current fetch began (fetch_timeout counts from it). A row is deleted when the content is released.
            """CREATE TABLE ipfs_content (
                cid_key VARCHAR(255) PRIMARY KEY,
                cid VARCHAR(255) NOT NULL,
                state VARCHAR(10) NOT NULL,
                ours INTEGER NOT NULL DEFAULT 1,
                started_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL
            )""",
            # a pin's size moves to the measured size once known: the owner's bytes follow it
            {
                "sqlite": """
                CREATE TRIGGER pins_users_size AFTER UPDATE OF size ON pins WHEN OLD.size <> NEW.size BEGIN
                    UPDATE users SET bytes = bytes + NEW.size - OLD.size WHERE user_key = NEW.owner;
                END;
                """,
                "postgres": """
                CREATE FUNCTION w3gate_users_size() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    UPDATE users SET bytes = bytes + NEW.size - OLD.size WHERE user_key = NEW.owner;
                    RETURN NULL;
                END $$;
                CREATE TRIGGER pins_users_size AFTER UPDATE OF size ON pins
                    FOR EACH ROW WHEN (OLD.size IS DISTINCT FROM NEW.size) EXECUTE FUNCTION w3gate_users_size();
                """,
            },
        ],
    ),
]

LATEST = len(MIGRATIONS)
MIGRATION_LOCK = 0x7733_6761_7465_0001  # PostgreSQL advisory lock key held while the schema is checked/upgraded
# the step that made schema_compat: from it on every upgrade records min_compatible
COMPAT_STEP = next(i for i, (title, _) in enumerate(MIGRATIONS, 1) if title.startswith("rolling upgrades:"))


class SchemaTooNew(Exception):
    """The database was written by a newer w3gate that older releases cannot use."""


def is_additive(version: int) -> bool:
    """Whether older releases keep using the database after step ``version`` (1-based)."""
    return any(isinstance(step, Additive) for step in MIGRATIONS[version - 1][1])


def min_compatible(version: int) -> int:
    """The oldest schema a release must know to use a database at ``version``: its last non-additive step."""
    return next((v for v in range(version, 0, -1) if not is_additive(v)), 0)


def dialect_of(conn: BaseDBAsyncClient) -> str:
    name = conn.capabilities.dialect
    return "postgres" if name.startswith("postgres") else name


async def current_version(conn: BaseDBAsyncClient) -> int:
    await conn.execute_script("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    rows = await conn.execute_query_dict("SELECT MAX(version) AS v FROM schema_version")
    return int(rows[0]["v"] or 0) if rows else 0


async def stored_min_compatible(conn: BaseDBAsyncClient, version: int) -> int:
    """What a newer release recorded as the oldest schema that can use this database; ``version`` itself
    when nothing was recorded (a release from before the rule wrote it: no older release may use it)."""
    try:
        rows = await conn.execute_query_dict("SELECT MAX(min_compatible) AS v FROM schema_compat")
    except Exception:  # noqa: BLE001 - no such table: written before the rule
        return version
    return int(rows[0]["v"]) if rows and rows[0]["v"] is not None else version


async def _lock(tx: BaseDBAsyncClient) -> None:
    """Serialize schema changes between instances starting at once on one PostgreSQL (systemd starts a fleet's
    units together): held to the end of the transaction. ``CREATE TABLE IF NOT EXISTS`` alone is not safe
    against a concurrent one there. SQLite serves one instance."""
    if dialect_of(tx) == "postgres":
        await tx.execute_query(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")


async def _version_locked(conn: BaseDBAsyncClient) -> int:
    from tortoise.transactions import in_transaction

    async with in_transaction(conn.connection_name) as tx:
        await _lock(tx)
        return await current_version(tx)


def _check_newer(version: int, needed: int) -> None:
    if needed > len(MIGRATIONS):
        raise SchemaTooNew(
            f"the database is at schema version {version} and needs a release that knows schema {needed}; "
            f"this w3gate knows up to {len(MIGRATIONS)}: upgrade w3gate"
        )


async def upgrade(conn: BaseDBAsyncClient, target: int | None = None) -> tuple[int, int]:
    """Apply every step after the database's version up to ``target`` (default: every step this release
    knows); return (before, after). A newer database is used as it is when this release knows at least its
    ``min_compatible``: (before, before) is returned and the caller logs it; otherwise SchemaTooNew."""
    from tortoise.transactions import in_transaction

    latest = len(MIGRATIONS)
    target = latest if target is None else target
    before = await _version_locked(conn)
    if before > latest:
        _check_newer(before, await stored_min_compatible(conn, before))
        return before, before
    pk = PK[dialect_of(conn)]
    for version in range(before + 1, target + 1):
        _title, steps = MIGRATIONS[version - 1]
        async with in_transaction(conn.connection_name) as tx:
            await _lock(tx)
            if await current_version(tx) >= version:  # another instance applied it meanwhile
                continue
            for step in steps:
                if isinstance(step, Additive):
                    continue
                if callable(step):
                    await step(tx, dialect_of(conn))
                    continue
                sql = step[dialect_of(conn)] if isinstance(step, dict) else step.format(pk=pk)
                await tx.execute_script(sql)
            await tx.execute_query("DELETE FROM schema_version")
            await tx.execute_query(f"INSERT INTO schema_version (version) VALUES ({version})")
            if version >= COMPAT_STEP:
                await tx.execute_query("DELETE FROM schema_compat")
                await tx.execute_query(
                    f"INSERT INTO schema_compat (min_compatible) VALUES ({min_compatible(version)})"
                )
    now = await current_version(conn)
    if now > latest:  # a newer release's instance upgraded it past this release meanwhile
        _check_newer(now, await stored_min_compatible(conn, now))
    return before, max(before, target)
