"""The client address: the one answer to "who is calling" for per-address limits and for the fair
signature-check gate (:mod:`w3gate.w3auth.fairgate`).

It is the socket's peer, unless the peer is one of the operator's ``trusted_proxies``: then it is taken
from ``trusted_proxy_header`` (``X-Forwarded-For``, ``X-Real-IP``...), read from the right (the entry the
trusted proxy appended) past any further trusted proxies. A header from anyone else is ignored: a
client cannot choose its own address by sending one.

Per-address limits count by :func:`client_key` (IPv4 by address, IPv6 by its /64: one host's usual share);
:class:`AddressCounts` counts what each such address holds open.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = ["AddressCounts", "Network", "client_address", "client_key", "is_trusted", "parse_networks"]


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; ValueError names a bad one."""
    out = []
    for text in cidrs:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or CIDR") from None
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, trusted: Sequence[Network]) -> bool:
    return ip is not None and any(ip.version == net.version and ip in net for net in trusted)


def is_trusted(peer: str | None, trusted: Sequence[Network]) -> bool:
    """Whether ``peer`` (the socket's peer address) is one of the ``trusted`` proxies."""
    return bool(trusted) and _trusted(_ip(peer or ""), trusted)


def client_key(address: str | None) -> str:
    """The unit of per-address limits and fairness: IPv4 as is, IPv6 by its /64 (one host's usual share)."""
    if not address:
        return ""
    return _client_key(address)


@functools.lru_cache(maxsize=4096)  # parsing the address took ~10 us of every request; a client sends many
def _client_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # a unix socket path or the like: as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class AddressCounts:
    """How many connections (or, behind a trusted proxy, requests in flight) each client key holds: at most
    ``limit`` (0: no limit, nothing counted)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def enter(self, key: str) -> bool:
        """Count one more for ``key``; False (nothing counted) when it already holds ``limit``."""
        held = self._counts.get(key, 0)
        if held >= self.limit:
            return False
        self._counts[key] = held + 1
        return True

    def leave(self, key: str) -> None:
        held = self._counts.get(key, 0) - 1
        if held > 0:
            self._counts[key] = held
        else:
            self._counts.pop(key, None)

    def held(self, key: str) -> int:
        return self._counts.get(key, 0)


def client_address(peer: str | None, header_value: str | None, trusted: Sequence[Network]) -> str | None:
    """The caller's address: ``peer``, or from ``header_value`` when ``peer`` is a trusted proxy.

    The header's comma-separated entries are read from the right, skipping trusted proxies; the first
    other entry is the client. An entry that is not an address ends the search with the last trusted hop
    (the proxy's own word cannot be followed further). No usable header: the peer.
    """
    if not trusted or not header_value or not _trusted(_ip(peer or ""), trusted):
        return peer
    last = peer
    for entry in reversed(header_value.split(",")):
        ip = _ip(entry)
        if ip is None:
            return last
        if not _trusted(ip, trusted):
            return str(ip)
        last = str(ip)
    return last
