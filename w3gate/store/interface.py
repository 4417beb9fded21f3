"""The store as its users see it: one interface for pins, users, revocations, orders and the ordering leader's
lock, whatever the database.

Two implementations (:mod:`w3gate.store.db`): :class:`~w3gate.store.db.SqliteDatabase` and
:class:`~w3gate.store.db.PostgresDatabase`, picked by the URL (``Database(url)``). The composition root
(:mod:`w3gate.server`, and the CLI commands that open the database) makes one and hands it to every service that
needs it; nothing looks a connection up. Each operation runs one store function (``w3gate.store.pins`` and its
siblings, asyncio coroutines for the ORM) with the store's own connection handle: ``run`` is that door, for the
operations not named here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from w3gate.domain.pins import NewPin, PinQuery, PinRecord
from w3gate.hookspecs import Quota
from w3gate.ordering.lifecycle import Claimed, RecordedBatch, WatchedOrder
from w3gate.store.users import AddressQuota, UserRow

__all__ = ["LeaderLock", "Store"]

T = TypeVar("T")


class LeaderLock(Protocol):
    """The ordering leader's lock (:mod:`w3gate.services.leader`); each call gives up after ``deadline`` seconds
    and then answers False (a lock that cannot be asked is not held)."""

    async def try_acquire(self, deadline: float) -> bool: ...

    async def holds(self, deadline: float) -> bool: ...

    async def close(self) -> None:
        """Let the lock go (at once)."""

    def stop(self) -> None:
        """Free what the lock runs on; the lock is not used after."""


class Store(Protocol):
    url: str
    statement_timeout: float | None

    @property
    def dialect(self) -> str: ...

    # the life of the store and its generic doors
    async def open(self, *, upgrade_to: int | None = None) -> tuple[int, int]: ...

    async def close(self) -> None: ...

    async def maintain(self) -> None: ...

    async def ping(self, timeout: float | None = None) -> bool: ...

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(handle, *args)`` with the store's :class:`~w3gate.store.rawsql.Handle`, on the ORM's loop."""

    async def read_aside(self, sql: str, args: Sequence[Any] = (), *, by_name: bool = False,
                         timeout: float | None = None) -> list[Any]: ...

    # pins
    async def create_pin(self, owner: str, pin: NewPin, created_ms: int, quota: Quota = ..., size: int = 0,
                         address: AddressQuota | None = None) -> tuple[PinRecord, int]: ...

    async def replace_pin(self, owner: str, requestid: str, pin: NewPin, created_ms: int, quota: Quota = ...,
                          size: int = 0, address: AddressQuota | None = None) -> tuple[PinRecord | None, int]: ...

    async def get_pin(self, owner: str, requestid: str) -> PinRecord | None: ...

    async def delete_pin(self, owner: str, requestid: str) -> bool: ...

    async def list_pins(self, owner: str, q: PinQuery) -> tuple[int, list[PinRecord]]: ...

    # users and revocations
    async def get_user(self, owner: str, now_ms: int) -> UserRow | None: ...

    async def known_file_size(self, key: str) -> int | None: ...

    async def users_version(self) -> int: ...

    async def users_with_settings(self) -> tuple[int, list[UserRow]]: ...

    async def seen(self, entries: Sequence[tuple[str, str, int]]) -> None: ...

    async def forget_address_days(self, now_ms: int) -> int: ...

    async def list_users(self, limit: int, now_ms: int) -> list[UserRow]: ...

    async def update_settings(self, owner: str, changes: Mapping[str, Any]) -> None: ...

    async def adopt_aliases(self, owner: str, aliases_: Sequence[str]) -> bool: ...

    async def revoked_before(self, owner: str) -> int | None: ...

    async def revoke(self, owner: str, before_ms: int, now_ms: int) -> int: ...

    # orders
    async def claim(self, token: str, limit: int, now_ms: int, fetched_only: bool = False) -> list[Claimed]: ...

    async def release_claim(self, token: str, now_ms: int) -> int: ...

    async def release_stale_claims(self, older_than_ms: int, now_ms: int) -> int: ...

    async def open_txs(self) -> list[RecordedBatch]: ...

    async def spent_on_day(self, now_ms: int) -> int: ...

    async def watched_page(self, after_cid: str, limit: int) -> list[WatchedOrder]: ...

    async def order_counts(self) -> dict[str, int]: ...

    # the ordering leader's lock
    def leader_lock(self, key: int, timeout: float) -> LeaderLock: ...
