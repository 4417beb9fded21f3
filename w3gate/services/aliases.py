"""Adopting, at a user's first sign-in to this process, what was stored under another name of their key
(:mod:`w3gate.store.aliases`): a look-up once per user and process, a move once per user and database."""

from __future__ import annotations

from collections.abc import Callable

from w3gate.hookspecs import Identity
from w3gate.store.interface import Store

MAX_REMEMBERED = 100_000  # users known to have nothing left under an alias; past it the memory starts afresh


class AliasAdopter:
    """Called by the authenticator for every identity with aliases, before its revocation look-up."""

    def __init__(self, db: Store, moved: Callable[[str], None] | None = None) -> None:
        self.db = db
        self.moved = moved  # told the user key that received rows (e.g. to forget a remembered revocation)
        self._done: set[str] = set()

    async def __call__(self, identity: Identity) -> None:
        key = identity.user_key
        if not identity.aliases or key in self._done:
            return
        if await self.db.adopt_aliases(key, identity.aliases) and self.moved is not None:
            self.moved(key)
        if len(self._done) >= MAX_REMEMBERED:
            self._done.clear()
        self._done.add(key)
