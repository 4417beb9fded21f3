"""The chain-client interface between the services and w3gate/crust/client.py: the services take another
client from a factory (no patching), and CrustClient keeps matching what the services call."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from devchain_fixtures import ALICE, REPO

from w3gate.crust.chain import ChainClient
from w3gate.crust.client import CrustClient
from w3gate.crust.settings import load_crust_settings
from w3gate.ordering.connection import ChainConnection
from w3gate.ordering.pipeline import Ordering

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

SETTINGS = load_crust_settings({}, {"W3GATE_CRUST_SEED": ALICE, "W3GATE_CRUST_URL": "ws://127.0.0.1:9"}, REPO)


class StandIn:
    """Another client: built from the settings, never connected here."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.address = "stand-in"


def protocol_members() -> dict[str, Any]:
    names = {n for n in vars(ChainClient) if not n.startswith("_")} | set(ChainClient.__annotations__)
    return {n: getattr(ChainClient, n, None) for n in sorted(names)}


def test_crust_client_has_every_member_the_services_use_with_the_same_parameters():
    client = CrustClient(SETTINGS)  # attributes are set in __init__
    for name, member in protocol_members().items():
        assert hasattr(client, name), name
        if callable(member):
            theirs = list(inspect.signature(getattr(CrustClient, name)).parameters)
            assert theirs == list(inspect.signature(member).parameters), name


async def test_connection_and_tasks_build_their_clients_from_the_factory():
    built: list[StandIn] = []

    def factory(settings: Any) -> Any:
        built.append(StandIn(settings))
        return built[-1]

    conn = ChainConnection(SETTINGS, "test", client_factory=factory)
    assert conn.client is built[0] and built[0].settings is SETTINGS
    ordering = Ordering(None, SETTINGS, client_factory=factory)  # type: ignore[arg-type]  # no store is used to build
    tasks = ordering.tasks()
    assert len(tasks) == 2 and len(built) == 3  # the submitter's and the poller's
    assert ordering.status().account == "stand-in"
    assert isinstance(ChainConnection(SETTINGS, "default").client, CrustClient)
