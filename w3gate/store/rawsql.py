"""Hand-written SQL shared by the store's modules: one statement text for SQLite and PostgreSQL.

The hot paths and the conditional order updates are single statements written out by hand: building them
through the query builder cost more than the database work itself, and some (``EXISTS`` over pins) it
cannot express. Only the placeholders differ between the dialects.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient, TransactionContext
from tortoise.transactions import in_transaction

# the ORM's statement log, which ``log_sql`` turns on (w3gate.store.db.configure_sql_log): the statements w3gate
# sends on its own pool too
sql_log = logging.getLogger("tortoise.db_client")


class Sql:
    """Collects arguments and hands out the dialect's placeholders (``?`` or ``$n``)."""

    def __init__(self, dialect: str) -> None:
        self.args: list[Any] = []
        self.numbered = dialect != "sqlite"

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}" if self.numbered else "?"

    def args_in(self, values: Sequence[Any]) -> str:
        return "(" + ", ".join(self.arg(v) for v in values) + ")"


@dataclass(frozen=True)
class Handle:
    """What the store's functions are given (by ``Database.run``), never looked up: the ORM's client for the
    store's database, its dialect, and on PostgreSQL the hot paths' pool (:mod:`w3gate.store.postgres_direct`)."""

    client: BaseDBAsyncClient
    dialect: str
    pool: Any | None = None

    async def read(self, sql: str, args: Sequence[Any]) -> Sequence[Mapping[str, Any]]:
        """Rows of a read on an indexed lookup, as the driver gives them (sqlite3.Row, asyncpg Record), read by
        column name: on PostgreSQL from the hot paths' pool (generic plans, no ORM wrappers), else the client."""
        if self.pool is not None:
            if sql_log.isEnabledFor(logging.DEBUG):
                sql_log.debug("%s: %s", sql, args)
            return await self.pool.fetch(sql, *args)  # type: ignore[no-any-return]
        _, rows = await self.client.execute_query(sql, list(args))
        return rows

    def transaction(self) -> TransactionContext:
        """A transaction on this database (its statements through the client it yields)."""
        return in_transaction(self.client.connection_name)

    def within(self, transaction: BaseDBAsyncClient) -> Handle:
        """A handle for a caller's ``transaction``: every statement on it (no pool), so all commit or roll back
        together."""
        return Handle(transaction, self.dialect)


def dialect(conn: Any) -> str:
    return "sqlite" if conn.capabilities.dialect == "sqlite" else "postgres"
