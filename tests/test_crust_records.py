"""File records of every shipped spec range, from bytes encoded here by hand from crustio/crust's Rust structs.

No runtime of spec 17 or later runs on this machine, so these records are written field by field as
parity-scale-codec lays out the structs (``cstrml/market/src/lib.rs``; struct text in specs.json's
``checked``): little-endian integers, compact integers and lengths, a ``BTreeMap`` as a compact count and
its entries in key order, ``Option`` as a 0/1 byte. The registry under test only decodes them.
"""

from __future__ import annotations

import struct

import pytest

from w3gate.crust.records import decode_record
from w3gate.crust.typedefs import UnsupportedRuntime, checked_range, covered, runtime_config

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out


def compact(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return struct.pack("<H", (n << 2) | 1)
    if n < 1 << 30:
        return struct.pack("<I", (n << 2) | 2)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 3]) + raw


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def account(i: int) -> bytes:
    return bytes([i % 256, i // 256]) + bytes(30)


def replica(i: int, created_at: int | None) -> bytes:
    """Replica<AccountId> {who, valid_at: BlockNumber, anchor: SworkerAnchor (Vec<u8>), is_reported: bool,
    created_at: Option<BlockNumber>} (spec 3 and later)."""
    anchor = bytes([i % 256]) * 64  # an sworker anchor is its 64-byte public key
    opt = b"\x00" if created_at is None else b"\x01" + u32(created_at)
    return account(i) + u32(1000 + i) + compact(len(anchor)) + anchor + b"\x01" + opt


def file_info_v2(replicas: int, *, size: int = 5_000_000, expires: int = 9_000_000, amount: int = 10**15,
                 prepaid: int = 3 * 10**12, reported: int | None = None) -> bytes:
    """FileInfoV2 {file_size: u64, spower: u64, expired_at, calculated_at, #[codec(compact)] amount,
    #[codec(compact)] prepaid, reported_replica_count: u32, remaining_paid_count: u32,
    replicas: BTreeMap<AccountId, Replica<AccountId>>}."""
    entries = b"".join(account(i) + replica(i, None if i % 2 else 777) for i in range(replicas))  # key order
    return (u64(size) + u64(size * 2) + u32(expires) + u32(1234) + compact(amount) + compact(prepaid)
            + u32(replicas if reported is None else reported) + u32(4) + compact(replicas) + entries)


def file_info_v1(replicas: int, *, size: int = 1024, expires: int = 600) -> bytes:
    """FileInfo at specs 3..17: {file_size, spower, expired_at, calculated_at, compact amount, compact prepaid,
    reported_replica_count, replicas: Vec<Replica>}."""
    return (u64(size) + u64(0) + u32(expires) + u32(7) + compact(181_800) + compact(0) + u32(replicas)
            + compact(replicas) + b"".join(replica(i, 5) for i in range(replicas)))


def file_info_spec1(replicas: int) -> bytes:
    """(FileInfo, UsedInfo) at specs 1..2: FileInfo {file_size, expired_on, calculated_at, amount: Balance,
    prepaid: Balance, reported_replica_count, replicas: Vec<Replica>} with Replica {who, valid_at, anchor,
    is_reported}; UsedInfo {used_size: u64, reported_group_count: u32, groups: BTreeMap<SworkerAnchor, bool>}."""
    reps = b"".join(account(i) + u32(9) + compact(64) + bytes(64) + b"\x01" for i in range(replicas))
    info = u64(2048) + u32(500) + u32(3) + (10**6).to_bytes(16, "little") + bytes(16) + u32(replicas)
    return info + compact(replicas) + reps + u64(2048) + u32(0) + compact(0)


V2 = "FileInfoV2<AccountId, BalanceOf>"


def decode(spec: int, value_type: str, data: bytes, files_map: str = "FilesV2"):
    return decode_record(runtime_config("crust", spec), value_type, "0x" + data.hex(), files_map, spec)


@pytest.mark.parametrize("spec", [18, 21, 25, 17])
@pytest.mark.parametrize("replicas", [0, 1, 200])
def test_files_v2_records_decode_at_specs_17_and_later(spec: int, replicas: int) -> None:
    data = file_info_v2(replicas)
    record = decode(spec, V2, data)
    assert (record.file_size, record.expires_at, record.replicas) == (5_000_000, 9_000_000, replicas)
    assert (record.amount, record.prepaid) == (10**15, 3 * 10**12)
    if replicas == 200:
        assert len(data) > 20_000  # what a live record weighs: why polling is bounded by bytes


def test_reported_count_is_what_counts_not_the_map_size() -> None:
    assert decode(25, V2, file_info_v2(3, reported=1)).replicas == 1


@pytest.mark.parametrize("replicas", [0, 1, 3])
def test_files_records_decode_at_specs_3_to_17(replicas: int) -> None:
    for spec in (3, 4, 16, 17):
        record = decode(spec, "FileInfo<AccountId, BalanceOf>", file_info_v1(replicas), "Files")
        assert (record.file_size, record.expires_at, record.replicas, record.amount) == (1024, 600, replicas, 181_800)


@pytest.mark.parametrize("replicas", [0, 2])
def test_files_records_decode_at_specs_1_and_2(replicas: int) -> None:
    for spec in (1, 2):
        record = decode(spec, "(FileInfo<AccountId, BalanceOf>, UsedInfo)", file_info_spec1(replicas), "Files")
        assert (record.file_size, record.expires_at, record.replicas, record.amount) == (2048, 500, replicas, 10**6)


def test_a_record_with_bytes_left_over_is_refused() -> None:
    with pytest.raises(UnsupportedRuntime, match="does not decode"):
        decode(25, V2, file_info_v2(1) + b"\x00")
    with pytest.raises(UnsupportedRuntime, match="does not decode"):
        decode(25, V2, file_info_v2(1)[:-1])


def test_a_record_of_another_version_is_refused() -> None:
    # a spec-3 FileInfo read as FileInfoV2, and a V2 record read with spec 3's FileInfo: neither fits exactly
    with pytest.raises(UnsupportedRuntime):
        decode(25, V2, file_info_v1(1))
    with pytest.raises(UnsupportedRuntime):
        decode(4, "FileInfo<AccountId, BalanceOf>", file_info_v2(1), "Files")
    with pytest.raises(UnsupportedRuntime):
        decode(1, "(FileInfo<AccountId, BalanceOf>, UsedInfo)", file_info_v1(1), "Files")


def test_shipped_ranges_and_the_refusal_beyond_them() -> None:
    for spec in range(1, 26):
        assert covered(spec, "crust"), spec
    assert not covered(26, "crust")  # beyond what was checked: refused, never guessed
    assert covered(4, "crust_rocky") and not covered(17, "crust_rocky")
    assert not covered(1, "crust_maxwell")  # another chain's numbering
    assert checked_range(17, "crust")["maps"] == {"FilesV2": V2, "Files": "FileInfo<AccountId, BalanceOf>"}
    assert checked_range(25, "crust")["maps"] == {"FilesV2": V2}
