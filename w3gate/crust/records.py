"""Crust file records (``Market.Files`` / ``Market.FilesV2`` values) -> the fields w3gate follows.

Decoding is strict: the bytes must be exactly one value of the type the runtime's metadata names, under the
registry of that spec version; a record of another version's layout, or with bytes left over, raises
:class:`UnsupportedRuntime` instead of yielding numbers that only look right.
"""

from __future__ import annotations

from typing import Any

from scalecodec.base import ScaleBytes

from w3gate.crust.chain import FileRecord
from w3gate.crust.typedefs import UnsupportedRuntime


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
