"""The operator's IPFS node end to end: ``w3gate serve`` (subprocess) driving a real js-ipfs node, ordering on the
real Crust runtime. Content users pin is fetched onto the service's node, measured, ordered at its real size,
held until the chain reports the replicas, then released; what cannot be fetched fails with no order placed."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import pytest
from devchain_fixtures import crust_env
from helpers import free_port, wait_for
from ipfs_fixtures import IpfsNode, random_bytes, two_nodes


@pytest.fixture(scope="module")
def ipfs_nodes(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from two_nodes(tmp_path_factory)


def ipfs_env(node: IpfsNode, **extra: str) -> dict[str, str]:
    return {"W3GATE_IPFS_RPC_URL": node.rpc_url, "W3GATE_IPFS_PRIVATE_ORIGINS": "127.0.0.0/8",
            "W3GATE_IPFS_STALL_TIMEOUT": "2", "W3GATE_IPFS_FETCH_TIMEOUT": "120", **extra}


def order_text(cid: str) -> str:
    """The text the Crust order of ``cid`` carries (CIDv0 for a dag-pb file: w3gate.cids)."""
    from w3gate.cids import parse

    return parse(cid).order


def pin(server: Any, token: str, cid: str, origins: list[str] | None = None) -> str:
    body: dict[str, Any] = {"cid": cid}
    if origins:
        body["origins"] = origins
    r = httpx.post(f"{server.psa_url}/pins", json=body, headers={"Authorization": token}, timeout=30)
    assert r.status_code == 202, r.text
    return str(r.json()["requestid"])


def status_of(server: Any, token: str, requestid: str) -> dict[str, Any]:
    r = httpx.get(f"{server.psa_url}/pins/{requestid}", headers={"Authorization": token}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.devchain
def test_content_is_fetched_ordered_at_its_size_then_released(start_server, token, devchain, relay, ordering_account,
                                                              ipfs_nodes):
    user, service = ipfs_nodes["user"], ipfs_nodes["service"]
    cid = user.add(random_bytes(700_000))
    size = user.cumulative_size(cid)
    announce = service.address
    server = start_server(env={**crust_env(relay), **ipfs_env(service, W3GATE_IPFS_ANNOUNCE=announce)})
    rid = pin(server, token, cid, [user.address])
    body = wait_for(lambda: (s := status_of(server, token, rid))["status"] == "pinning" and s)
    assert body["info"]["dag_size"] == str(size)
    assert body["delegates"] == [announce]  # the node that holds the content, not a bootstrap peer
    assert body["info"]["status_details"].startswith("ordered")
    record = devchain.records([order_text(cid)])[order_text(cid)]
    assert record is not None and record.file_size == size  # reported_file_size: the real size, not 2 GiB
    assert cid in service.pinned()  # held until Crust's nodes report it
    devchain.set_replicas(order_text(cid), 2, 9_000_000)
    wait_for(lambda: status_of(server, token, rid)["status"] == "pinned")
    wait_for(lambda: cid not in service.pinned(), timeout=30)  # hold = until_pinned: released
    assert server.health().json()["ipfs"]["connected"] is True


@pytest.mark.devchain
def test_an_upload_is_ordered_at_its_real_size(start_server, token, devchain, relay, ordering_account, ipfs_nodes):
    """``POST /api/v0/add`` to a w3gate with a node and an ordering account: the uploaded root is ordered with the
    node's CumulativeSize as the chain record's file_size (not default_file_size), and the pin reaches pinning."""
    service = ipfs_nodes["service"]
    server = start_server(env={**crust_env(relay), **ipfs_env(service)})
    resp = httpx.post(server.base_url + "/api/v0/add", headers={"Authorization": token}, timeout=120,
                      files={"file": ("upload.bin", random_bytes(600_000))})
    assert resp.status_code == 200, resp.text
    root, rid = resp.json()["Hash"], resp.headers["X-Pin-Requestid"]
    size = service.cumulative_size(root)
    body = wait_for(lambda: (s := status_of(server, token, rid))["status"] == "pinning" and s)
    assert body["info"]["dag_size"] == str(size)
    record = devchain.records([order_text(root)])[order_text(root)]
    assert record is not None and record.file_size == size  # reported_file_size: the node's CumulativeSize


@pytest.mark.devchain
def test_unreachable_content_fails_with_no_order(start_server, token, devchain, relay, ordering_account, ipfs_nodes):
    user = ipfs_nodes["user"]
    cid = user.add(random_bytes(50_000), only_hash=True)  # a CID no node holds
    server = start_server(env={**crust_env(relay), **ipfs_env(ipfs_nodes["service"], W3GATE_IPFS_FETCH_TIMEOUT="5")})
    rid = pin(server, token, cid, [user.address])
    body = wait_for(lambda: (s := status_of(server, token, rid))["status"] == "failed" and s)
    assert "could not be fetched" in body["info"]["status_details"]
    assert devchain.records([order_text(cid)])[order_text(cid)] is None  # no order placed, no CRU spent
    assert server.health().json()["ordering"]["orders_placed"] == 0


@pytest.mark.devchain
def test_killed_mid_fetch_resumes_after_restart(start_server, token, devchain, relay, ordering_account, ipfs_nodes,
                                                tmp_path):
    user, service = ipfs_nodes["user"], ipfs_nodes["service"]
    data = random_bytes(400_000)
    cid = user.add(data, only_hash=True)  # nobody serves it yet: the fetch stalls
    data_dir = tmp_path / "w3gate"
    data_dir.mkdir()
    env = {**crust_env(relay), **ipfs_env(service)}
    server = start_server(env=env, data_dir=data_dir)
    rid = pin(server, token, cid, [user.address])
    wait_for(lambda: "waiting for providers" in status_of(server, token, rid)["info"].get("status_details", ""))
    server.stop(signal.SIGKILL)
    assert user.add(data) == cid  # now the user's node holds it
    size = user.cumulative_size(cid)
    server = start_server(env=env, data_dir=data_dir)
    body = wait_for(lambda: (s := status_of(server, token, rid))["status"] == "pinning" and s)
    assert body["info"]["dag_size"] == str(size)
    assert devchain.records([order_text(cid)])[order_text(cid)].file_size == size


def test_node_down_pins_wait_then_proceed(start_server, token, ipfs_nodes):
    user, node = ipfs_nodes["user"], ipfs_nodes["service"]
    cid = user.add(random_bytes(30_000))
    node.stop()
    try:
        server = start_server(env=ipfs_env(node))  # no chain: fetching runs without ordering
        rid = pin(server, token, cid, [user.address])
        ipfs = wait_for(lambda: (h := server.health().json()["ipfs"])["last_error"] and h)
        assert ipfs["connected"] is False and "IPFS node" in ipfs["last_error"]
        time.sleep(2)
        assert status_of(server, token, rid)["status"] == "queued"  # waits, does not fail
    finally:
        node.start()
    body = wait_for(lambda: (s := status_of(server, token, rid))["info"].get("dag_size") and s)
    assert body["status"] == "queued" and body["info"]["dag_size"] == str(user.cumulative_size(cid))
    assert body["info"]["status_details"] == "fetched: to be ordered"
    assert server.health().json()["ipfs"]["connected"] is True


def test_content_fetched_while_the_chain_is_unreachable_stays_tracked(start_server, token, ipfs_nodes, tmp_path):
    """An ordering account whose chain cannot be reached (MaximumFileSize unknown): fetched content is recorded as
    held, never fetched again, so no later fetch_timeout (here a restart with tiny timeouts, where asking the node
    again would be given up) fails the pin while the node keeps a pin w3gate no longer knows; deleting the pin
    releases it."""
    user, node = ipfs_nodes["user"], ipfs_nodes["service"]
    cid = user.add(random_bytes(40_000))
    chain = {"W3GATE_CRUST_SEED": "//Alice", "W3GATE_CRUST_URL": f"ws://127.0.0.1:{free_port()}"}  # nothing there
    data_dir = tmp_path / "w3gate"
    data_dir.mkdir()
    server = start_server(env={**chain, **ipfs_env(node)}, data_dir=data_dir)
    rid = pin(server, token, cid, [user.address])
    wait_for(lambda: status_of(server, token, rid)["info"].get("status_details", "").startswith("fetched"))
    assert cid in node.pinned()
    server.stop()
    short = ipfs_env(node, W3GATE_IPFS_FETCH_TIMEOUT="1", W3GATE_IPFS_STALL_TIMEOUT="0.001")
    server = start_server(env={**chain, **short}, data_dir=data_dir)
    wait_for(lambda: server.health().json()["ipfs"]["connected"])
    time.sleep(4)  # several fetch_timeouts
    body = status_of(server, token, rid)
    assert body["status"] == "queued" and body["info"]["status_details"] == "fetched: to be ordered", body
    assert body["info"]["dag_size"] == str(user.cumulative_size(cid))
    assert server.health().json()["ipfs"]["content"] == {"held": 1}
    r = httpx.delete(f"{server.psa_url}/pins/{rid}", headers={"Authorization": token}, timeout=30)
    assert r.status_code == 202, r.text
    wait_for(lambda: cid not in node.pinned())  # tracked to the end: released


def test_an_upload_deleted_before_its_fetch_is_released(start_server, token, ipfs_nodes):
    """The node pins an upload at once; a pin deleted before the fetcher reaches it (here its only fetch slot is
    taken by content nobody serves) still has the node unpin it: w3gate recorded the node's pin as its own."""
    user, node = ipfs_nodes["user"], ipfs_nodes["service"]
    stuck = user.add(random_bytes(10_000), only_hash=True)  # nobody has it: the fetch waits for providers
    server = start_server(env=ipfs_env(node, W3GATE_IPFS_FETCH_CONCURRENCY="1", W3GATE_IPFS_STALL_TIMEOUT="60"))
    pin(server, token, stuck, [user.address])
    wait_for(lambda: server.health().json()["ipfs"]["fetching"] == 1)
    resp = httpx.post(server.base_url + "/api/v0/add", headers={"Authorization": token}, timeout=60,
                      files={"file": ("upload.bin", random_bytes(20_000))}, params={"cid-version": "1"})
    assert resp.status_code == 200, resp.text
    root = order_text(resp.json()["Hash"])
    assert node.has_pin(root)
    r = httpx.delete(f"{server.psa_url}/pins/{resp.headers['X-Pin-Requestid']}", headers={"Authorization": token},
                     timeout=30)
    assert r.status_code == 202, r.text
    wait_for(lambda: not node.has_pin(root), timeout=30)  # released, though never fetched by w3gate


def test_no_node_orders_as_before_and_says_so(start_server, token):
    server = start_server()
    assert "no IPFS node" in wait_for(lambda: "no IPFS node" in server.log_text() and server.log_text())
    assert server.health().json()["ipfs"]["enabled"] is False



def test_restart_reconciles_the_node_and_a_deleted_pin_releases(start_server, token, ipfs_nodes, tmp_path):
    user, node = ipfs_nodes["user"], ipfs_nodes["service"]
    cid = user.add(random_bytes(20_000))
    own = node.add(random_bytes(5_000))  # the operator's own pin on the node: never w3gate's to unpin
    data_dir = tmp_path / "w3gate"
    data_dir.mkdir()
    server = start_server(env=ipfs_env(node), data_dir=data_dir)  # no chain: fetched content stays queued, held
    rid = pin(server, token, cid, [user.address])
    own_rid = pin(server, token, own)  # a user pins it too
    wait_for(lambda: status_of(server, token, rid)["info"].get("dag_size"))
    wait_for(lambda: status_of(server, token, own_rid)["info"].get("dag_size"))
    assert cid in node.pinned()
    server.stop()
    node.call("pin/rm", arg=cid)  # the node lost it while w3gate was down
    server = start_server(env=ipfs_env(node), data_dir=data_dir)
    wait_for(lambda: cid in node.pinned())  # still needed: fetched again
    for requestid in (rid, own_rid):
        r = httpx.delete(f"{server.psa_url}/pins/{requestid}", headers={"Authorization": token}, timeout=30)
        assert r.status_code == 202, r.text
    wait_for(lambda: cid not in node.pinned())  # the last pin gone: released
    wait_for(lambda: "released" in server.log_text() and server.log_text())
    assert own in node.pinned()  # pinned before w3gate asked: left as it was
