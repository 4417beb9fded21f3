"""Token revocations: per user, the instant before which their tokens are refused (schema step "bound-token
revocations")."""

from __future__ import annotations

from w3gate.store.rawsql import Handle, Sql, dialect


async def revoked_before(db: Handle, owner: str) -> int | None:
    """The user's revocation instant (ms since the epoch), or None when they never revoked."""
    c = db.client
    sql = Sql(dialect(c))
    rows = await c.execute_query_dict(
        f"SELECT revoked_before_ms FROM token_revocations WHERE owner = {sql.arg(owner)}", sql.args
    )
    return int(rows[0]["revoked_before_ms"]) if rows else None


async def revoke(db: Handle, owner: str, before_ms: int, now_ms: int) -> int:
    """Move the user's revocation instant to ``before_ms`` (never back); return the instant now in force."""
    c = db.client
    sql = Sql(dialect(c))
    await c.execute_query(
        f"""INSERT INTO token_revocations (owner, revoked_before_ms, updated_ms)
            VALUES ({sql.arg(owner)}, {sql.arg(before_ms)}, {sql.arg(now_ms)})
            ON CONFLICT (owner) DO UPDATE SET
                revoked_before_ms = CASE WHEN token_revocations.revoked_before_ms > excluded.revoked_before_ms
                                    THEN token_revocations.revoked_before_ms ELSE excluded.revoked_before_ms END,
                updated_ms = excluded.updated_ms""",
        sql.args,
    )
    return await revoked_before(db, owner) or before_ms
