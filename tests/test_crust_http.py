"""End to end over HTTP: w3gate serve (subprocess) ordering on the real Crust runtime."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from devchain_fixtures import ALICE, crust_env
from helpers import wait_for

pytestmark = pytest.mark.devchain


def pin(server: Any, token: str, cid: str) -> str:
    r = httpx.post(f"{server.psa_url}/pins", json={"cid": cid}, headers={"Authorization": token})
    assert r.status_code == 202, r.text
    return r.json()["requestid"]


def status_of(server: Any, token: str, requestid: str) -> dict[str, Any]:
    r = httpx.get(f"{server.psa_url}/pins/{requestid}", headers={"Authorization": token})
    assert r.status_code == 200, r.text
    return r.json()


def health(server: Any) -> dict[str, Any]:
    return server.health().json()


def cid_for(tag: str) -> str:
    # a real CIDv1 (raw, sha2-256) so the API accepts it
    from multiformats import CID, multihash

    return str(CID("base32", 1, "raw", multihash.digest(f"{tag}{time.time_ns()}".encode(), "sha2-256")))


def test_pin_is_ordered_then_pinned_with_info(start_server, token, devchain, relay, ordering_account):
    server = start_server(env=crust_env(relay))
    cid = cid_for("http")
    rid = pin(server, token, cid)
    wait_for(lambda: status_of(server, token, rid)["status"] == "pinning")
    assert devchain.records([cid])[cid] is not None  # the order is on chain
    devchain.set_replicas(cid, 2, 9_000_000)
    body = wait_for(lambda: (s := status_of(server, token, rid))["status"] == "pinned" and s)
    assert body["info"]["replicas"] == "2"
    assert body["info"]["expires_at"] == "9000000"
    assert body["info"]["file_size"] == str(2 * 1024**3)
    ordering = health(server)["ordering"]
    assert ordering["ordering_enabled"] is True and ordering["account"] == ordering_account
    assert ALICE not in server.log_text() and ALICE not in str(health(server))


def test_low_balance_keeps_pins_queued(start_server, token, devchain, relay, ordering_account):
    devchain.fund(ordering_account, 10**6)
    server = start_server(env=crust_env(relay))
    rid = pin(server, token, cid_for("poor"))
    wait_for(lambda: health(server)["ordering"]["below_minimum"])
    time.sleep(1)
    assert status_of(server, token, rid)["status"] == "queued"
    assert server.proc.poll() is None
    assert relay.submitted == []
    assert "below the minimum" in server.log_text()


def test_sigkill_mid_order_then_restart_orders_each_cid_once(start_server, token, devchain, relay, ordering_account):
    relay.hold = True  # sent, not yet in a block
    server = start_server(env=crust_env(relay))
    cids = [cid_for(f"kill{i}") for i in range(3)]
    rids = [pin(server, token, c) for c in cids]
    wait_for(lambda: relay.held, timeout=60)
    server.kill()
    relay.hold = False
    relay.release()  # the pool includes what the dead process sent
    again = start_server(env=crust_env(relay), data_dir=server.data_dir)
    wait_for(lambda: all(status_of(again, token, r)["status"] == "pinning" for r in rids))
    assert devchain.orders_of(set(cids)) == {c: 1 for c in cids}


def test_sigkill_before_inclusion_resends_the_recorded_bytes(start_server, token, devchain, relay, ordering_account):
    relay.hold = True
    server = start_server(env=crust_env(relay))
    cids = [cid_for(f"lost{i}") for i in range(2)]
    rids = [pin(server, token, c) for c in cids]
    wait_for(lambda: relay.held, timeout=60)
    server.kill()
    lost = list(relay.held)
    relay.held.clear()  # that node's pool is gone
    relay.hold = False
    again = start_server(env=crust_env(relay), data_dir=server.data_dir)
    wait_for(lambda: all(status_of(again, token, r)["status"] == "pinning" for r in rids))
    assert devchain.orders_of(set(cids)) == {c: 1 for c in cids}
    assert relay.submitted[-1] == lost[0]  # re-sent byte for byte, not re-signed


def test_sigterm_during_a_batch_exits_0_then_each_cid_is_ordered_once(start_server, token, devchain, relay,
                                                                       ordering_account):
    relay.hold = True  # the batch is sent and waiting for its block when the signal comes
    server = start_server(env=crust_env(relay))
    cids = [cid_for(f"term{i}") for i in range(3)]
    rids = [pin(server, token, c) for c in cids]
    wait_for(lambda: relay.held, timeout=60)
    started = time.monotonic()
    assert server.stop() == 0, server.log_text()[-3000:]
    assert time.monotonic() - started < 10
    relay.hold = False
    relay.release()
    again = start_server(env=crust_env(relay), data_dir=server.data_dir)
    wait_for(lambda: all(status_of(again, token, r)["status"] == "pinning" for r in rids))
    assert devchain.orders_of(set(cids)) == {c: 1 for c in cids}


def test_chain_killed_and_restarted_api_keeps_serving_and_ordering_resumes(start_server, token, devchain, relay,
                                                                           ordering_account):
    server = start_server(env=crust_env(relay))
    first = pin(server, token, cid_for("before"))
    wait_for(lambda: status_of(server, token, first)["status"] == "pinning")
    devchain.stop()  # the chain process is killed
    wait_for(lambda: not health(server)["ordering"]["chain_connected"], timeout=30)
    second = pin(server, token, cid_for("during"))  # the API is unaffected
    time.sleep(1)
    assert status_of(server, token, second)["status"] == "queued"
    assert server.proc.poll() is None
    devchain.start()
    devchain.fund(ordering_account, 10**18)
    devchain.market_on()
    wait_for(lambda: status_of(server, token, second)["status"] == "pinning", timeout=90)


def test_one_content_in_several_text_forms_is_one_order_on_chain(start_server, token, other_token, devchain,
                                                                 relay, ordering_account):
    from multiformats import CID, multihash

    content = CID("base32", 1, "dag-pb", multihash.digest(f"forms{time.time_ns()}".encode(), "sha2-256"))
    v0 = str(content.set(version=0, base="base58btc"))
    forms = [str(content), content.encode("base36"), v0, str(content).upper(), content.encode("base58btc")]
    server = start_server(env=crust_env(relay))
    pins = [(t, pin(server, t, f)) for t, f in zip([token, other_token] * 3, forms, strict=False)]
    wait_for(lambda: all(status_of(server, t, r)["status"] == "pinning" for t, r in pins))
    # one paid order, in the text Crust's storage nodes report a dag-pb/sha2-256 file by (go-cid: v0)
    assert devchain.orders_of(set(forms)) == {f: int(f == v0) for f in forms}
    assert [status_of(server, t, r)["pin"]["cid"] for t, r in pins] == forms
