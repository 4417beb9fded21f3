"""Crust file records (``Market.Files`` / ``Market.FilesV2`` values) -> the fields w3gate follows.

Decoding is strict: the bytes must be exactly one value of the type the runtime's metadata names, under the
registry of that spec version; a record of another version's layout, or with bytes left over, raises
:class:`UnsupportedRuntime` instead of yielding numbers that only look right.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from scalecodec.base import ScaleBytes

from w3gate.crust.typedefs import UnsupportedRuntime


@dataclass(frozen=True)
class FileRecord:
    file_size: int
    expires_at: int
    replicas: int  # reported_replica_count: replicas storage nodes have reported holding
    prepaid: int = 0
    amount: int = 0


def decode_record(config: Any, value_type: str, data_hex: str, files_map: str, spec_version: int | None) -> FileRecord:
    """Decode one record with the registry ``config`` (a scalecodec RuntimeConfigurationObject)."""
    obj = config.create_scale_object(value_type, data=ScaleBytes(data_hex))
    try:
        value = obj.decode(check_remaining=True)
    except Exception as exc:
        raise UnsupportedRuntime(
            f"Market.{files_map} record does not decode as {value_type} at spec {spec_version}: {exc}"
        ) from None
    return record_from_value(value, files_map, spec_version)


def record_from_value(value: Any, files_map: str, spec_version: int | None) -> FileRecord:
    """The fields w3gate follows, from a decoded ``Files`` value (``(FileInfo, UsedInfo)`` or ``FileInfo``) or
    ``FilesV2`` value (``FileInfoV2``)."""
    info = value[0] if isinstance(value, (list, tuple)) else value
    try:
        expiry = info["expired_at"] if "expired_at" in info else info["expired_on"]
        return FileRecord(int(info["file_size"]), int(expiry), int(info["reported_replica_count"]),
                          int(info.get("prepaid", 0) or 0), int(info.get("amount", 0) or 0))
    except (KeyError, TypeError, AttributeError) as exc:
        raise UnsupportedRuntime(f"Market.{files_map} record at spec {spec_version} lacks field {exc}") from None


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
