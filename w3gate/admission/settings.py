"""The ``[limits]`` and ``[access]`` tables of the configuration: how much each user and each client address
may pin, how fast anyone may call, how much CRU the service spends a day, and who may pin at all.

Each key also comes from the environment: ``W3GATE_LIMITS_<KEY>`` (an integer) and ``W3GATE_ACCESS_<KEY>``
(a comma-separated list). ``0`` means unlimited. The defaults keep a small public instance safe: a
fresh key costs nothing to make, and every order is paid from the operator's Crust account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

GIB = 1024**3


@dataclass(frozen=True)
class Limits:
    """``[limits]``: per-user quotas, per-address quotas, rates, the daily CRU budget (0: unlimited).

    A key costs nothing to make, so the per-user limits alone bound nobody: the per-address ones bound what
    one client address (IPv4, or an IPv6 /64) gets through however many keys it makes (docs/limits.md).

    ===============================  ===================================  ==========  ==============================
    key                              environment                          default     meaning
    ===============================  ===================================  ==========  ==============================
    pins_per_user                    W3GATE_LIMITS_PINS_PER_USER          1000        live pins of one user
    bytes_per_user                   W3GATE_LIMITS_BYTES_PER_USER         2 TiB       sum of the sizes ordered for them
    pins_per_day_per_user            W3GATE_LIMITS_PINS_PER_DAY_...       500         pins added per UTC day
    requests_per_minute              W3GATE_LIMITS_REQUESTS_PER_MINUTE    600         API requests of one identity
    auth_failures_per_minute         W3GATE_LIMITS_AUTH_FAILURES...       60          401s to one client address
    identities_per_address_per_day   W3GATE_LIMITS_IDENTITIES_PER_...     10          identities pinning for the
                                                                                      first time, per address and
                                                                                      UTC day
    pins_per_address_per_day         W3GATE_LIMITS_PINS_PER_ADDRESS...    1000        pins added from one address
                                                                                      per UTC day (all its keys)
    requests_per_address_per_minute  W3GATE_LIMITS_REQUESTS_PER_ADD...    1200        API requests from one address
    cru_per_day                      W3GATE_LIMITS_CRU_PER_DAY            10**12      smallest units of CRU (10**12
                                                                                      = 1 CRU) the service spends
                                                                                      per UTC day on orders and
                                                                                      renewals; past it new orders
                                                                                      wait queued
    max_meta_bytes                   W3GATE_LIMITS_MAX_META_BYTES         4096        UTF-8 bytes of a pin's meta
                                                                                      keys and values
    ===============================  ===================================  ==========  ==============================

    Counts per UTC day live in the database (they hold across restarts and instances); per-minute rates
    are counted in memory by each instance.
    """

    pins_per_user: int = 1000
    bytes_per_user: int = 2048 * GIB  # pins_per_user pins of unknown size (2 GiB each) fit: that limit binds first
    pins_per_day_per_user: int = 500
    requests_per_minute: int = 600
    auth_failures_per_minute: int = 60
    identities_per_address_per_day: int = 10
    pins_per_address_per_day: int = 1000
    requests_per_address_per_minute: int = 1200
    cru_per_day: int = 10**12
    max_meta_bytes: int = 4096

    @property
    def per_address(self) -> bool:
        """Whether a pin is counted against its client address's day (either per-address day limit is set)."""
        return bool(self.identities_per_address_per_day or self.pins_per_address_per_day)


# the limits a user can be given a value of their own (w3gate users set); the per-address one cannot


@dataclass(frozen=True)
class Access:
    """``[access]``: who may pin. Identities are ``<chain>:<address>`` in any address form of the key
    (``substrate:<ss58 or 0x hex>``, ``ethereum:0x...``), chains by name or alias. A non-empty allow list
    admits only what it lists (a private service); the deny lists refuse what they list."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    allow_chains: tuple[str, ...] = ()
    deny_chains: tuple[str, ...] = ()


def _int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"[limits] {key} must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"[limits] {key} must be an integer, not {value!r}") from None
    if number < 0:
        raise ValueError(f"[limits] {key} must be >= 0 (0: unlimited)")
    return number


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise ValueError(f"[access] {key} must be a list of strings")


def load_limits(table: Mapping[str, Any], env: Mapping[str, str]) -> Limits:
    values = _merge("limits", Limits, table, env)
    return Limits(**{k: _int(k, v) for k, v in values.items()})


def load_access(table: Mapping[str, Any], env: Mapping[str, str]) -> Access:
    values = _merge("access", Access, table, env)
    return Access(**{k: _strings(k, v) for k, v in values.items()})


def _merge(name: str, cls: Any, table: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    keys = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - keys)
    if unknown:
        raise ValueError(f"unknown setting [{name}] {unknown[0]!r} (known: {', '.join(sorted(keys))})")
    values = dict(table)
    for key in keys:
        var = f"W3GATE_{name.upper()}_{key.upper()}"
        if var in env:
            values[key] = env[var]
    return values
