"""Which origins the operator's node dials and which addresses it announces as delegates."""

from __future__ import annotations

import pytest

from w3gate.ipfs.addresses import NodeAddresses
from w3gate.ipfs.settings import load_ipfs_settings

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
CONFIGURED = [f"/dnsaddr/bootstrap.libp2p.io/p2p/{PEER}"]


def addresses(**table: object) -> NodeAddresses:
    return NodeAddresses(load_ipfs_settings({"rpc_url": "http://10.1.2.3:5001", **table}, {}), CONFIGURED)


async def test_only_public_origins_are_dialled_unless_their_network_is_allowed() -> None:
    origins = [f"/ip4/{ip}/tcp/4001/p2p/{PEER}" for ip in
               ("127.0.0.1", "10.0.0.5", "192.168.1.9", "169.254.1.1", "10.1.2.3", "100.64.0.1", "8.8.8.8")]
    origins += [f"/ip6/{ip}/tcp/4001/p2p/{PEER}" for ip in ("::1", "fe80::1", "fd00::1", "2606:4700::1111")]
    origins += [f"/dns4/localhost/tcp/4001/p2p/{PEER}"]  # resolves to loopback: not dialled
    assert await addresses().dialable(origins) == [origins[6], origins[10]]
    allowed = await addresses(private_origins=["10.0.0.0/8", "127.0.0.0/8"]).dialable(origins)
    assert allowed == [origins[0], origins[1], origins[4], origins[6], origins[10],
                       f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"]  # the name, resolved, for the node to dial


async def test_at_most_ten_origins() -> None:
    origins = [f"/ip4/8.8.4.{i}/tcp/4001/p2p/{PEER}" for i in range(20)]
    assert await addresses().dialable(origins) == origins[:10]


def test_delegates_are_announce_else_the_nodes_public_addresses_else_the_configured() -> None:
    ident = {"ID": PEER, "Addresses": [f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}", "/ip4/203.0.113.7/tcp/4001",
                                       f"/ip4/8.8.8.8/udp/4001/quic-v1/p2p/{PEER}"]}
    assert addresses().learn(ident) == [f"/ip4/8.8.8.8/udp/4001/quic-v1/p2p/{PEER}"]  # 203.0.113.0/24: not global
    announce = f"/ip4/198.51.100.1/tcp/4001/p2p/{PEER}"
    assert addresses(announce=[announce]).learn(ident) == [announce]
    assert addresses().learn({"ID": PEER, "Addresses": [f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"]}) == CONFIGURED
    node = addresses()
    node.learn(ident)
    assert not node.public(f"/ip4/8.8.8.8/tcp/1/p2p/{PEER}")  # the node's own address is never an origin
