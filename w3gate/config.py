"""Settings: embedded defaults, then a TOML file, then ``W3GATE_*`` environment variables, then flags.

Everything is validated here, before any port is bound or database opened, so that a bad setting is one
clear line and exit status 2 instead of a half-started service.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from w3gate.admission.settings import Access, Limits, load_access, load_limits
from w3gate.crust.settings import CrustSettings, load_crust_settings
from w3gate.ipfs.settings import IpfsSettings, describe_ipfs, load_ipfs_settings
from w3gate.redact import HIDDEN, redact_url
from w3gate.setting_values import load_table
from w3gate.setting_values import parse_bool as _parse_bool
from w3gate.setting_values import parse_int as _parse_int
from w3gate.setting_values import parse_list as _parse_list

DEFAULT_DELEGATES = (
    # A public libp2p bootstrap peer: valid for clients to dial; operators set their own IPFS node here.
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
)
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


DAY = 86_400


@dataclass(frozen=True)
class TokenSettings:
    """The ``[tokens]`` table (env ``W3GATE_TOKENS_<KEY>``): bound tokens and plain W3Auth tokens."""

    w3auth: bool = True  # accept plain W3Auth tokens (false: bound tokens only)
    max_ttl: int = 90 * DAY  # seconds: the longest lifetime a bound token may claim
    default_ttl: int = 30 * DAY  # seconds: the lifetime w3gate token and the page ask for


class ConfigError(ValueError):
    """An invalid setting: reported as one line, exit status 2."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "w3gate"


@dataclass(frozen=True)
class Settings:
    """Every setting of the service. See config/w3gate.example.toml for what each one means.

    Settings about secrets and logs (the rest are described in the example file):

    =============  ====================  =======  ==========================================================
    key            environment           default  meaning
    =============  ====================  =======  ==========================================================
    health_token   W3GATE_HEALTH_TOKEN   (none)   the operator's token: ``GET /healthz`` with
                                                  ``Authorization: Bearer <it>`` shows the details (database,
                                                  chains, ordering account and balance); anyone else gets
                                                  only ``{"status": ...}``. Unset: details to nobody
    log_sql        W3GATE_LOG_SQL        false    at log_level debug, also log each SQL statement with its
                                                  parameters (owners, names, meta: user data); off, the ORM's
                                                  statement log is silenced whatever the level
    metrics_token  W3GATE_METRICS_TOKEN  (none)   ``GET /metrics`` (Prometheus text) answers only with
                                                  ``Authorization: Bearer <it>``, anyone else gets 401. Unset:
                                                  open to anyone who can reach the port
    log_format     W3GATE_LOG_FORMAT     text     ``json``: every log record as one JSON object per line
                                                  (``time``, ``level``, ``logger``, ``message``; the access
                                                  log's fields as keys), for log shippers
    =============  ====================  =======  ==========================================================

    Who may pin and how much (``[limits]`` and ``[access]``: :mod:`w3gate.admission.settings`):

    ====================  ===========================  =======  ============================================
    key                   environment                  default  meaning
    ====================  ===========================  =======  ============================================
    trusted_proxy_header  W3GATE_TRUSTED_PROXY_HEADER  (none)   header naming the client address (e.g.
                                                                ``X-Forwarded-For``), believed only from a
                                                                peer in trusted_proxies; unset: the peer
    trusted_proxies       W3GATE_TRUSTED_PROXIES       (none)   CIDRs of the reverse proxies
    admission             (table only)                 {}       ``[admission]``: options for admission
                                                                plugins (each reads its own sub-table)
    ====================  ===========================  =======  ============================================

    Tokens (docs/tokens.md):

    ====================  ===========================  =================  ==================================
    key                   environment                  default            meaning
    ====================  ===========================  =================  ==================================
    public_url            W3GATE_PUBLIC_URL            http://HOST:PORT   the service's address as users
                                                                          reach it: bound tokens must name
                                                                          its host[:port] and URL;
                                                                          ``w3gate token`` prints it
    [tokens] w3auth       W3GATE_TOKENS_W3AUTH         true               accept plain W3Auth tokens
    [tokens] max_ttl      W3GATE_TOKENS_MAX_TTL        7776000 (90 d)     longest lifetime of a bound
                                                                          token, seconds
    [tokens] default_ttl  W3GATE_TOKENS_DEFAULT_TTL    2592000 (30 d)     the lifetime ``w3gate token`` and
                                                                          the page ask for, seconds
    ====================  ===========================  =================  ==================================

    Connections at the edge (docs/operations.md, "On the open internet"):

    ===========================  ==================================  =======  ====================================
    key                          environment                         default  meaning
    ===========================  ==================================  =======  ====================================
    max_connections_per_address  W3GATE_MAX_CONNECTIONS_PER_ADDRESS  100      connections one client address
                                                                              (IPv6: its /64) may hold open; more
                                                                              get 429. Behind trusted_proxies: the
                                                                              requests in flight of each client
                                                                              the proxy names. 0: no limit
    body_first_byte_timeout      W3GATE_BODY_FIRST_BYTE_TIMEOUT      5.0      seconds from a request head to the
                                                                              first byte of its body (then 408)
    ===========================  ==================================  =======  ====================================

    Several instances: ``leader_timeout`` (``W3GATE_LEADER_TIMEOUT``, default 30 s), how long a dead or cut-off
    ordering leader can keep ordering to itself (w3gate.ordering.leader).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str = ""  # empty: SQLite in data_dir
    log_level: str = "info"
    delegates: tuple[str, ...] = DEFAULT_DELEGATES
    max_body_bytes: int = 256 * 1024
    keep_alive_timeout: float = 75.0  # seconds an idle connection (between requests, or before its first) stays open
    body_timeout: float = 30.0  # seconds a request body may take to arrive, and a send of an answer may block
    max_connections: int = 1000  # open connections at most (lowered to fit the open-file limit)
    max_connections_per_address: int = 100  # per client address (IPv6 /64); 0: no limit
    body_first_byte_timeout: float = 5.0  # seconds from a request head to its body's first byte
    token_cache_size: int = 10_000
    auth_check_threads: int = 0  # 0: one per core, at least 2
    auth_queue_per_client: int = 32
    cors_origins: tuple[str, ...] = ("*",)
    shutdown_timeout: float = 8.0
    statement_timeout: float = 1.0  # seconds a list query that may scan (filters beyond status) may run
    plugin_dir: Path | None = None
    plugins_strict: bool = False
    allowed_chains: tuple[str, ...] | None = None
    chains: Mapping[str, Any] = field(default_factory=dict)
    crust: CrustSettings = field(default_factory=lambda: load_crust_settings({}, {}, Path(".")))
    ipfs: IpfsSettings = field(default_factory=IpfsSettings)  # [ipfs]: the operator's IPFS node (w3gate.ipfs.settings)
    health_token: str = field(default="", repr=False)
    log_sql: bool = False
    # leader: several instances on one PostgreSQL elect one ordering leader
    leader_timeout: float = 30.0  # seconds a dead or cut-off leader can keep ordering to itself
    # limits and access: who may pin, how much, how fast
    limits: Limits = field(default_factory=Limits)
    access: Access = field(default_factory=Access)
    trusted_proxy_header: str = ""  # empty: the client address is the socket's peer
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose trusted_proxy_header is believed
    admission: Mapping[str, Any] = field(default_factory=dict)  # [admission]: admission plugins' options
    # tokens: where users reach the service, and the [tokens] table
    public_url: str = ""  # empty: http://HOST:PORT (see public_base)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    # metrics and logs
    metrics_token: str = field(default="", repr=False)
    log_format: str = "text"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite://{self.data_dir / 'w3gate.sqlite3'}"

    @property
    def public_base(self) -> str:
        """``public_url`` without a trailing slash, or ``http://HOST:PORT`` when it is unset."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


# name -> (environment variable, parser). Keys absent here are file-only (tables).
SCALARS: dict[str, Any] = {
    "host": str,
    "port": _parse_int,
    "data_dir": lambda v: Path(str(v)).expanduser(),
    "database_url": str,
    "log_level": lambda v: str(v).lower(),
    "delegates": _parse_list,
    "max_body_bytes": _parse_int,
    "keep_alive_timeout": float,
    "body_timeout": float,
    "max_connections": _parse_int,
    "max_connections_per_address": _parse_int,
    "body_first_byte_timeout": float,
    "token_cache_size": _parse_int,
    "auth_check_threads": _parse_int,
    "auth_queue_per_client": _parse_int,
    "cors_origins": _parse_list,
    "shutdown_timeout": float,
    "statement_timeout": float,
    "plugin_dir": lambda v: Path(str(v)).expanduser() if str(v) else None,
    "plugins_strict": lambda v: v if isinstance(v, bool) else _parse_bool(v),
    "allowed_chains": lambda v: _parse_list(v) or None,
    "health_token": str,
    "log_sql": lambda v: v if isinstance(v, bool) else _parse_bool(v),
    "leader_timeout": float,
    "trusted_proxy_header": lambda v: str(v).strip(),
    "trusted_proxies": _parse_list,
    "public_url": str,
    "metrics_token": str,
    "log_format": lambda v: str(v).lower(),
}
TABLES = ("chains", "crust", "ipfs", "limits", "access", "admission", "tokens")
TOKEN_KEYS: dict[str, Any] = {
    "w3auth": lambda v: v if isinstance(v, bool) else _parse_bool(v),
    "max_ttl": _parse_int,
    "default_ttl": _parse_int,
}


def load_settings(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults, the TOML file, the environment and flag overrides; validate; raise ConfigError."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    crust_table: dict[str, Any] = {}
    ipfs_table: dict[str, Any] = {}
    chains_table: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {"limits": {}, "access": {}, "admission": {}}
    tokens_table: dict[str, Any] = {}
    base_dir = Path.cwd()
    config_file = config_file or (Path(env["W3GATE_CONFIG"]) if env.get("W3GATE_CONFIG") else None)
    if config_file is not None:
        try:
            with open(config_file, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from exc
        base_dir = Path(config_file).resolve().parent
        for key, value in doc.items():
            if key == "crust":
                crust_table = _table(key, value)
            elif key == "ipfs":
                ipfs_table = _table(key, value)
            elif key == "chains":
                chains_table = _table(key, value)
            elif key in tables:
                tables[key] = _table(key, value)
            elif key == "tokens":
                tokens_table = _table(key, value)
            elif key in SCALARS:
                raw[key] = value
            else:
                raise ConfigError(f"config file {config_file}: unknown setting {key!r}")
    for key in SCALARS:
        var = f"W3GATE_{key.upper()}"
        if var in env:
            raw[key] = env[var]
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key] = value
    values = _parsed(raw, SCALARS, "")
    try:
        crust = load_crust_settings(crust_table, env, base_dir)
    except ValueError as exc:
        raise ConfigError(f"invalid crust setting: {exc}") from exc
    try:
        ipfs = load_ipfs_settings(ipfs_table, env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        limits, access = load_limits(tables["limits"], env), load_access(tables["access"], env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    settings = replace(Settings(), **values, chains=chains_table, crust=crust, ipfs=ipfs, limits=limits, access=access,
                       admission=tables["admission"],
                       tokens=_token_settings(tokens_table, env))
    validate(settings)
    return settings


def _token_settings(table: Mapping[str, Any], env: Mapping[str, str]) -> TokenSettings:
    try:
        return TokenSettings(**load_table(table, env, "tokens", TOKEN_KEYS))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

def _parsed(raw: Mapping[str, Any], parsers: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Each raw value through its key's parser; a value it refuses is one ConfigError line."""
    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            values[key] = parsers[key](value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid {where}{key}: {value!r} ({exc})") from exc
    return values


def _table(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"[{key}] must be a table")
    return value


def validate(s: Settings) -> None:
    from w3gate.multiaddrs import MultiaddrError, check_multiaddr

    if not 0 <= s.port <= 65535:
        raise ConfigError(f"invalid port: {s.port} (0-65535)")
    if s.log_level not in LOG_LEVELS:
        raise ConfigError(f"invalid log_level: {s.log_level!r} (one of {', '.join(LOG_LEVELS)})")
    if s.log_format not in LOG_FORMATS:
        raise ConfigError(f"invalid log_format: {s.log_format!r} (one of {', '.join(LOG_FORMATS)})")
    if not 1 <= len(s.delegates) <= 20:
        raise ConfigError(f"delegates: 1 to 20 multiaddrs are needed, got {len(s.delegates)}")
    if len(set(s.delegates)) != len(s.delegates):
        raise ConfigError("delegates: the list has duplicates")
    for addr in s.delegates:
        try:
            check_multiaddr(addr)
        except MultiaddrError as exc:
            raise ConfigError(f"invalid delegate {addr!r}: {exc}") from exc
    if s.max_body_bytes < 1024:
        raise ConfigError("max_body_bytes must be at least 1024")
    for name in ("keep_alive_timeout", "body_timeout", "body_first_byte_timeout"):
        if not 0 < getattr(s, name) < float("inf"):
            raise ConfigError(f"{name} must be a number of seconds > 0")
    if s.max_connections < 1:
        raise ConfigError("max_connections must be >= 1")
    if s.max_connections_per_address < 0:
        raise ConfigError("max_connections_per_address must be >= 0 (0: no limit)")
    if s.token_cache_size < 0:
        raise ConfigError("token_cache_size must be >= 0")
    if not 0 <= s.auth_check_threads <= 256:
        raise ConfigError("auth_check_threads must be 0 (one per core) to 256")
    if s.auth_queue_per_client < 1:
        raise ConfigError("auth_queue_per_client must be >= 1")
    if s.shutdown_timeout <= 0:
        raise ConfigError("shutdown_timeout must be > 0")
    if not 0.001 <= s.statement_timeout <= 3600:
        raise ConfigError("statement_timeout must be from 0.001 to 3600 seconds")
    if not 1 <= s.leader_timeout <= 3600:
        raise ConfigError("leader_timeout must be from 1 to 3600 seconds")
    url = s.database_url
    if url and not url.startswith(("sqlite://", "postgres://", "postgresql://", "asyncpg://")):
        raise ConfigError("database_url must start with sqlite://, postgres:// or postgresql://")
    from w3gate.clientaddr import parse_networks

    try:
        parse_networks(s.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"invalid trusted_proxies: {exc}") from exc
    if s.public_url:
        from urllib.parse import urlsplit

        parts = urlsplit(s.public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"public_url must be an http(s) URL without query, like https://pin.example.org: "
                              f"{s.public_url!r}")
        from w3gate.w3auth.bound import ascii_authority

        if ascii_authority(parts.netloc) is None:  # bound tokens name it: they could never match
            raise ConfigError(f"public_url's host[:port] {parts.netloc!r} is not a valid (IDNA) domain name")
    if not 60 <= s.tokens.max_ttl <= 10 * 365 * DAY:
        raise ConfigError("[tokens] max_ttl must be from 60 seconds to 10 years")
    if not 60 <= s.tokens.default_ttl <= s.tokens.max_ttl:
        raise ConfigError("[tokens] default_ttl must be from 60 seconds to max_ttl")
    if s.plugin_dir is not None and not s.plugin_dir.is_dir():
        raise ConfigError(f"plugin_dir {s.plugin_dir} is not a directory")


def describe(s: Settings) -> dict[str, Any]:
    """The settings as JSON-safe data, without secrets (for logs and --print-config): URLs redacted
    (userinfo and query values), the Crust secret and the health and metrics tokens shown only as set or not."""
    out: dict[str, Any] = {}
    for f in fields(s):
        v = getattr(s, f.name)
        if f.name == "database_url":
            v = redact_url(s.db_url)
        elif f.name in ("health_token", "metrics_token"):
            v = HIDDEN if v else ""
        elif f.name == "crust":
            v = _describe_crust(v)
        elif f.name == "ipfs":
            v = describe_ipfs(v)
        elif f.name in ("limits", "access"):
            v = {k.name: _plain(getattr(v, k.name)) for k in fields(v)}
        elif f.name == "tokens":
            v = {t.name: getattr(v, t.name) for t in fields(v)}
        else:
            v = _plain(v)
        out[f.name] = v
    return out


def _describe_crust(c: CrustSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(c):
        v = getattr(c, f.name)
        if f.name == "seed":
            v = None if v is None else HIDDEN
        elif f.name in ("url", "webhook") and v:
            v = redact_url(v)
        out[f.name] = _plain(v)
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return list(v)
    return v
