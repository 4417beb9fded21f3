"""The chain client as the services see it: exactly what the submitter, poller and Connection use.

The services type against :class:`ChainClient`, not :class:`w3gate.crust.client.CrustClient`, so another
client (a test's spy, another node library) can be given to ``Connection`` without patching anything.
Every method blocks (callers run it in a worker thread) and raises ``ChainUnavailable`` when the endpoint
fails, ``TxRejected`` when the node refuses an extrinsic, or ``UnsupportedRuntime``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # value types only: importing client.py pulls in substrate-interface
    from w3gate.crust.client import AccountState, Inclusion, SignedBatch
    from w3gate.crust.records import FileRecord, KnownRecords
    from w3gate.crust.settings import CrustSettings


@dataclass(frozen=True)
class MarketCall:
    """One call of a batch other than an order: ``add_prepaid`` (``amount`` units into the file's prepaid pool)
    or ``calculate_reward`` (after expiry: renews the file from its prepaid pool if that covers the price)."""

    call: str
    cid: str
    amount: int = 0


class ChainClient(Protocol):
    # the ordering account, and what connect() read from the runtime
    address: str
    spec_version: int | None
    order_call: str
    files_map: str
    market_switch: str | None
    max_file_size: int
    era_period: int
    renewal: str  # the renewal strategy in force (settings.renewal unless the runtime lacks its calls)

    @property
    def connected(self) -> bool: ...

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Unblock a call waiting on the socket, from another thread (shutdown)."""

    def check_runtime(self) -> None:
        """Re-read metadata and types if the runtime's spec version changed."""

    def head(self) -> int: ...

    def finalized_head(self) -> int: ...

    def account(self) -> AccountState: ...

    def market_enabled(self) -> bool: ...

    def spec_at(self, block: int) -> int | None:
        """The runtime spec version in force after ``block`` (None if the node does not know it)."""

    def sign_batch(
        self, cids: Sequence[tuple[str, int] | MarketCall], nonce: int, current_block: int
    ) -> SignedBatch: ...

    def extrinsic_fee(self, extrinsic_hex: str) -> int: ...

    def order_costs(self, sizes: Sequence[int]) -> list[int]: ...

    def fees(self) -> dict[str, int]: ...

    def renewal_price(self, size: int, fees: dict[str, int]) -> int: ...

    def submit(self, extrinsic_hex: str) -> str: ...

    def find_inclusion(self, tx_hash: str, first: int) -> tuple[Inclusion | None, int]:
        """The extrinsic's place in the finalized chain from block ``first`` on (or None), and the finalized
        block number looked up to."""

    def batch_outcome(self, inclusion: Inclusion, count: int) -> list[tuple[str, str | None]]: ...

    def files(self, cids: Sequence[str], at: str | None = None) -> dict[str, FileRecord | None]: ...

    def files_sized(self, cids: Sequence[str], at: str | None = None,
                    known: KnownRecords | None = None) -> tuple[dict[str, FileRecord | None], int]: ...


ClientFactory = Callable[["CrustSettings"], ChainClient]
"""Builds a client from the settings (default: ``CrustClient``); one per Connection."""
