"""The chain client's error branches against the fake node at the JSON-RPC seam (tests/fake_chain.py): the real
client, with the rocky runtime's real metadata and answers, unpatched, in a second, without chopsticks.

The fast versions of what the devchain tests show through their relay (test_crust_money's JSON-RPC errors and
dropped sockets, test_lifecycle's node that never answers); those stay in the slow tier, on the real runtimes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from fake_chain import ALICE, FakeNode

from w3gate.crust.client import CrustClient
from w3gate.crust.errors import ChainUnavailable, TxRejected
from w3gate.crust.settings import CrustSettings, load_crust_settings
from w3gate.ordering.connection import ChainConnection

pytestmark = pytest.mark.no_database

ERROR = {"error": {"code": -32603, "message": "Internal error"}}


@pytest.fixture
def node() -> Iterator[FakeNode]:
    fake = FakeNode("rocky")
    try:
        yield fake
    finally:
        fake.stop()


def settings(node: FakeNode, **extra: str) -> CrustSettings:
    env = {"W3GATE_CRUST_SEED": ALICE, "W3GATE_CRUST_URL": node.url, "W3GATE_CRUST_RPC_TIMEOUT": "1",
           "W3GATE_CRUST_RECONNECT_MAX": "1", **extra}
    return load_crust_settings({}, env, Path.cwd())


@pytest.fixture
def client(node: FakeNode) -> Iterator[CrustClient]:
    c = CrustClient(settings(node))
    c.connect()
    try:
        yield c
    finally:
        c.close()


def test_the_client_reads_the_runtime_from_its_metadata(client: CrustClient) -> None:
    """What the client chooses from rocky's metadata (spec 4): the 3-argument order call, Market.Files."""
    assert client.spec_version == 4
    assert (client.order_call, client.files_map, client.renewal) == ("place_storage_order", "Files", "reorder")
    assert client.max_file_size == 32 * 2**30
    assert client.head() == 1 and client.files(["bafyfakechainnotstored"]) == {"bafyfakechainnotstored": None}
    assert client.fees() == {"FileBaseFee": 0, "FileByteFee": 10000, "FileKeysCountFee": 1000000}


@pytest.mark.parametrize("fault", [ERROR, "drop", "stall"], ids=["json-rpc-error", "dropped-socket", "no-answer"])
def test_a_failed_call_is_chain_unavailable_and_the_client_reconnects(node: FakeNode, client: CrustClient,
                                                                    fault: object) -> None:
    node.fail_next("chain_getHeader", fault)
    with pytest.raises(ChainUnavailable, match="chain_getHeader"):
        client.head()  # a node that never answers: ended by rpc_timeout (1 s)
    assert not client.connected  # the connection is not trusted again
    client.connect()
    assert client.head() == 1


def test_a_node_unreachable_at_connect_is_chain_unavailable_without_credentials(node: FakeNode) -> None:
    c = CrustClient(settings(node, W3GATE_CRUST_URL=node.url.replace("ws://", "ws://user:s3cret@")))
    node.fail_next("system_chain", "drop")
    with pytest.raises(ChainUnavailable, match="cannot reach") as caught:
        c.connect()
    assert "s3cret" not in str(caught.value)


def test_a_rejected_submission_is_tx_rejected_with_the_nodes_reason(node: FakeNode, client: CrustClient) -> None:
    node.fail_next("author_submitExtrinsic", {"error": {"code": 1010, "message": "Invalid Transaction",
                                                        "data": "Transaction has a bad signature"}})
    with pytest.raises(TxRejected, match="bad signature"):
        client.submit("0x00")
    assert client.submit("0x0102").startswith("0x")  # the next one is taken
    assert node.submitted == ["0x00", "0x0102"]


async def test_json_rpc_errors_nonsense_and_dropped_sockets_never_stop_the_task(node: FakeNode) -> None:
    """The service's loop around the client (ChainConnection.keep_running): each fault is said, backed off from,
    and the task carries on to a good answer."""
    conn = ChainConnection(settings(node), "poller")
    said: list[str] = []  # every error /healthz's last_error showed, in turn
    show = conn.error
    conn.error = lambda text: (said.append(text), show(text))  # type: ignore[method-assign]
    heads: list[int] = []

    async def once() -> float:
        if "chain_getHeader" not in node.faults:  # connected: the faults come now (reconnecting takes some)
            node.fail_next("chain_getHeader", ERROR, {"result": "nonsense"}, "drop")
        heads.append(await conn.call(conn.client.head))
        raise Done

    with trio.fail_after(20), pytest.raises(Done):
        await conn.keep_running(once)
    assert heads == [1] and node.faults["chain_getHeader"] == []  # every fault answered, then a good head
    assert any("Internal error" in text for text in said)
    assert any("TypeError: string indices" in text for text in said)  # nonsense: an unexpected error, said
    assert any("JSONDecodeError" in text for text in said)  # the closed socket
    assert conn.status.connected and node.calls["system_chain"] >= 2  # it reconnected


class Done(BaseException):
    """Ends keep_running's endless loop from inside (it retries every Exception)."""
