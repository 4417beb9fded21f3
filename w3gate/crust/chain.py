"""The chain client as the services see it: exactly what the submitter, poller and Connection use.

The services type against :class:`ChainClient`, not :class:`w3gate.crust.client.CrustClient`, so another
client (a test's spy, another node library) can be given to ``Connection`` without patching anything.
Every method blocks (callers run it in a worker thread) and raises ``ChainUnavailable`` when the endpoint
fails, ``TxRejected`` when the node refuses an extrinsic, or ``UnsupportedRuntime``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # value types only: importing client.py pulls in substrate-interface
    from w3gate.crust.client import AccountState, Inclusion, SignedBatch
    from w3gate.crust.records import FileRecord
    from w3gate.crust.settings import CrustSettings


class ChainClient(Protocol):
    # the ordering account, and what connect() read from the runtime
    address: str
    spec_version: int | None
    order_call: str
    files_map: str
    market_switch: str | None
    max_file_size: int
    era_period: int

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

    def sign_batch(self, cids: Sequence[tuple[str, int]], nonce: int, current_block: int) -> SignedBatch: ...

    def batch_cost(self, sizes: Sequence[int], extrinsic_hex: str) -> int: ...

    def submit(self, extrinsic_hex: str) -> str: ...

    def find_inclusion(self, tx_hash: str, first: int) -> tuple[Inclusion | None, int]:
        """The extrinsic's place in the finalized chain from block ``first`` on (or None), and the finalized
        block number looked up to."""

    def batch_outcome(self, inclusion: Inclusion, count: int) -> list[tuple[str, str | None]]: ...

    def files_sized(self, cids: Sequence[str], at: str | None = None) -> tuple[dict[str, FileRecord | None], int]: ...


ClientFactory = Callable[["CrustSettings"], ChainClient]
"""Builds a client from the settings (default: ``CrustClient``); one per Connection."""
