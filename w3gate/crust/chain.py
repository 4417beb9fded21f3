"""The chain client as the ordering pipeline sees it: exactly what the submitter, poller and connection use, and
the values it passes (the interface owns them; :mod:`w3gate.crust.client` is one implementation).

The ordering pipeline types against :class:`ChainClient`, not :class:`w3gate.crust.client.CrustClient`, so another
client (a test's spy, another node library) can be given to ``ChainConnection`` without patching anything.
Every method blocks (callers run it in a worker thread) and raises ``ChainUnavailable`` when the endpoint
fails, ``TxRejected`` when the node refuses an extrinsic, or ``UnsupportedRuntime``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from w3gate.crust.settings import CrustSettings


@dataclass(frozen=True)
class AccountState:
    nonce: int
    free: int
    usable: int  # free minus what is frozen (locks): what fees and orders can actually spend


@dataclass(frozen=True)
class SignedBatch:
    extrinsic: str  # 0x hex of the whole extrinsic
    tx_hash: str  # 0x blake2-256 of it
    nonce: int
    start_block: int
    era_end: int
    spec_version: int  # the runtime it was signed for: the spec version is part of the signed payload


@dataclass(frozen=True)
class Inclusion:
    block: int
    block_hash: str
    index: int


@dataclass(frozen=True)
class FileRecord:
    """The fields w3gate follows of a Crust file record (``Market.Files`` / ``Market.FilesV2``)."""

    file_size: int
    expires_at: int
    replicas: int  # reported_replica_count: replicas storage nodes have reported holding
    prepaid: int = 0
    amount: int = 0


class KnownRecords:
    """The record last decoded per CID and map, with a digest of the bytes and the runtime it came from.

    The poller reads every watched record on every pass, and strict decoding of a replica map costs milliseconds
    of scalecodec (10,000 records with 0..60 replicas: 43 s of CPU a pass). A record whose bytes are unchanged
    under the same runtime decodes to the same :class:`FileRecord`, so it is not decoded again; changed bytes
    are decoded (and length-checked) in full. Memory: one digest and record per watched CID (:meth:`keep`).
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], tuple[Hashable, bytes, FileRecord]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def decode(self, cid: str, files_map: str, data_hex: str, runtime: Hashable,
               decode: Callable[[str, str], FileRecord]) -> FileRecord:
        """The record of ``data_hex``: the one decoded before if the bytes and ``runtime`` (chain and spec
        version: what picks the types) are the same, else ``decode(data_hex, files_map)``, remembered."""
        digest = blake2b(data_hex.encode(), digest_size=16).digest()
        known = self._by_key.get((cid, files_map))
        if known is not None and known[0] == runtime and known[1] == digest:
            return known[2]
        record = decode(data_hex, files_map)
        self._by_key[(cid, files_map)] = (runtime, digest, record)
        return record

    def keep(self, cids: Collection[str]) -> None:
        """Forget every CID not in ``cids`` (no longer watched)."""
        self._by_key = {k: v for k, v in self._by_key.items() if k[0] in cids}


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
"""Builds a client from the settings (default: ``CrustClient``); one per ChainConnection."""
