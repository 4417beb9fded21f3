"""A blocking client for the Crust chain: metadata-driven order calls, file records, inclusion checks.

Blocking because substrate-interface is (websocket-client): callers on trio run every method through
``trio.to_thread.run_sync`` with one CapacityLimiter per client. Every method that encodes or decodes
SCALE holds :data:`SCALE_LOCK`, because scalecodec is not thread-safe across clients (see there); plain
JSON-RPC calls (heads, blocks, submission) do not wait for it. What to call and where file records
live are read from the runtime's metadata at connect time (and again after a runtime upgrade):

* the order call: ``place_storage_order`` with 4 arguments (cid, size, tips, memo), or with 3 (cid, size,
  tips), or ``place_storage_order_with_memo``;
* the file map: ``Market.FilesV2`` if the runtime has it, else ``Market.Files``.

Anything that does not match (argument count, key type, a record without the fields we read, bytes
left over after decoding) raises :class:`UnsupportedRuntime`: nothing is signed or stored from a guess.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, TypeVar

import xxhash
from scalecodec.base import ScaleBytes
from substrateinterface import Keypair, SubstrateInterface
from substrateinterface.exceptions import SubstrateRequestException
from websocket import WebSocketException

from w3gate.crust.account import keypair_from_secret
from w3gate.crust.settings import CrustSettings
from w3gate.crust.typedefs import UnsupportedRuntime, covered, type_registry

log = logging.getLogger(__name__)

SCALE_LOCK = threading.RLock()
"""Held by every CrustClient method that encodes or decodes SCALE; hold it too around ``client.substrate``.

scalecodec attaches the decoding client's type registry to its shared decoder classes
(``cls.runtime_config = self``), so two clients decoding at once in one process, even against the same
chain, can decode with the other's registry half-built (while it connects): ``Decoder class for
"Compact<u32>" not found``. Calls are short RPCs (nothing waits for a block), so one lock costs little."""

_F = TypeVar("_F", bound=Callable[..., Any])


def _scale_locked(fn: _F) -> _F:
    @functools.wraps(fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with SCALE_LOCK:
            return fn(*args, **kwargs)

    return locked  # type: ignore[return-value]


class ChainUnavailable(Exception):
    """The endpoint cannot be reached or dropped the connection: reconnect with back-off."""


class TxRejected(Exception):
    """The node refused the extrinsic (it is not in its pool)."""

    def __init__(self, message: str, *, known: bool = False, stale: bool = False) -> None:
        super().__init__(message)
        self.known = known  # already in the pool: keep waiting
        self.stale = stale  # nonce already used


@dataclass(frozen=True)
class FileRecord:
    file_size: int
    expires_at: int
    replicas: int


@dataclass(frozen=True)
class SignedBatch:
    extrinsic: str  # 0x hex of the whole extrinsic
    tx_hash: str  # 0x blake2-256 of it
    nonce: int
    start_block: int
    era_end: int


@dataclass(frozen=True)
class Inclusion:
    block: int
    block_hash: str
    index: int


# a closed socket shows up as an empty frame that json cannot parse
_CONNECTION_ERRORS = (WebSocketException, ConnectionError, OSError, TimeoutError, json.JSONDecodeError)


def _compact_len(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    raise ValueError("cid too long")


def _hash_key(hasher: str, data: bytes) -> bytes:
    if hasher == "Twox64Concat":
        return xxhash.xxh64_digest(data, seed=0)[::-1] + data
    if hasher == "Blake2_128Concat":
        return blake2b(data, digest_size=16).digest() + data
    if hasher == "Identity":
        return data
    raise UnsupportedRuntime(f"file map key hasher {hasher} is not supported")


def _twox128(name: str) -> bytes:
    data = name.encode()
    return xxhash.xxh64_digest(data, seed=0)[::-1] + xxhash.xxh64_digest(data, seed=1)[::-1]


def _attr(attributes: Any, i: int, name: str) -> Any:
    """Event attribute ``i`` (``name``), whichever form the decoder gave (list of {type,value}, tuple, dict)."""
    if isinstance(attributes, dict):
        return attributes.get(name, list(attributes.values())[i])
    item = attributes[i]
    return item["value"] if isinstance(item, dict) and "value" in item else item


class CrustClient:
    """One websocket connection to a Crust node with the runtime-specific choices made from metadata."""

    def __init__(self, settings: CrustSettings) -> None:
        if settings.seed is None:
            raise ValueError("ordering is off: no ordering account secret")
        self.settings = settings
        self.keypair: Keypair = keypair_from_secret(settings.seed.reveal(), settings.key_type, settings.ss58_format)
        self.address: str = self.keypair.ss58_address
        self.substrate: SubstrateInterface | None = None
        self.spec_version: int | None = None
        self.metadata_version: str = ""
        self.order_call: str = ""
        self.order_arity: int = 0
        self.files_map: str = ""
        self._files_prefix = b""
        self._files_hasher = ""
        self._files_value_type = ""

    # connection -------------------------------------------------------------------------------
    @_scale_locked
    def connect(self) -> None:
        self.close()
        try:
            self.substrate = SubstrateInterface(
                url=self.settings.url,
                ss58_format=self.settings.ss58_format,
                type_registry_preset="crust",
                type_registry=type_registry(self.settings.typedefs),
                auto_reconnect=False,
                ws_options={"timeout": 30},
            )
            self._select()
        except _CONNECTION_ERRORS as exc:
            self.close()
            raise ChainUnavailable(f"cannot reach {self.settings.url}: {type(exc).__name__}: {exc}") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.substrate is not None:
            try:
                self.substrate.close()
            except Exception:  # noqa: BLE001 - closing a dead socket
                pass
            self.substrate = None

    @property
    def connected(self) -> bool:
        return self.substrate is not None

    def _s(self) -> SubstrateInterface:
        if self.substrate is None:
            raise ChainUnavailable("not connected")
        return self.substrate

    def _rpc(self, method: str, params: list[Any]) -> Any:
        try:
            reply = self._s().rpc_request(method, params)
        except _CONNECTION_ERRORS as exc:
            self.close()
            raise ChainUnavailable(f"{method}: {type(exc).__name__}: {exc}") from None
        return reply.get("result")

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _CONNECTION_ERRORS as exc:
            self.close()
            raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from None

    # metadata-driven selection -----------------------------------------------------------------
    def _select(self) -> None:
        s = self._s()
        s.init_runtime()
        self.spec_version = int(s.runtime_version)
        self.metadata_version = str(s.metadata[1].value_object[0])
        scale_info = s.implements_scaleinfo()
        if not scale_info and not covered(self.spec_version, self.settings.typedefs):
            raise UnsupportedRuntime(
                f"crust runtime spec {self.spec_version} has {self.metadata_version} metadata and no verified "
                "type definitions ship for it: add them with the crust.typedefs setting"
            )
        market = s.metadata.get_metadata_pallet("Market")
        if market is None:
            raise UnsupportedRuntime("the runtime has no Market pallet")
        calls = {c.name: c for c in (market.calls or [])}
        chosen = None
        if "place_storage_order" in calls and len(calls["place_storage_order"].args) in (3, 4):
            chosen = ("place_storage_order", len(calls["place_storage_order"].args))
        elif "place_storage_order_with_memo" in calls and len(calls["place_storage_order_with_memo"].args) == 4:
            chosen = ("place_storage_order_with_memo", 4)
        if chosen is None:
            raise UnsupportedRuntime("Market has no place_storage_order call with 3 or 4 arguments")
        self.order_call, self.order_arity = chosen
        self._order_args = [a.name for a in calls[self.order_call].args]
        storage = {f.name: f for f in (market.storage or [])}
        name = "FilesV2" if "FilesV2" in storage else "Files" if "Files" in storage else None
        if name is None:
            raise UnsupportedRuntime("Market has neither FilesV2 nor Files")
        fn = storage[name]
        hashers = fn.get_param_hashers()
        params = fn.get_params_type_string()
        if len(hashers) != 1 or len(params) != 1:
            raise UnsupportedRuntime(f"Market.{name} is not a single-key map")
        probe = s.runtime_config.create_scale_object(params[0])
        if probe.encode("0x6162").data != b"\x08ab":
            raise UnsupportedRuntime(f"Market.{name} key type {params[0]} is not a byte vector")
        self.files_map = name
        self._files_hasher = hashers[0]
        self._files_value_type = fn.get_value_type_string()
        self._files_prefix = _twox128((market.value.get("storage") or {}).get("prefix") or "Market")
        self._files_prefix += _twox128(name)
        log.info(
            "crust runtime spec %s (%s metadata): ordering with Market.%s(%d args), records in Market.%s",
            self.spec_version, self.metadata_version, self.order_call, self.order_arity, self.files_map,
        )

    def check_runtime(self) -> None:
        """Re-read the metadata if the runtime was upgraded since the last look (one RPC)."""
        version = self._rpc("state_getRuntimeVersion", [])
        if version and int(version["specVersion"]) != self.spec_version:
            log.warning("crust runtime upgraded from spec %s to %s", self.spec_version, version["specVersion"])
            self.connect()

    # reads ------------------------------------------------------------------------------------
    def head(self) -> int:
        return int(self._rpc("chain_getHeader", [])["number"], 16)

    def finalized_head(self) -> int:
        block_hash = self._rpc("chain_getFinalizedHead", [])
        return int(self._rpc("chain_getHeader", [block_hash])["number"], 16)

    @_scale_locked
    def account(self) -> tuple[int, int]:
        """(nonce, free balance) of the ordering account."""
        info = self._call(self._s().query, "System", "Account", [self.address]).value
        return int(info["nonce"]), int(info["data"]["free"])

    def file_key(self, cid: str) -> str:
        data = cid.encode()
        return "0x" + (self._files_prefix + _hash_key(self._files_hasher, _compact_len(len(data)) + data)).hex()

    @_scale_locked
    def decode_record(self, data_hex: str) -> FileRecord:
        obj = self._s().runtime_config.create_scale_object(self._files_value_type, data=ScaleBytes(data_hex))
        try:
            value = obj.decode(check_remaining=True)
        except Exception as exc:
            raise UnsupportedRuntime(
                f"Market.{self.files_map} record does not decode as {self._files_value_type} at spec "
                f"{self.spec_version}: {exc}"
            ) from None
        info = value[0] if isinstance(value, (list, tuple)) else value
        try:
            expiry = info["expired_at"] if "expired_at" in info else info["expired_on"]
            return FileRecord(int(info["file_size"]), int(expiry), int(info["reported_replica_count"]))
        except (KeyError, TypeError) as exc:
            raise UnsupportedRuntime(f"Market.{self.files_map} record lacks field {exc}") from None

    def files(self, cids: Sequence[str], at: str | None = None) -> dict[str, FileRecord | None]:
        """File records of ``cids``, read with ONE multi-key storage query."""
        keys = {self.file_key(c): c for c in cids}
        params: list[Any] = [list(keys)] + ([at] if at else [])
        result = self._rpc("state_queryStorageAt", params) or []
        out: dict[str, FileRecord | None] = {c: None for c in cids}
        for change_set in result:
            for key, value in change_set["changes"]:
                if value is not None and key in keys:
                    out[keys[key]] = self.decode_record(value)
        return out

    # orders -----------------------------------------------------------------------------------
    def order_call_args(self, cid: str, size: int) -> dict[str, Any]:
        values: list[Any] = ["0x" + cid.encode().hex(), size, self.settings.tips, "0x"][: self.order_arity]
        return dict(zip(self._order_args, values, strict=True))

    @_scale_locked
    def sign_batch(self, cids: Sequence[tuple[str, int]], nonce: int, current_block: int) -> SignedBatch:
        """A ``Utility.batch`` of one order per (cid, size), signed, mortal for ``era_period`` blocks."""
        s = self._s()
        calls = [s.compose_call("Market", self.order_call, self.order_call_args(cid, size)) for cid, size in cids]
        batch = self._call(s.compose_call, "Utility", "batch", {"calls": calls})
        era = {"period": self.settings.era_period, "current": current_block}
        ext = self._call(s.create_signed_extrinsic, batch, self.keypair, era=era, nonce=nonce)
        data = bytes(ext.data.data)
        return SignedBatch(
            extrinsic="0x" + data.hex(),
            tx_hash="0x" + blake2b(data, digest_size=32).hexdigest(),
            nonce=nonce,
            start_block=current_block,
            era_end=current_block + self.settings.era_period,
        )

    def submit(self, extrinsic_hex: str) -> str:
        """Hand the extrinsic to the node (``author_submitExtrinsic``); raises TxRejected if refused."""
        try:
            reply = self._s().rpc_request("author_submitExtrinsic", [extrinsic_hex])
        except _CONNECTION_ERRORS as exc:
            self.close()
            raise ChainUnavailable(f"author_submitExtrinsic: {type(exc).__name__}: {exc}") from None
        except SubstrateRequestException as exc:
            err = exc.args[0] if exc.args else {}
            text = f"{err.get('message', '')} {err.get('data', '')}".strip() if isinstance(err, dict) else str(exc)
            low = text.lower()
            raise TxRejected(
                text[:300],
                known="already imported" in low or "temporarily banned" in low,
                stale="outdated" in low or "stale" in low,
            ) from None
        return str(reply.get("result"))

    def find_inclusion(self, tx_hash: str, first: int, last: int) -> Inclusion | None:
        """Look for the extrinsic in blocks ``first..last`` by hashing their raw extrinsics."""
        for number in range(max(first, 0), last + 1):
            block_hash = self._rpc("chain_getBlockHash", [number])
            if block_hash is None:
                continue
            block = self._rpc("chain_getBlock", [block_hash])
            for index, ext in enumerate(block["block"]["extrinsics"]):
                if "0x" + blake2b(bytes.fromhex(ext[2:]), digest_size=32).hexdigest() == tx_hash:
                    return Inclusion(number, block_hash, index)
        return None

    @_scale_locked
    def batch_outcome(self, inclusion: Inclusion, count: int) -> list[tuple[str, str | None]]:
        """Per item of the included batch: ("ok", None), ("fail", reason) or ("requeue", None)."""
        events = self._call(self._s().get_events, inclusion.block_hash)
        mine = [e.value for e in events if e.value.get("extrinsic_idx") == inclusion.index]
        for ev in mine:
            name = f"{ev['module_id']}.{ev['event_id']}"
            if name == "System.ExtrinsicFailed":
                reason = self._dispatch_error(_attr(ev["attributes"], 0, "dispatch_error"))
                return [("fail", reason)] * count
            if name == "Utility.BatchInterrupted":
                at = int(_attr(ev["attributes"], 0, "index"))
                reason = self._dispatch_error(_attr(ev["attributes"], 1, "error"))
                return [("ok", None) if i < at else ("fail", reason) if i == at else ("requeue", None)
                        for i in range(count)]
        if any(f"{e['module_id']}.{e['event_id']}" == "System.ExtrinsicSuccess" for e in mine):
            return [("ok", None)] * count
        raise UnsupportedRuntime(f"no outcome event for extrinsic {inclusion.index} in block {inclusion.block}")

    def _dispatch_error(self, err: Any) -> str:
        if isinstance(err, dict) and "Module" in err:
            mod = err["Module"]
            index, error = mod.get("index"), mod.get("error")
            if isinstance(error, str) and error.startswith("0x"):
                error = bytes.fromhex(error[2:])[0]
            found = self._s().metadata.get_module_error(index, error)
            if found is not None:
                value = found.value if hasattr(found, "value") else found
                return f"chain error {value.get('name', found)}" if isinstance(value, dict) else f"chain error {value}"
            return f"chain module error {index}/{error}"
        return f"chain error {err}"
