"""Which multiaddrs the operator's node may dial (a pin's origins) and which it announces (PinStatus delegates).

Origins are dialled only at public addresses: never loopback, private, link-local or the operator's own (the node's
and the RPC host's addresses), unless the operator allows their network in ``[ipfs] private_origins``. DNS names are
resolved first and judged by every address they give, and the node is handed the resolved address (so a name that
resolves differently later cannot point it elsewhere).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import trio
from multiaddr import Multiaddr

from w3gate.ipfs.settings import IpfsSettings

log = logging.getLogger(__name__)

IP_PROTOCOLS = ("ip4", "ip6")
DNS_PROTOCOLS = ("dns", "dns4", "dns6", "dnsaddr")
MAX_ORIGINS = 10  # origins a fetch connects to, at most
Ip = ipaddress.IPv4Address | ipaddress.IPv6Address


def _first(text: str) -> tuple[str, str] | None:
    """(protocol, value) of a multiaddr's first part, or None when it does not parse."""
    try:
        addr = Multiaddr(text)
        first = addr.protocols()[0].name
        return first, str(addr.value_for_protocol(first))
    except Exception:  # noqa: BLE001 - the library raises several error types
        return None


class NodeAddresses:
    def __init__(self, settings: IpfsSettings, configured_delegates: Sequence[str]) -> None:
        self.announce = list(settings.announce)
        self.configured = list(configured_delegates)
        self.allowed = [ipaddress.ip_network(t, strict=False) for t in settings.private_origins]
        self.own: set[Ip] = set()
        try:
            self.own.add(ipaddress.ip_address(urlsplit(settings.rpc_url).hostname or ""))
        except ValueError:
            pass
        self.warned = False

    def public(self, text: str, own_ok: bool = False) -> bool:
        """Whether a multiaddr's address is public (or in ``private_origins``), and not the operator's own unless
        ``own_ok``. A DNS name passes here: :meth:`dialable` judges what it resolves to."""
        found = _first(text)
        if found is None or found[0] not in IP_PROTOCOLS + DNS_PROTOCOLS:
            return False
        if found[0] in DNS_PROTOCOLS:
            return True
        ip = ipaddress.ip_address(found[1])
        if any(ip in net for net in self.allowed):
            return True  # the operator allows it (a test network, a LAN of peers)
        return (own_ok or ip not in self.own) and ip.is_global

    def learn(self, ident: dict[str, Any]) -> list[str]:
        """From the node's ``id``: its own addresses (never dialled as origins) and the delegates: ``announce``,
        else the node's public addresses (each ending ``/p2p/<peerID>``), else the configured ones (warned)."""
        addrs = [str(a) for a in ident.get("Addresses") or []]
        for text in addrs:
            found = _first(text)
            if found and found[0] in IP_PROTOCOLS:
                self.own.add(ipaddress.ip_address(found[1]))
        if self.announce:
            return list(self.announce)
        suffix = f"/p2p/{ident.get('ID', '')}"
        chosen: list[str] = []
        for text in addrs:
            text = text if "/p2p/" in text else text + suffix
            if self.public(text, own_ok=True) and text not in chosen:
                chosen.append(text)
        if chosen:
            return chosen
        if not self.warned:
            log.warning("ipfs node: none of its addresses is public (%s) and [ipfs] announce is unset: PinStatus "
                        "delegates stay the configured ones, which do not hold the content", ", ".join(addrs) or "none")
            self.warned = True
        return list(self.configured)

    async def dialable(self, origins: Iterable[str]) -> list[str]:
        """The origins to connect to: at most :data:`MAX_ORIGINS`, public only, DNS names resolved first."""
        out: list[str] = []
        for text in origins:
            if len(out) >= MAX_ORIGINS:
                break
            found = _first(text)
            if found is None:
                continue
            if found[0] in ("dns", "dns4", "dns6"):
                try:
                    infos = await trio.socket.getaddrinfo(found[1], None)
                except OSError:
                    continue
                rest = text.split("/", 3)[3]
                ips = sorted({str(i[4][0]) for i in infos})
                resolved = [f"/{'ip6' if ':' in ip else 'ip4'}/{ip}/{rest}" for ip in ips]
                if resolved and all(self.public(r) for r in resolved):
                    out.append(resolved[0])
            elif found[0] != "dnsaddr" and self.public(text):
                out.append(text)
        return out
