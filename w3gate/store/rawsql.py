"""Hand-written SQL shared by the store's modules: one statement text for SQLite and PostgreSQL.

The hot paths and the conditional order updates are single statements written out by hand: building them
through the query builder cost more than the database work itself, and some (``EXISTS`` over pins) it
cannot express. Only the placeholders differ between the dialects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from w3gate.store.models import Pin


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


def conn() -> Any:
    return Pin._meta.db  # the app's connection (or the transaction in progress), whatever its name


def dialect(conn: Any) -> str:
    return "sqlite" if conn.capabilities.dialect == "sqlite" else "postgres"
