"""Signature checks are shared fairly between client addresses, over real HTTP on loopback.

A chain plugin (laid out as ``pip install --target`` leaves it) holds the check of any ``flood*`` address
until the test creates a release file, and writes every address it checks, in order, to a file: so the
order in which w3gate admits checks is counted, never timed. The flood comes from 127.0.0.2, the other
user from 127.0.0.1 (both loopback addresses on Linux).
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing
from helpers import bearer, start_server_process
from test_plugins_discovery import make_plugin

from w3gate.w3auth.fairgate import FairGate

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

HOLDING_PLUGIN = '''
import os, time
from w3gate.hookspecs import Identity, InvalidSignature, SimpleChain, hookimpl

HERE = os.path.dirname(os.path.abspath(__file__))

def verify(credentials):
    with open(os.path.join(HERE, "checked"), "a") as f:
        f.write(credentials.address + "\\n")
    if credentials.address.startswith("flood"):
        while not os.path.exists(os.path.join(HERE, "release")):
            time.sleep(0.01)
        # a released flood check still takes a while, so that a check admitted beside it has written its line
        # before the next one can be admitted: the file's order is then the admission order, whatever the
        # scheduling of the worker threads
        time.sleep(0.3)
        raise InvalidSignature("a throwaway signature")
    return Identity("gate", credentials.address, credentials.address)

@hookimpl
def w3gate_chains(settings):
    return [SimpleChain("gate", ("gate",), verify)]
'''


def get_pins(url: str, address: str, source: str) -> int:
    """The status of ``GET /psa/pins`` with a gate- token for ``address``, sent from ``source``."""
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30) as client:
        response = client.get(url + "/psa/pins", headers={"Authorization": bearer(f"gate-{address}:sig")})
    if response.status_code == 429:
        assert response.json()["error"]["reason"] == "TOO_MANY_REQUESTS"
    return response.status_code


@pytest.fixture
def holding_server(tmp_path: Path, request: pytest.FixtureRequest):
    plugins = tmp_path / "plugins"
    make_plugin(plugins, HOLDING_PLUGIN, ep_name="gate")
    env = {"W3GATE_PLUGIN_DIR": str(plugins), "W3GATE_AUTH_CHECK_THREADS": "2", **getattr(request, "param", {})}
    (tmp_path / "data").mkdir()
    server = start_server_process(data_dir=tmp_path / "data", env=env)
    pool = concurrent.futures.ThreadPoolExecutor(16)
    try:
        yield server.base_url, plugins, pool
    finally:
        (plugins / "release").touch()
        pool.shutdown(wait=True)
        server.stop()


def checked(plugins: Path) -> list[str]:
    path = plugins / "checked"
    return path.read_text().split() if path.exists() else []


def hold_both_workers(url: str, plugins: Path, pool: concurrent.futures.ThreadPoolExecutor) -> list:
    held = [pool.submit(get_pins, url, f"floodheld{i}", "127.0.0.2") for i in range(2)]
    deadline = time.monotonic() + 30
    while len(checked(plugins)) < 2:  # both worker threads are now inside a held check
        assert time.monotonic() < deadline, "the held checks never started"
        time.sleep(0.02)
    return held


def test_another_address_is_admitted_ahead_of_a_flooding_address_backlog(holding_server):
    url, plugins, pool = holding_server
    held = hold_both_workers(url, plugins, pool)
    queued = [pool.submit(get_pins, url, f"flood{i}", "127.0.0.2") for i in range(8)]
    time.sleep(1)  # lets the 8 reach w3gate's queue first (first come, first served would put them ahead)
    user = pool.submit(get_pins, url, "newuser", "127.0.0.1")
    time.sleep(0.5)
    assert not user.done()  # it waits too: both workers are held
    (plugins / "release").touch()
    assert user.result() == 200
    assert [f.result() for f in held + queued] == [401] * 10
    order = checked(plugins)
    assert sorted(order[:2]) == ["floodheld0", "floodheld1"]
    # the two freed workers go to the two waiting addresses in turn: one flood check, then the new user
    assert order.index("newuser") <= 3, order
    assert len(order) == 11


@pytest.mark.parametrize("holding_server", [{"W3GATE_AUTH_QUEUE_PER_CLIENT": "3"}], indirect=True)
def test_one_address_may_have_only_its_share_of_checks_waiting(holding_server):
    url, plugins, pool = holding_server
    held = hold_both_workers(url, plugins, pool)
    waiting = [pool.submit(get_pins, url, f"flood{i}", "127.0.0.2") for i in range(4)]
    first = next(concurrent.futures.as_completed(waiting, timeout=20))  # one over the share: answered at once
    assert first.result() == 429
    assert sum(f.done() for f in waiting) == 1  # the other three wait
    user = pool.submit(get_pins, url, "newuser", "127.0.0.1")  # another address has its own share
    (plugins / "release").touch()
    assert user.result() == 200
    assert sorted(f.result() for f in held + waiting) == [401] * 5 + [429]
    assert len(checked(plugins)) == 2 + 3 + 1  # the refused one cost no check


async def test_a_waiting_check_given_up_frees_its_place():
    """A request cancelled while its check waits (the client went away) leaves no slot or queue entry behind,
    also when it is cancelled as the slot is handed to it (trio runs the two wake-ups in either order)."""
    gate = FairGate(slots=1, per_client=2)
    release = trio.Event()
    admitted: list[str] = []

    async def check(client: str, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            async with gate.admitted(client):
                admitted.append(client)
                await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(check, "a")
        await trio.testing.wait_all_tasks_blocked()
        gone, handed = trio.CancelScope(), trio.CancelScope()
        nursery.start_soon(check, "b", gone)
        nursery.start_soon(check, "c", handed)
        await trio.testing.wait_all_tasks_blocked()
        assert gate.waiting == 2
        gone.cancel()  # b gives up while waiting
        await trio.testing.wait_all_tasks_blocked()
        assert gate.waiting == 1
        release.set()  # a's slot goes to c ...
        handed.cancel()  # ... which is cancelled in the same turn: the slot must come back either way
        await trio.testing.wait_all_tasks_blocked()
    assert admitted == ["a"]
    assert gate.waiting == 0
    async with gate.admitted("d"):  # the one slot is free again
        admitted.append("d")
    assert admitted == ["a", "d"]
