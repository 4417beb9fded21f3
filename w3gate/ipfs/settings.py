"""The ``[ipfs]`` table: the operator's IPFS node, driven over the Kubo RPC API.

Precedence for every key: ``W3GATE_IPFS_<KEY>`` environment variable > the ``[ipfs]`` table > the default.
Without ``rpc_url`` there is no node: pins are ordered on Crust as their CIDs are given, at the configured
default size, and nothing makes sure Crust's storage nodes can fetch them.

==================  ===========================  ============  ==================================================
key ([ipfs])        environment                  default       meaning
==================  ===========================  ============  ==================================================
rpc_url             W3GATE_IPFS_RPC_URL          (none)        the node's Kubo RPC API, e.g. ``http://127.0.0.1:5001``;
                                                               credentials for Kubo's ``API.Authorizations`` may
                                                               ride in it (``http://user:pass@host:5001``); they
                                                               are never shown
announce            W3GATE_IPFS_ANNOUNCE         (node's)      the node's public multiaddrs, each ending in
                                                               ``/p2p/<peerID>``: the delegates of every PinStatus.
                                                               Unset: the node's own ``id`` addresses that are public
fetch_timeout       W3GATE_IPFS_FETCH_TIMEOUT    3600.0        seconds a fetch may take in all before the pin fails
stall_timeout       W3GATE_IPFS_STALL_TIMEOUT    120.0         seconds a fetch may make no progress before it is
                                                               given up (the pin waits for providers, then fails)
fetch_concurrency   W3GATE_IPFS_FETCH_CONCURRENCY 10           fetches running at once
hold                W3GATE_IPFS_HOLD             until_pinned  ``until_pinned``: keep the content pinned on the node
                                                               until the chain reports the replica threshold, then
                                                               unpin; ``always``: keep it while a pin wants it;
                                                               ``never``: unpin once the order is placed
max_upload_bytes    W3GATE_IPFS_MAX_UPLOAD_BYTES 1073741824    the largest body ``POST /api/v0/add`` takes (413 past it)
private_origins     W3GATE_IPFS_PRIVATE_ORIGINS  (none)        CIDRs a pin's ``origins`` may be in although not
                                                               public (e.g. ``10.0.0.0/8``); otherwise the node
                                                               connects only to public origins (never loopback,
                                                               private, link-local or its own addresses)
==================  ===========================  ============  ==================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from w3gate.setting_values import load_table, parse_int, parse_list

HOLDS = ("until_pinned", "always", "never")


@dataclass(frozen=True)
class IpfsSettings:
    rpc_url: str = ""
    announce: tuple[str, ...] = ()
    fetch_timeout: float = 3600.0
    stall_timeout: float = 120.0
    fetch_concurrency: int = 10
    hold: str = "until_pinned"
    max_upload_bytes: int = 1024**3
    private_origins: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.rpc_url)


PARSERS: dict[str, Any] = {
    "rpc_url": lambda v: str(v).strip(),
    "announce": parse_list,
    "fetch_timeout": float,
    "stall_timeout": float,
    "fetch_concurrency": parse_int,
    "hold": lambda v: str(v).strip().lower(),
    "max_upload_bytes": parse_int,
    "private_origins": parse_list,
}


def load_ipfs_settings(table: Mapping[str, Any], env: Mapping[str, str]) -> IpfsSettings:
    """The ``[ipfs]`` table and ``W3GATE_IPFS_*`` variables, validated; raises ValueError with one line."""
    values = load_table(table, env, "ipfs", PARSERS)
    s = IpfsSettings(**values)
    _validate(s)
    return s


def _validate(s: IpfsSettings) -> None:
    from urllib.parse import urlsplit

    from w3gate.multiaddrs import MultiaddrError, check_multiaddr

    if s.rpc_url:
        parts = urlsplit(s.rpc_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("[ipfs] rpc_url must be an http(s) URL such as http://127.0.0.1:5001")
    if len(s.announce) > 20:
        raise ValueError("[ipfs] announce: at most 20 multiaddrs")
    for addr in s.announce:
        try:
            check_multiaddr(addr)
        except MultiaddrError as exc:
            raise ValueError(f"[ipfs] invalid announce address {addr!r}: {exc}") from None
    for name in ("fetch_timeout", "stall_timeout"):
        if not 0 < getattr(s, name) <= 7 * 86_400:
            raise ValueError(f"[ipfs] {name} must be from 0 to 604800 seconds")
    if not 1 <= s.fetch_concurrency <= 1000:
        raise ValueError("[ipfs] fetch_concurrency must be from 1 to 1000")
    if s.hold not in HOLDS:
        raise ValueError(f"[ipfs] hold must be one of {', '.join(HOLDS)}")
    if s.max_upload_bytes < 1:
        raise ValueError("[ipfs] max_upload_bytes must be >= 1")
    import ipaddress

    for net in s.private_origins:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"[ipfs] private_origins: {net!r} is not a CIDR such as 10.0.0.0/8") from None


def describe_ipfs(s: IpfsSettings) -> dict[str, Any]:
    """JSON-safe, with the RPC URL's credentials hidden."""
    from w3gate.redact import redact_url

    out = {f.name: getattr(s, f.name) for f in fields(s)}
    out["rpc_url"] = redact_url(s.rpc_url) if s.rpc_url else ""
    out["announce"] = list(s.announce)
    out["private_origins"] = list(s.private_origins)
    return out
