"""A blocking client for the Crust chain: metadata-driven order calls, file records, inclusion checks.

Blocking because substrate-interface is (websocket-client): callers on trio run every method through
``trio.to_thread.run_sync`` with one CapacityLimiter per client. Every method that encodes or decodes
SCALE holds :data:`SCALE_LOCK`, because scalecodec is not thread-safe across clients (see there); plain
JSON-RPC calls (heads, blocks, submission) do not wait for it. What to call and where file records
live are read from the runtime's metadata at connect time (and again after a runtime upgrade):

* the order call: ``place_storage_order`` with 4 arguments (cid, size, tips, memo), or with 3 (cid, size,
  tips), or ``place_storage_order_with_memo``;
* the file map: ``Market.FilesV2`` if the runtime has it, else ``Market.Files``;
* the renewal strategy: ``prepaid`` needs ``add_prepaid`` and ``calculate_reward`` (every checked spec has
  them); without them the client falls back to ``reorder`` and says so (:func:`renewal_strategy`).

Anything that does not match (argument count, key type, a record without the fields we read, bytes
left over after decoding) raises :class:`UnsupportedRuntime`: nothing is signed or stored from a guess.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Sequence
from hashlib import blake2b
from typing import Any, TypeVar

import xxhash
from scalecodec.base import ScaleBytes
from substrateinterface import Keypair, SubstrateInterface
from substrateinterface.exceptions import SubstrateRequestException
from websocket import WebSocketException

from w3gate.crust.account import keypair_from_secret
from w3gate.crust.chain import AccountState, FileRecord, Inclusion, KnownRecords, MarketCall, SignedBatch
from w3gate.crust.errors import ChainUnavailable, DispatchFailure, TxRejected, classify_rejection
from w3gate.crust.records import decode_record
from w3gate.crust.settings import CrustSettings, era_period_for
from w3gate.crust.typedefs import UnsupportedRuntime, chain_key, checked_range, covered, type_registry
from w3gate.redact import redact_text, redact_url

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


__all__ = ["SCALE_LOCK", "ChainUnavailable", "CrustClient", "FileRecord", "Inclusion", "MarketCall", "SignedBatch",
           "TxRejected"]


# a closed socket shows up as an empty frame that json cannot parse; a JSON-RPC error on a read means the
# node is not serving what it should (pruned state, overloaded): both are the endpoint's trouble
_CONNECTION_ERRORS = (WebSocketException, ConnectionError, OSError, TimeoutError, json.JSONDecodeError,
                      UnicodeDecodeError, SubstrateRequestException)


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

    def __init__(self, settings: CrustSettings, *, read_only: bool = False) -> None:
        """``read_only``: no ordering account is needed (``w3gate crust check``); without a secret there is no
        :attr:`address`, and :meth:`sign_batch` refuses."""
        if settings.seed is None and not read_only:
            raise ValueError("ordering is off: no ordering account secret")
        self.settings = settings
        self.keypair: Keypair | None = None
        self.address: str = ""
        if settings.seed is not None:
            self.keypair = keypair_from_secret(settings.seed.reveal(), settings.key_type, settings.ss58_format)
            self.address = self.keypair.ss58_address
        self.substrate: SubstrateInterface | None = None
        self.spec_version: int | None = None
        self.metadata_version: str = ""
        self.scale_info = False  # v14+ metadata: the runtime describes its own types
        self.order_call: str = ""
        self.order_arity: int = 0
        self.files_map: str = ""
        self.chain: str = ""
        self.storage_items: frozenset[str] = frozenset()
        self.market_switch: str | None = None
        self.max_file_size: int = 2**64 - 1
        self.file_duration: int = 0
        self.block_hash_count: int = 2400
        self.era_period: int = settings.era_period
        self.renewal: str = settings.renewal  # the strategy in force: settings.renewal unless the runtime lacks it
        self.renew_reward_ratio: int = 0  # parts per billion the liquidator takes on a prepaid renewal (specs 1..16)
        self._probe: Any = None
        self._maps: dict[str, tuple[bytes, str, str]] = {}  # map name -> (storage prefix, key hasher, value type)
        self._files_value_type = ""

    # connection -------------------------------------------------------------------------------
    @_scale_locked
    def connect(self) -> None:
        self.close()
        try:
            chain = self._chain_name()
            self.substrate = SubstrateInterface(
                url=self.settings.url,
                ss58_format=self.settings.ss58_format,
                type_registry_preset="crust",
                type_registry=type_registry(chain, self.settings.typedefs),
                auto_reconnect=False,
                # websocket-client checks a text frame's UTF-8 in pure Python before recv() decodes it strictly
                # (in C) anyway: that check was nearly all of a poll pass's CPU once records are not re-decoded
                ws_options={"timeout": self.settings.rpc_timeout, "skip_utf8_validation": True},
            )
            self.chain = chain
            self._select()
        except _CONNECTION_ERRORS as exc:
            self.close()
            reason = redact_text(str(exc), self.settings.url)
            raise ChainUnavailable(
                f"cannot reach {redact_url(self.settings.url)}: {type(exc).__name__}: {reason}"
            ) from None
        except BaseException:
            self.close()
            raise

    def _chain_name(self) -> str:
        """The chain's name (``system_chain``), read before the type registry is chosen for it."""
        import websocket

        ws = websocket.create_connection(self.settings.url, timeout=self.settings.rpc_timeout)
        self._probe = ws
        try:
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "system_chain", "params": []}))
            reply = json.loads(ws.recv())
        finally:
            self._probe = None
            ws.close()
        if not isinstance(reply, dict) or not isinstance(reply.get("result"), str):
            raise ChainUnavailable(f"system_chain: unexpected answer {str(reply)[:200]}")
        return chain_key(reply["result"])

    def close(self) -> None:
        if self.substrate is not None:
            try:
                self.substrate.close()
            except Exception:  # noqa: BLE001 - closing a dead socket
                pass
            self.substrate = None

    def abort(self) -> None:
        """Unblock a call waiting on the socket (from another thread, at shutdown): it then fails at once."""
        import socket

        for ws in (self._probe, getattr(self.substrate, "websocket", None)):
            sock = getattr(ws, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

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
        if not isinstance(reply, dict):
            self.close()
            raise ChainUnavailable(f"{method}: unexpected answer {str(reply)[:200]}")
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
        scale_info = self.scale_info = bool(s.implements_scaleinfo())
        if not scale_info and not covered(self.spec_version, self.chain, self.settings.typedefs):
            raise UnsupportedRuntime(
                f"crust runtime spec {self.spec_version} of chain {self.chain!r} has {self.metadata_version} "
                "metadata and no verified type definitions ship for it: add them with the crust.typedefs setting "
                "(README: 'Crust: runtimes and money')"
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
        self.storage_items = frozenset(storage)
        names = [n for n in ("FilesV2", "Files") if n in storage]
        if not names:
            raise UnsupportedRuntime("Market has neither FilesV2 nor Files")
        checked = None if scale_info else checked_range(self.spec_version, self.chain)
        prefix = _twox128((market.value.get("storage") or {}).get("prefix") or "Market")
        self._maps = {}
        for name in names:
            fn = storage[name]
            hashers = fn.get_param_hashers()
            params = fn.get_params_type_string()
            if len(hashers) != 1 or len(params) != 1:
                raise UnsupportedRuntime(f"Market.{name} is not a single-key map")
            probe = s.runtime_config.create_scale_object(params[0])
            if probe.encode("0x6162").data != b"\x08ab":
                raise UnsupportedRuntime(f"Market.{name} key type {params[0]} is not a byte vector")
            value_type = fn.get_value_type_string()
            if checked is not None and checked["maps"].get(name) != value_type:
                raise UnsupportedRuntime(
                    f"Market.{name} holds {value_type} at spec {self.spec_version}, but the definitions checked for "
                    f"specs {checked['spec_min']}..{checked['spec_max']} expect {checked['maps'].get(name)}: another "
                    "build under this spec number; add its types with the crust.typedefs setting"
                )
            self._maps[name] = (prefix + _twox128(name), hashers[0], value_type)
        if checked is not None and set(checked["maps"]) != set(self._maps):
            raise UnsupportedRuntime(f"Market has maps {sorted(self._maps)} at spec {self.spec_version}, the checked "
                                     f"definitions expect {sorted(checked['maps'])}")
        self.files_map = names[0]
        self._files_value_type = self._maps[self.files_map][2]
        self.market_switch = next((n for n in ("MarketSwitch", "EnableMarket") if n in storage), None)
        self.renewal, why = renewal_strategy(self.settings.renewal, set(calls))
        if why:
            log.warning("crust renewal: %s", why)
        # try_to_renew_file charges RenewRewardRatio on top of the price up to spec 16 (paid to whoever calls
        # calculate_reward); from spec 17 (FilesV2) the liquidator gets the expired file's remaining amount instead
        self.renew_reward_ratio = 0 if "FilesV2" in storage else int(self._constant("Market", "RenewRewardRatio", 0))
        self.max_file_size = int(self._constant("Market", "MaximumFileSize", 2**64 - 1))
        self.file_duration = int(self._constant("Market", "FileDuration", 0))
        self.block_hash_count = int(self._constant("System", "BlockHashCount", 2400))
        self.era_period = era_period_for(self.settings.era_period, self.block_hash_count)
        log.info(
            "crust runtime spec %s of %s (%s metadata): ordering with Market.%s(%d args), records in Market.%s; "
            "orders smaller than %d bytes, files live %d blocks, extrinsics mortal for %d blocks, renewal by %s",
            self.spec_version, self.chain, self.metadata_version, self.order_call, self.order_arity, self.files_map,
            self.max_file_size, self.file_duration, self.era_period, self.renewal,
        )

    def _constant(self, pallet: str, name: str, default: int) -> Any:
        try:
            value = self._s().get_constant(pallet, name)
        except Exception:  # noqa: BLE001 - an absent constant: the runtime does not bound it
            return default
        if value is None:
            return default
        return value.value if hasattr(value, "value") else value

    @property
    def file_maps(self) -> dict[str, str]:
        """The file maps read (``FilesV2`` first where both are) and the value type the metadata names for each."""
        return {name: value_type for name, (_, _, value_type) in self._maps.items()}

    def runtime_version(self) -> dict[str, Any]:
        """The node's ``state_getRuntimeVersion`` (specName, specVersion, implVersion, transactionVersion...)."""
        version = self._rpc("state_getRuntimeVersion", [])
        return version if isinstance(version, dict) else {}

    def check_runtime(self) -> None:
        """Re-read the metadata if the runtime was upgraded since the last look (one RPC)."""
        version = self.runtime_version()
        if version and int(version["specVersion"]) != self.spec_version:
            log.warning("crust runtime upgraded from spec %s to %s", self.spec_version, version["specVersion"])
            self.connect()

    def spec_at(self, block: int) -> int | None:
        """The runtime spec version in the state after ``block`` (the runtime that executes the next block),
        ``state_getRuntimeVersion`` at its hash; None if the node does not know the block."""
        block_hash = self._rpc("chain_getBlockHash", [block])
        version = self._rpc("state_getRuntimeVersion", [block_hash]) if block_hash else None
        return int(version["specVersion"]) if version else None

    # reads ------------------------------------------------------------------------------------
    def head(self) -> int:
        return int(self._rpc("chain_getHeader", [])["number"], 16)

    def finalized_head(self) -> int:
        block_hash = self._rpc("chain_getFinalizedHead", [])
        return int(self._rpc("chain_getHeader", [block_hash])["number"], 16)

    @_scale_locked
    def account(self) -> AccountState:
        """Nonce and balance of the ordering account; ``usable`` leaves out frozen funds (locks, staking)."""
        info = self._call(self._s().query, "System", "Account", [self.address]).value
        data = info["data"]
        free = int(data["free"])
        frozen = max(int(data.get("misc_frozen", 0) or 0), int(data.get("fee_frozen", 0) or 0),
                     int(data.get("frozen", 0) or 0))
        return AccountState(int(info["nonce"]), free, max(0, free - frozen))

    @_scale_locked
    def market_enabled(self) -> bool:
        """Whether the market takes orders now (``MarketSwitch`` at spec 1, ``EnableMarket`` later): an order
        placed while it is off fails with PlaceOrderNotAvailable and still pays the extrinsic's fee."""
        if self.market_switch is None:
            return True
        return bool(self._call(self._s().query, "Market", self.market_switch).value)

    @_scale_locked
    def storage_values(self, names: Sequence[str]) -> dict[str, int]:
        """Plain numeric ``Market`` storage values that this runtime has (fee parameters)."""
        out: dict[str, int] = {}
        for name in names:
            if name in self.storage_items:
                value = self._call(self._s().query, "Market", name).value
                out[name] = int(value or 0)
        return out

    @_scale_locked
    def extrinsic_fee(self, extrinsic_hex: str) -> int:
        """The fee the chain will charge for this signed extrinsic: the runtime's own
        ``TransactionPaymentApi_query_info`` (what ``payment_queryInfo`` calls), through ``state_call``."""
        data = bytes.fromhex(extrinsic_hex[2:])
        result = self._rpc("state_call", ["TransactionPaymentApi_query_info",
                                          "0x" + (data + len(data).to_bytes(4, "little")).hex()])
        obj = self._s().runtime_config.create_scale_object("RuntimeDispatchInfo", data=ScaleBytes(result))
        try:
            return int(obj.decode(check_remaining=True)["partial_fee"])
        except Exception as exc:
            raise UnsupportedRuntime(
                f"RuntimeDispatchInfo does not decode at spec {self.spec_version}: {exc}"
            ) from None

    @_scale_locked
    def batch_cost(self, sizes: Sequence[int], extrinsic_hex: str) -> int:
        """What sending this batch of orders takes from the account: each order's price from the market's own
        fee storage (:func:`order_price`), its tip, and the extrinsic's fee (the submitter adds prepaid top-ups)."""
        return sum(self.order_costs(sizes)) + self.extrinsic_fee(extrinsic_hex)

    @_scale_locked
    def order_costs(self, sizes: Sequence[int]) -> list[int]:
        """Each order's price (market fees + tip) at the fees stored now."""
        fees = self.fees()
        return [order_price(size, fees) + self.settings.tips for size in sizes]

    def fees(self) -> dict[str, int]:
        return self.storage_values([*_BASE_FEE, *_BYTE_FEE, *_KEYS_FEE])

    def renewal_price(self, size: int, fees: dict[str, int]) -> int:
        """What ``calculate_reward`` takes from a file's prepaid pool to renew it (``try_to_renew_file``):
        base fee + byte fee x started MiB (+ the keys-count fee from spec 3), plus RenewRewardRatio of that
        up to spec 16. Rounded up, so a pool topped up to it is never a unit short."""
        price = order_price(size, {k: v for k, v in fees.items() if k != "FilesCountPrice"})  # spec 1-2: not charged
        return price + -(-price * self.renew_reward_ratio // 10**9)

    def file_key(self, cid: str, files_map: str | None = None) -> str:
        prefix, hasher, _ = self._maps[files_map or self.files_map]
        data = cid.encode()
        return "0x" + (prefix + _hash_key(hasher, _compact_len(len(data)) + data)).hex()

    def cid_of_key(self, key: str, files_map: str | None = None) -> str | None:
        """The CID a storage key of ``files_map`` is for (the inverse of :meth:`file_key`); None if the key does
        not carry it (a hasher that keeps no copy of the key) or is not of that map."""
        prefix, hasher, _ = self._maps[files_map or self.files_map]
        data = bytes.fromhex(key.removeprefix("0x"))
        skip = {"Twox64Concat": 8, "Blake2_128Concat": 16, "Identity": 0}.get(hasher)
        if skip is None or not data.startswith(prefix):
            return None
        encoded = data[len(prefix) + skip:]
        mode = encoded[0] & 3 if encoded else 3
        width = {0: 1, 1: 2, 2: 4}.get(mode)
        if width is None or len(encoded) < width:
            return None
        length = int.from_bytes(encoded[:width], "little") >> 2
        cid = encoded[width:]
        return cid.decode("utf-8", "replace") if len(cid) == length else None

    def sample_keys(self, files_map: str, count: int) -> list[str]:
        """The first ``count`` storage keys of ``files_map``, in the node's key order (``state_getKeysPaged``)."""
        prefix = "0x" + self._maps[files_map][0].hex()
        return [str(k) for k in self._rpc("state_getKeysPaged", [prefix, count]) or []]

    def raw_values(self, keys: Sequence[str]) -> dict[str, str | None]:
        """The raw SCALE values (0x hex) at ``keys``, read with ONE multi-key storage query."""
        out: dict[str, str | None] = dict.fromkeys(keys)
        for change_set in self._rpc("state_queryStorageAt", [list(keys)]) or []:
            for key, value in change_set["changes"]:
                if key in out:
                    out[key] = value
        return out

    @_scale_locked
    def decode_record(self, data_hex: str, files_map: str | None = None) -> FileRecord:
        """A record of ``files_map`` (default: the map new orders are written to)."""
        name = files_map or self.files_map
        return decode_record(self._s().runtime_config, self._maps[name][2], data_hex, name, self.spec_version)

    def files(self, cids: Sequence[str], at: str | None = None) -> dict[str, FileRecord | None]:
        """File records of ``cids``, read with ONE multi-key storage query."""
        return self.files_sized(cids, at)[0]

    def files_sized(self, cids: Sequence[str], at: str | None = None,
                    known: KnownRecords | None = None) -> tuple[dict[str, FileRecord | None], int]:
        """:meth:`files` and the bytes of record data the node sent (the poller sizes its next query by it).
        Where the runtime has two maps (spec 17: ``FilesV2`` and the legacy ``Files`` that
        ``do_file_migration`` empties), both are read in the same query and ``FilesV2`` wins. With ``known``,
        a record whose bytes did not change since it was last decoded there is not decoded again."""
        keys = {self.file_key(c, m): (c, m) for m in self._maps for c in cids}
        params: list[Any] = [list(keys)] + ([at] if at else [])
        result = self._rpc("state_queryStorageAt", params) or []
        out: dict[str, FileRecord | None] = {c: None for c in cids}
        size = 0
        for change_set in result:
            for key, value in change_set["changes"]:
                if value is not None and key in keys:
                    cid, name = keys[key]
                    size += len(value) // 2
                    if known is None:
                        record = self.decode_record(value, name)
                    else:
                        record = known.decode(cid, name, value, (self.chain, self.spec_version), self.decode_record)
                    if out[cid] is None or name == self.files_map:
                        out[cid] = record
        return out, size

    # orders -----------------------------------------------------------------------------------
    def order_call_args(self, cid: str, size: int) -> dict[str, Any]:
        values: list[Any] = ["0x" + cid.encode().hex(), size, self.settings.tips, "0x"][: self.order_arity]
        return dict(zip(self._order_args, values, strict=True))

    @_scale_locked
    def sign_batch(self, cids: Sequence[tuple[str, int] | MarketCall], nonce: int, current_block: int) -> SignedBatch:
        """A ``Utility.batch`` of one call per item, in order: an order per (cid, size), or a
        :class:`MarketCall`; signed, mortal for :attr:`era_period` blocks. substrate-interface follows the
        chain's runtime by itself on every call; the order call and its arguments are read again here if it
        moved since :meth:`check_runtime` (an upgrade in between)."""
        s = self._s()
        if self.keypair is None:
            raise ValueError("a read-only client signs nothing: no ordering account secret")
        self._call(s.init_runtime)
        if int(s.runtime_version) != self.spec_version:
            log.warning("crust runtime upgraded from spec %s to %s", self.spec_version, s.runtime_version)
            self._call(self._select)
        calls = [s.compose_call("Market", item.call, {"cid": "0x" + item.cid.encode().hex(), "amount": item.amount}
                                if item.call == "add_prepaid" else {"cid": "0x" + item.cid.encode().hex()})
                 if isinstance(item, MarketCall) else s.compose_call("Market", self.order_call,
                                                                      self.order_call_args(*item))
                 for item in cids]
        batch = self._call(s.compose_call, "Utility", "batch", {"calls": calls})
        era = {"period": self.era_period, "current": current_block}
        ext = self._call(s.create_signed_extrinsic, batch, self.keypair, era=era, nonce=nonce)
        data = bytes(ext.data.data)
        birth, death = era_bounds(self.era_period, current_block)
        return SignedBatch(
            extrinsic="0x" + data.hex(),
            tx_hash="0x" + blake2b(data, digest_size=32).hexdigest(),
            nonce=nonce,
            start_block=birth,
            era_end=death,
            spec_version=int(s.runtime_version),
        )

    def submit(self, extrinsic_hex: str) -> str:
        """Hand the extrinsic to the node (``author_submitExtrinsic``); raises TxRejected if refused."""
        try:
            reply = self._s().rpc_request("author_submitExtrinsic", [extrinsic_hex])
        except SubstrateRequestException as exc:
            err = exc.args[0] if exc.args else {}
            if not isinstance(err, dict):
                err = {"message": str(exc)}
            code = err.get("code") if isinstance(err.get("code"), int) else None
            message, data = str(err.get("message", "")), str(err.get("data", "") or "")
            text = f"{message} {data}".strip()
            raise TxRejected(text[:300], classify_rejection(code, message, data), code) from None
        except _CONNECTION_ERRORS as exc:
            self.close()
            raise ChainUnavailable(f"author_submitExtrinsic: {type(exc).__name__}: {exc}") from None
        return str(reply.get("result"))

    def find_inclusion(self, tx_hash: str, first: int) -> tuple[Inclusion | None, int]:
        """Look for the extrinsic in the finalized chain from block ``first`` on: where it is (or None), and
        the finalized block number looked up to. Blocks are read from the finalized head back by their parent
        hashes, never by number, so a node that names a number with another branch's block (one behind a
        load balancer, still on a branch a re-organisation undid) or with nothing cannot make an undone
        block count, nor a block be skipped (the batch would be taken for unincluded and ordered again)."""
        block_hash = self._rpc("chain_getFinalizedHead", [])
        final: int | None = None
        while True:
            block = self._rpc("chain_getBlock", [block_hash])
            if not isinstance(block, dict) or not isinstance(block.get("block"), dict):
                raise ChainUnavailable(f"chain_getBlock: the node does not know block {block_hash}")
            header = block["block"]["header"]
            number = int(header["number"], 16)
            final = number if final is None else final
            if number < first:
                return None, final
            for index, ext in enumerate(block["block"]["extrinsics"]):
                if "0x" + blake2b(bytes.fromhex(ext[2:]), digest_size=32).hexdigest() == tx_hash:
                    return Inclusion(number, block_hash, index), final
            if number <= max(first, 0):
                return None, final
            block_hash = header["parentHash"]

    @_scale_locked
    def batch_outcome(self, inclusion: Inclusion, count: int) -> list[tuple[str, str | None]]:
        """Per item of the included batch: ("ok", None), ("fail", reason): the order's own fault, counted
        against the CID; ("pause", reason): the chain or account could not order (market off, too little
        money): not the CID's fault, re-queued free; ("requeue", None): not reached by the batch."""
        events = self._call(self._s().get_events, inclusion.block_hash)
        mine = [e.value for e in events if e.value.get("extrinsic_idx") == inclusion.index]
        for ev in mine:
            name = f"{ev['module_id']}.{ev['event_id']}"
            if name == "System.ExtrinsicFailed":
                failure = self._dispatch_error(_attr(ev["attributes"], 0, "dispatch_error"))
                verdict = "pause" if failure.chain_wide else "fail"
                return [(verdict, failure.text)] * count
            if name == "Utility.BatchInterrupted":
                at = int(_attr(ev["attributes"], 0, "index"))
                failure = self._dispatch_error(_attr(ev["attributes"], 1, "error"))
                if failure.chain_wide:
                    return [("ok", None) if i < at else ("pause", failure.text) for i in range(count)]
                return [("ok", None) if i < at else ("fail", failure.text) if i == at else ("requeue", None)
                        for i in range(count)]
        if any(f"{e['module_id']}.{e['event_id']}" == "System.ExtrinsicSuccess" for e in mine):
            return [("ok", None)] * count
        raise UnsupportedRuntime(f"no outcome event for extrinsic {inclusion.index} in block {inclusion.block}")

    def _dispatch_error(self, err: Any) -> DispatchFailure:
        if isinstance(err, dict) and "Module" in err:
            mod = err["Module"]
            if isinstance(mod, (list, tuple)):  # (index, error) tuple form
                mod = {"index": mod[0], "error": mod[1]}
            index, error = mod.get("index"), mod.get("error")
            if isinstance(error, str) and error.startswith("0x"):
                error = bytes.fromhex(error[2:])[0]
            pallet = next((p.name for p in self._s().metadata.pallets if p.value.get("index") == index), None)
            found = self._s().metadata.get_module_error(index, error)
            if found is not None:
                value = found.value if hasattr(found, "value") else found
                name = value.get("name") if isinstance(value, dict) else str(value)
                text = f"chain error {pallet}.{name}" if pallet else f"chain error {name}"
                return DispatchFailure(pallet, name, text)
            return DispatchFailure(pallet, None, f"chain module error {index}/{error}")
        return DispatchFailure(None, None, f"chain error {err}")


_BASE_FEE = ("FileBaseFee",)
_BYTE_FEE = ("FileByteFee", "FilePrice")  # per started MB of reported size (FilePrice until spec 2)
_KEYS_FEE = ("FileKeysCountFee", "FilesCountPrice")  # per order, rising with the number of files stored
MB = 1024 * 1024


def order_price(size: int, fees: dict[str, int]) -> int:
    """The price of one order of ``size`` bytes as the market pallet computes it (``get_file_amount`` and
    the base and keys fees): base fee + byte fee x started MB + keys-count fee."""
    def first(names: tuple[str, ...]) -> int:
        return next((fees[n] for n in names if n in fees), 0)

    size_mb = -(-size // MB)
    return first(_BASE_FEE) + first(_BYTE_FEE) * size_mb + first(_KEYS_FEE)


def renewal_strategy(wanted: str, calls: set[str]) -> tuple[str, str | None]:
    """The renewal strategy a runtime with these Market ``calls`` allows, and why it differs from ``wanted``.
    Falling back (rather than refusing the runtime) keeps new pins ordered and placed files alive; the
    strategy is chosen again at every connect, so a runtime upgrade that adds the calls brings prepaid back."""
    if wanted == "prepaid" and not {"add_prepaid", "calculate_reward"} <= calls:
        missing = sorted({"add_prepaid", "calculate_reward"} - calls)
        return "reorder", (f"renewal = prepaid needs Market.{' and Market.'.join(missing)}, which this runtime lacks: "
                           "renewing by re-ordering instead")
    return wanted, None


def era_bounds(period: int, current: int) -> tuple[int, int]:
    """(birth, death) of a mortal era as the chain computes them (sp-runtime ``Era::mortal``): the period is a
    power of two, the phase is quantised, and the extrinsic is valid in blocks ``birth <= n < death``."""
    from scalecodec.types import Era

    era = Era()
    era.process_encode({"period": period, "current": current})
    return era.birth(current), era.death(current)
