"""What older releases stored under another name of a user's key becomes the user's (``Identity.aliases``).

A secp256k1 key that signed as a Substrate ECDSA key was its own user, keyed by its account id
(``substrate:0x<blake2-256 of the compressed key>``); it is now the ``ethereum:`` user of its address, as its
``eth-`` tokens are. The account id is a hash of the key, so no schema step can tell which rows are whose:
they are moved the first time the key signs in. Each alias row is taken with ``DELETE … RETURNING`` (its row
lock serialises two instances adopting at once: the second finds nothing), then its pins, usage, the
operator's settings and a revocation are merged into the user's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from w3gate.domain.users import PER_USER
from w3gate.store.rawsql import Handle, Sql
from w3gate.store.rawsql import dialect as _dialect

__all__ = ["adopt"]


async def adopt(db: Handle, owner: str, aliases: Sequence[str]) -> bool:
    """Move everything stored under ``aliases`` to ``owner``; whether anything was there."""
    c = db.client
    sql = Sql(_dialect(c))
    found = await c.execute_query_dict(
        f"SELECT user_key AS k FROM users WHERE user_key IN {sql.args_in(aliases)} UNION "
        f"SELECT owner AS k FROM token_revocations WHERE owner IN {sql.args_in(aliases)}", sql.args)
    if not found:
        return False
    async with db.transaction() as conn:
        for alias in sorted({r["k"] for r in found} - {owner}):
            await _adopt_one(conn, owner, alias)
    return True


async def _run(conn: Any, text: str, *args: Any) -> list[dict[str, Any]]:
    """``text`` with ``{}`` placeholders for ``args``, in the connection's dialect."""
    sql = Sql(_dialect(conn))
    return await conn.execute_query_dict(text.format(*(sql.arg(a) for a in args)), sql.args)  # type: ignore[no-any-return]


async def _adopt_one(conn: Any, owner: str, alias: str) -> None:
    rows = await _run(conn, f"DELETE FROM users WHERE user_key = {{}} RETURNING pins, bytes, day, day_pins, "
                            f"last_seen_ms, blocked, note, address, {', '.join(PER_USER)}", alias)
    if rows:
        old = rows[0]
        await _run(conn, "INSERT INTO users (user_key) VALUES ({}) ON CONFLICT DO NOTHING", owner)
        # pins change owner: the per-status counts follow by trigger, the users' totals are moved here
        await _run(conn, "UPDATE pins SET owner = {} WHERE owner = {}", owner, alias)
        limits = ", ".join(f"{k} = COALESCE({k}, {{}})" for k in PER_USER)
        await _run(
            conn,
            "UPDATE users SET pins = pins + {}, bytes = bytes + {}, "
            "day_pins = CASE WHEN day = {} THEN day_pins + {} WHEN day < {} THEN {} ELSE day_pins END, "
            "day = CASE WHEN day < {} THEN {} ELSE day END, "
            "last_seen_ms = CASE WHEN last_seen_ms < {} THEN {} ELSE last_seen_ms END, "
            "address = COALESCE(address, {}), blocked = CASE WHEN blocked <> 0 THEN blocked ELSE {} END, "
            f"note = COALESCE(note, {{}}), {limits} WHERE user_key = {{}}",
            old["pins"], old["bytes"], old["day"], old["day_pins"], old["day"], old["day_pins"], old["day"],
            old["day"], old["last_seen_ms"], old["last_seen_ms"], old["address"], old["blocked"], old["note"],
            *(old[k] for k in PER_USER), owner,
        )
        if old["blocked"] or old["note"] is not None or any(old[k] is not None for k in PER_USER):
            await _run(conn, "UPDATE users_version SET version = version + 1")  # services re-read settings
    revoked = await _run(conn, "DELETE FROM token_revocations WHERE owner = {} RETURNING revoked_before_ms, "
                               "updated_ms", alias)
    if revoked:
        await _run(
            conn,
            "INSERT INTO token_revocations (owner, revoked_before_ms, updated_ms) VALUES ({}, {}, {}) "
            "ON CONFLICT (owner) DO UPDATE SET revoked_before_ms = CASE WHEN token_revocations.revoked_before_ms "
            "> excluded.revoked_before_ms THEN token_revocations.revoked_before_ms ELSE excluded.revoked_before_ms "
            "END, updated_ms = excluded.updated_ms",
            owner, revoked[0]["revoked_before_ms"], revoked[0]["updated_ms"],
        )
