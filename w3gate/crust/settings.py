"""Settings of the Crust order submitter and status poller.

Precedence for every key: ``W3GATE_CRUST_<KEY>`` environment variable > the Crust pinner's environment
name (where one exists) > the ``[crust]`` table of the TOML config > the default below. The secret is
never accepted from a command-line flag and never shown by ``repr``/``str``/logs/errors.

=====================  ===============================  ======================  ==================================================
key ([crust] table)    environment                      default                 meaning
=====================  ===============================  ======================  ==================================================
seed                   W3GATE_CRUST_SEED, CRUST_SEED    (none)                  ordering account secret: mnemonic, 0x raw seed or
                                                                                URI (``mnemonic//hard/soft``, ``//Alice``). Prefer
                                                                                the env var or ``seed_file``; without a secret
                                                                                ordering is off and pins stay queued
seed_file              W3GATE_CRUST_SEED_FILE           (none)                  file holding the secret (relative to the config file).
                                                                                Unset, and run by systemd with
                                                                                ``LoadCredential=crust-seed:FILE``: the secret is read
                                                                                from ``$CREDENTIALS_DIRECTORY/crust-seed``
key_type               W3GATE_CRUST_KEY_TYPE            sr25519                 sr25519 or ed25519
url                    W3GATE_CRUST_URL, WS_ENDPOINT    wss://rpc.crust.network chain websocket endpoint
ss58_format            W3GATE_CRUST_SS58_FORMAT         66                      address format used in logs and /healthz
tips                   W3GATE_CRUST_TIPS, CRUST_TIPS    0                       tip per order: ``tips`` and W3GATE_CRUST_TIPS in the
                                                                                chain's smallest unit; CRUST_TIPS in whole CRU
                                                                                (10**12 units), as the Crust pinner reads it
default_file_size      W3GATE_CRUST_DEFAULT_FILE_SIZE,  2147483648              reported file size (bytes) of an order whose size
                       DEFAULT_FILE_SIZE                                        is unknown (capped below the runtime's MaximumFileSize)
replicas               W3GATE_CRUST_REPLICAS,           3                       reported replicas at which a pin becomes ``pinned``
                       VALID_FILE_REPLICAS
batch_size             W3GATE_CRUST_BATCH_SIZE          200                     orders per Utility.batch extrinsic (1..500)
order_interval         W3GATE_CRUST_ORDER_INTERVAL      2.0                     seconds between looks at the queue when idle
poll_interval          W3GATE_CRUST_POLL_INTERVAL       30.0                    seconds between status polls
poll_batch_size        W3GATE_CRUST_POLL_BATCH_SIZE     2000                    most file records read per multi-key storage query
poll_bytes             W3GATE_CRUST_POLL_BYTES          4194304                 record bytes aimed at per storage query: the key
                                                                                count follows the records' measured size (a
                                                                                record with 200 replicas is tens of KB)
max_attempts           W3GATE_CRUST_MAX_ATTEMPTS        5                       failed order attempts before a pin is ``failed``
retry_base             W3GATE_CRUST_RETRY_BASE          30.0                    first retry delay (s), doubled per attempt
retry_max              W3GATE_CRUST_RETRY_MAX           3600.0                  longest retry delay (s)
min_balance            W3GATE_CRUST_MIN_BALANCE         1000000000000           free balance (smallest unit) below which ordering
                                                                                pauses (pins stay queued)
renewal_window         W3GATE_CRUST_RENEWAL_WINDOW      14400                   blocks before expiry at which a pin is re-ordered
                                                                                (a day): a renewal runs FileDuration from the
                                                                                current block, so every block renewed early is
                                                                                paid twice (30 days early: a sixth of an order)
renewal                W3GATE_CRUST_RENEWAL             reorder                 how a pinned file is kept: ``reorder`` places a new
                                                                                order ``renewal_window`` blocks before expiry;
                                                                                ``prepaid`` tops up the file's prepaid pool
                                                                                (Market.add_prepaid) ``renewal_window`` blocks
                                                                                before expiry and has the chain renew it from there
                                                                                at expiry (Market.calculate_reward): no block paid
                                                                                twice, but prepaid CRU can never be withdrawn.
                                                                                A runtime without both calls falls back to reorder
order_timeout          W3GATE_CRUST_ORDER_TIMEOUT       3600.0                  seconds a placed order's file record may take to
                                                                                appear before the pin is ``failed``
era_period             W3GATE_CRUST_ERA_PERIOD          64                      extrinsic mortality (blocks): an unincluded order
                                                                                is known dead after this and safely re-sent; a
                                                                                power of two (others are refused), at most the
                                                                                runtime's BlockHashCount (lowered to fit)
block_poll             W3GATE_CRUST_BLOCK_POLL          1.0                     seconds between looks for a sent extrinsic
reconnect_max          W3GATE_CRUST_RECONNECT_MAX       60.0                    longest reconnect back-off (s)
rpc_timeout            W3GATE_CRUST_RPC_TIMEOUT         20.0                    seconds one chain call may take before the
                                                                                connection counts as lost
call_timeout           W3GATE_CRUST_CALL_TIMEOUT        300.0                   seconds one client step (connect, sign a batch,
                                                                                scan blocks: several RPCs) may take in all; a
                                                                                node that keeps sending without ever answering
                                                                                is cut off after it and reconnected
webhook                W3GATE_CRUST_WEBHOOK             (none)                  URL POSTed JSON when ordering pauses/resumes for
                                                                                low balance
typedefs               W3GATE_CRUST_TYPEDEFS            (none)                  extra JSON type registry for a pre-v14 runtime the
                                                                                shipped definitions do not cover
=====================  ===============================  ======================  ==================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Secret:
    """Holds the ordering account's secret; ``repr``/``str``/format never reveal it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __reduce__(self) -> Any:  # never pickled into a crash dump or a subprocess
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class CrustSettings:
    seed: Secret | None = field(default=None, repr=False)
    key_type: str = "sr25519"
    url: str = "wss://rpc.crust.network"
    ss58_format: int = 66
    tips: int = 0
    default_file_size: int = 2 * 1024**3
    replicas: int = 3
    batch_size: int = 200
    order_interval: float = 2.0
    poll_interval: float = 30.0
    poll_batch_size: int = 2000
    max_attempts: int = 5
    retry_base: float = 30.0
    retry_max: float = 3600.0
    min_balance: int = 10**12
    renewal_window: int = 14400
    renewal: str = "reorder"
    order_timeout: float = 3600.0
    era_period: int = 64
    block_poll: float = 1.0
    reconnect_max: float = 60.0
    rpc_timeout: float = 20.0
    call_timeout: float = 300.0
    poll_bytes: int = 4 * 1024 * 1024
    webhook: str | None = None
    typedefs: Path | None = None

    @property
    def ordering_enabled(self) -> bool:
        return self.seed is not None

    def retry_delay(self, attempts: int) -> float:
        """Back-off before the next try after ``attempts`` failed tries."""
        return min(self.retry_max, self.retry_base * 2 ** max(0, attempts - 1))


# key -> (kind, W3GATE env, pinner env or None, (min, max) or None)
_KEYS: dict[str, tuple[str, str | None, tuple[float, float] | None]] = {
    "key_type": ("str", None, None),
    "url": ("url", "WS_ENDPOINT", None),
    "ss58_format": ("int", None, (0, 16383)),
    "tips": ("int", None, (0, 2**127)),
    "default_file_size": ("int", "DEFAULT_FILE_SIZE", (1, 2**64 - 1)),
    "replicas": ("int", "VALID_FILE_REPLICAS", (1, 10_000)),
    "batch_size": ("int", None, (1, 500)),
    "order_interval": ("float", None, (0.01, 3600)),
    "poll_interval": ("float", None, (0.01, 86400)),
    "poll_batch_size": ("int", None, (1, 10_000)),
    "poll_bytes": ("int", None, (1024, 256 * 1024 * 1024)),
    "max_attempts": ("int", None, (1, 1000)),
    "retry_base": ("float", None, (0, 86400)),
    "retry_max": ("float", None, (0, 7 * 86400)),
    "min_balance": ("int", None, (0, 2**127)),
    "renewal_window": ("int", None, (0, 2**32 - 1)),
    "renewal": ("str", None, None),
    "order_timeout": ("float", None, (1, 30 * 86400)),
    "era_period": ("int", None, (4, 65536)),
    "block_poll": ("float", None, (0.01, 600)),
    "reconnect_max": ("float", None, (0.1, 3600)),
    "rpc_timeout": ("float", None, (0.5, 600)),
    "call_timeout": ("float", None, (0.5, 86400)),
    "webhook": ("url?", None, None),
    "typedefs": ("path", None, None),
}
_ALL = set(_KEYS) | {"seed", "seed_file"}
CRU = 10**12  # smallest units per CRU (the chain's tokenDecimals: 12)
RENEWAL_STRATEGIES = ("reorder", "prepaid")


class OrderTooLarge(ValueError):
    """A known file size the chain refuses to order: the market pallet takes only ``reported_file_size <
    MaximumFileSize`` (``FileTooLarge`` otherwise, and the extrinsic's fee is still paid)."""

    def __init__(self, size: int, maximum: int) -> None:
        super().__init__(f"the file is {size} bytes and Crust orders only files smaller than its "
                         f"MaximumFileSize, {maximum} bytes: not ordered")
        self.size, self.maximum = size, maximum


def order_size(file_size: int | None, default_file_size: int, max_file_size: int | None = None) -> int:
    """The size (bytes) an order is placed for: the known size (the chain's reported size, or the content's),
    else ``default_file_size``. The chain orders only sizes strictly below ``Market.MaximumFileSize``: an
    unknown size is capped at ``max_file_size - 1``; a known size at or over it raises :class:`OrderTooLarge`
    (the caller fails the pin instead of paying for an order the chain refuses). The submitter orders by it
    and admission counts it against ``bytes_per_user`` (:func:`counted_size`)."""
    if file_size:
        if max_file_size is not None and file_size >= max_file_size:
            raise OrderTooLarge(file_size, max_file_size)
        return file_size
    return default_file_size if max_file_size is None else min(default_file_size, max_file_size - 1)


def counted_size(file_size: int | None, default_file_size: int, max_file_size: int | None = None) -> int:
    """What a pin counts against ``bytes_per_user``: :func:`order_size`, or the known size itself when it is
    too large to order (the pin is failed before ordering; while it exists it is that large)."""
    try:
        return order_size(file_size, default_file_size, max_file_size)
    except OrderTooLarge as exc:
        return exc.size


def era_period_for(period: int, block_hash_count: int) -> int:
    """The era period the chain will use: a power of two no larger than ``BlockHashCount`` (an extrinsic
    whose birth block's hash the chain no longer keeps is invalid, so a longer era would only look longer)."""
    limit = 1 << max(2, block_hash_count.bit_length() - 1)  # the largest power of two <= BlockHashCount
    return max(4, min(period, limit))


def _cru(raw: Any) -> int:
    """CRUST_TIPS as the Crust pinner reads it: a number of whole CRU (``0.01`` = 10**10 units)."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ValueError(f"CRUST_TIPS: expected a number of CRU, got {raw!r}") from None
    units = value * CRU
    if not value.is_finite() or units < 0 or units != units.to_integral_value() or units > 2**127:
        raise ValueError(f"CRUST_TIPS: {raw!r} is not a whole number of smallest units (12 decimals) from 0")
    return int(units)


def _env_name(key: str) -> str:
    return "W3GATE_CRUST_" + key.upper()


def _parse(key: str, kind: str, raw: Any, bounds: tuple[float, float] | None, base_dir: Path) -> Any:
    if kind == "int":
        if isinstance(raw, bool):
            raise ValueError(f"crust.{key}: expected an integer, got {raw!r}")
        try:
            value: Any = int(str(raw).strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"crust.{key}: expected an integer, got {raw!r}") from None
    elif kind == "float":
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise ValueError(f"crust.{key}: expected a number, got {raw!r}") from None
        if value != value:
            raise ValueError(f"crust.{key}: expected a number, got {raw!r}")
    elif kind in ("url", "url?"):
        value = str(raw).strip()
        if kind == "url?" and not value:
            return None
        scheme = ("ws://", "wss://") if kind == "url" else ("http://", "https://")
        if not value.startswith(scheme):
            raise ValueError(f"crust.{key}: expected a {' or '.join(s[:-3] for s in scheme)} URL, got {value!r}")
    elif kind == "path":
        text = str(raw).strip()
        if not text:
            return None
        value = Path(text).expanduser()
        if not value.is_absolute():
            value = base_dir / value
        if not value.is_file():
            raise ValueError(f"crust.{key}: no such file: {value}")
    else:
        value = str(raw).strip()
        if key == "key_type" and value not in ("sr25519", "ed25519"):
            raise ValueError(f"crust.key_type: expected sr25519 or ed25519, got {value!r}")
        if key == "renewal" and value not in RENEWAL_STRATEGIES:
            raise ValueError(f"crust.renewal: expected one of {', '.join(RENEWAL_STRATEGIES)}, got {value!r}")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"crust.{key}: {value} is outside {bounds[0]:g}..{bounds[1]:g}")
    if key == "era_period" and value & (value - 1):
        raise ValueError(f"crust.era_period: {value} is not a power of two (the chain rounds an era up to one: "
                         f"use {1 << (value - 1).bit_length()} or {1 << (value.bit_length() - 1)})")
    return value


CREDENTIAL_NAME = "crust-seed"  # the systemd credential w3gate reads the secret from
_HEX_SEED = re.compile(r"^0x[0-9a-fA-F]{64}$")


def check_secret(secret: str, key_type: str = "sr25519") -> None:
    """Raise ValueError (never quoting the secret) unless it yields a keypair."""
    from w3gate.crust.account import keypair_from_secret

    try:
        keypair_from_secret(secret, key_type, 42)
    except Exception:
        raise ValueError(
            "crust.seed: the ordering account secret is not a valid mnemonic, 0x-hex 32-byte seed or URI"
        ) from None


def load_crust_settings(table: Mapping[str, Any], env: Mapping[str, str], base_dir: Path) -> CrustSettings:
    """Build :class:`CrustSettings` from the ``[crust]`` TOML table and the environment."""
    unknown = set(table) - _ALL
    if unknown:
        raise ValueError(f"[crust]: unknown key(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, (kind, pinner_env, bounds) in _KEYS.items():
        for source in (env.get(_env_name(key)), env.get(pinner_env) if pinner_env else None):
            if source is not None and str(source).strip() != "":
                values[key] = _parse(key, kind, source, bounds, base_dir)
                break
        else:
            if key in table:
                values[key] = _parse(key, kind, table[key], bounds, base_dir)
    if not str(env.get(_env_name("tips"), "")).strip() and str(env.get("CRUST_TIPS", "")).strip():
        values["tips"] = _cru(env["CRUST_TIPS"])
    if "retry_max" in values or "retry_base" in values:
        base = values.get("retry_base", CrustSettings.retry_base)
        if values.get("retry_max", CrustSettings.retry_max) < base:
            raise ValueError("crust.retry_max must not be smaller than crust.retry_base")

    secret: str | None = None
    for source in (env.get("W3GATE_CRUST_SEED"), env.get("CRUST_SEED")):
        if source and source.strip():
            secret = source.strip()
            break
    if secret is None:
        seed_file = env.get("W3GATE_CRUST_SEED_FILE") or table.get("seed_file")
        path = None
        if seed_file:
            path = Path(str(seed_file)).expanduser()
            if not path.is_absolute():
                path = base_dir / path
        elif env.get("CREDENTIALS_DIRECTORY"):  # systemd's LoadCredential=crust-seed:...
            path = Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
            if not path.is_file():
                path = None
        if path is not None:
            try:
                secret = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"crust.seed_file: cannot read {path}: {exc.strerror}") from None
            if not secret:
                raise ValueError(f"crust.seed_file: {path} is empty")
    if secret is None and table.get("seed"):
        secret = str(table["seed"]).strip()
    if secret is not None:
        check_secret(secret, values.get("key_type", "sr25519"))
    return CrustSettings(seed=Secret(secret) if secret else None, **values)
