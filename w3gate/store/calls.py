"""The named operations of :class:`w3gate.store.interface.Store`, each one store function run through the
store's ``run`` (which hands it the store's connection handle). Shared by both implementations: where the
dialects differ, the function takes its path from the handle (``Handle.pool``, ``Handle.dialect``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from w3gate.domain.pins import NewPin, PinQuery, PinRecord
from w3gate.hookspecs import Quota
from w3gate.ordering.lifecycle import BatchCall, Claimed, Outcome, PollUpdate, RecordedBatch, WatchedOrder
from w3gate.store import aliases, ipfs_content, orders, pins, revocations, users
from w3gate.store.ipfs_content import Due
from w3gate.store.users import AddressQuota, UserRow

if TYPE_CHECKING:
    from w3gate.store.interface import Store

T = TypeVar("T")


class StoreCalls:
    """Mixed into the store's implementations (:class:`w3gate.store.db.Database`)."""

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        raise NotImplementedError

    def _store(self) -> Store:
        return self  # type: ignore[return-value]  # the implementations are Stores

    # pins
    async def create_pin(self, owner: str, pin: NewPin, created_ms: int, quota: Quota = pins.UNBOUNDED,
                         size: int = 0, address: AddressQuota | None = None) -> tuple[PinRecord, int]:
        return await self.run(pins.create_pin, owner, pin, created_ms, quota, size, address)

    async def replace_pin(self, owner: str, requestid: str, pin: NewPin, created_ms: int,
                          quota: Quota = pins.UNBOUNDED, size: int = 0,
                          address: AddressQuota | None = None) -> tuple[PinRecord | None, int]:
        return await self.run(pins.replace_pin, owner, requestid, pin, created_ms, quota, size, address)

    async def get_pin(self, owner: str, requestid: str) -> PinRecord | None:
        return await self.run(pins.get_pin, owner, requestid)

    async def delete_pin(self, owner: str, requestid: str) -> bool:
        return await self.run(pins.delete_pin, owner, requestid)

    async def list_pins(self, owner: str, q: PinQuery) -> tuple[int, list[PinRecord]]:
        """A list, bounded by the store's ``statement_timeout`` when it may scan (pins.list_pins_bounded)."""
        return await pins.list_pins_bounded(self._store(), owner, q)

    async def held_keys(self, keys: list[str]) -> list[str]:
        return await self.run(pins.held_keys, keys)

    # users and revocations
    async def get_user(self, owner: str, now_ms: int) -> UserRow | None:
        return await self.run(users.get_user, owner, now_ms)

    async def known_file_size(self, key: str) -> int | None:
        return await self.run(users.known_file_size, key)

    async def users_version(self) -> int:
        return await self.run(users.version)

    async def users_with_settings(self) -> tuple[int, list[UserRow]]:
        return await self.run(users.with_settings)

    async def seen(self, entries: Sequence[tuple[str, str, int]]) -> None:
        await self.run(users.seen, entries)

    async def forget_address_days(self, now_ms: int) -> int:
        return await self.run(users.forget_address_days, now_ms)

    async def list_users(self, limit: int, now_ms: int) -> list[UserRow]:
        return await self.run(users.list_users, limit, now_ms)

    async def update_settings(self, owner: str, changes: Mapping[str, Any]) -> None:
        await self.run(users.update_settings, owner, changes)

    async def adopt_aliases(self, owner: str, aliases_: Sequence[str]) -> bool:
        return await self.run(aliases.adopt, owner, aliases_)

    async def revoked_before(self, owner: str) -> int | None:
        return await self.run(revocations.revoked_before, owner)

    async def revoke(self, owner: str, before_ms: int, now_ms: int) -> int:
        return await self.run(revocations.revoke, owner, before_ms, now_ms)

    # orders (w3gate.store.orders): the submitter, the poller and the budget
    async def claim_orders(self, token: str, limit: int, now_ms: int, fetched_only: bool = False) -> list[Claimed]:
        return await self.run(orders.claim, token, limit, now_ms, fetched_only)

    async def release_claim(self, token: str, now_ms: int) -> int:
        return await self.run(orders.release_claim, token, now_ms)

    async def release_stale_claims(self, older_than_ms: int, now_ms: int) -> int:
        return await self.run(orders.release_stale_claims, older_than_ms, now_ms)

    async def refuse_claimed(self, token: str, cids: Sequence[str], reason: str, now_ms: int) -> None:
        await self.run(orders.refuse_claimed, token, cids, reason, now_ms)

    async def prepaid_covers(self, token: str, cids: Sequence[str], now_ms: int) -> None:
        await self.run(orders.prepaid_covers, token, cids, now_ms)

    async def record_tx(self, token: str, tx: RecordedBatch, cids: Sequence[str], now_ms: int,
                        costs: dict[str, int] | None = None, renewal: str | None = None,
                        calls: Sequence[BatchCall] | None = None) -> None:
        await self.run(orders.record_tx, token, tx, cids, now_ms, costs, renewal, calls)

    async def open_txs(self) -> list[RecordedBatch]:
        return await self.run(orders.open_txs)

    async def resolve_tx(self, tx_hash: str, outcome: dict[str, Outcome], included_block: int | None, now_ms: int,
                         max_attempts: int, delays: dict[int, int]) -> dict[str, int]:
        return await self.run(orders.resolve_tx, tx_hash, outcome, included_block, now_ms, max_attempts, delays)

    async def watched_page(self, after_cid: str, limit: int) -> list[WatchedOrder]:
        return await self.run(orders.watched_page, after_cid, limit)

    async def apply_poll(self, updates: Sequence[PollUpdate], now_ms: int) -> None:
        await self.run(orders.apply_poll, updates, now_ms)

    async def spent_on_day(self, now_ms: int) -> int:
        return await self.run(orders.spent_on_day, now_ms)

    async def order_counts(self) -> dict[str, int]:
        return await orders.counts(self._store())

    # content on the operator's IPFS node (w3gate.store.ipfs_content): the fetcher and the upload gateway
    async def ipfs_due(self, limit: int, now_ms: int, busy: list[str]) -> list[Due]:
        return await self.run(ipfs_content.due, limit, now_ms, busy)

    async def ipfs_counts(self) -> dict[str, int]:
        return await self.run(ipfs_content.counts)

    async def ipfs_all_rows(self) -> list[dict[str, Any]]:
        return await self.run(ipfs_content.all_rows)

    async def ipfs_forget(self, key: str) -> None:
        await self.run(ipfs_content.forget, key)

    async def ipfs_restart_clocks(self, now_ms: int) -> None:
        await self.run(ipfs_content.restart_clocks, now_ms)

    async def ipfs_releasable(self, hold: str, limit: int) -> list[dict[str, Any]]:
        return await self.run(ipfs_content.releasable, hold, limit)

    async def ipfs_waiting(self, key: str, reason: str, retry_ms: int, now_ms: int) -> None:
        await self.run(ipfs_content.waiting, key, reason, retry_ms, now_ms)

    async def ipfs_begin(self, key: str, cid: str, ours: bool, now_ms: int) -> tuple[int, bool]:
        return await self.run(ipfs_content.begin, key, cid, ours, now_ms)

    async def ipfs_give_up(self, key: str, reason: str, now_ms: int) -> None:
        await self.run(ipfs_content.give_up, key, reason, now_ms)

    async def ipfs_fetched(self, key: str, size: int, now_ms: int) -> None:
        await self.run(ipfs_content.fetched, key, size, now_ms)

    async def ipfs_uploaded(self, key: str, cid: str, now_ms: int) -> None:
        await self.run(ipfs_content.uploaded, key, cid, now_ms)
