"""The ordering tasks' timing, run under trio's MockClock: the real back-off, deadline and leader-lease code,
in virtual seconds, so that what takes minutes on a clock (reconnect_max, call_timeout, leader_timeout) is
checked exactly in well under a second.

The clock jumps ahead only once the run has been idle for ``IDLE`` real seconds: a chain call runs in a worker
thread, during which the run is idle too, and an immediate jump would fire its deadline while it works.
The chain client here is a stand-in with the client interface's attributes: what is tested is the service
code around it (w3gate.ordering.connection.ChainConnection, w3gate.ordering.leader.Leadership), which only calls it.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from w3gate.crust.errors import ChainUnavailable
from w3gate.crust.settings import CrustSettings
from w3gate.crust.typedefs import UnsupportedRuntime
from w3gate.metrics import Metrics
from w3gate.ordering.connection import ChainConnection
from w3gate.ordering.leader import LEADER, STANDBY, Leadership

IDLE = 0.03  # real seconds of idleness before the clock jumps to the next deadline



class Stop(BaseException):
    """Ends a task's endless loop from inside (keep_running retries every Exception)."""


@pytest.fixture
def mock_clock() -> MockClock:
    """pytest-trio runs a test that takes this fixture on this clock."""
    return MockClock(autojump_threshold=IDLE)


class StandInClient:
    """The chain client's attributes; ``connect`` fails ``failures`` times first; ``blocking`` methods wait for
    ``abort`` (a node that never answers)."""

    address = "cTzStandIn"
    spec_version = 4
    order_call = "place_storage_order"
    files_map = "files_v2"
    market_switch = None
    max_file_size = 10**9
    era_period = 600
    renewal = "reorder"

    def __init__(self, settings: CrustSettings, failures: int = 0) -> None:
        self.failures = failures
        self.connects = 0
        self.closes = 0
        self._connected = False
        self.aborted = threading.Event()

    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        self.connects += 1
        if self.connects <= self.failures:
            raise ChainUnavailable("cannot reach the node")
        self._connected = True

    def close(self) -> None:
        self.closes += 1
        self._connected = False

    def abort(self) -> None:
        self.aborted.set()

    def never_answers(self) -> None:
        self.aborted.wait(30)  # real seconds: the test fails rather than hangs if abort() is never called


def connection(client: StandInClient, **settings: Any) -> tuple[ChainConnection, Metrics]:
    metrics = Metrics()
    conn = ChainConnection(CrustSettings(**settings), "submitter", client_factory=lambda s: client, metrics=metrics)
    return conn, metrics


def last_error(conn: ChainConnection) -> str | None:
    """The text /healthz shows as the connection's last error."""
    return conn.status.error.text if conn.status.error else None


@pytest.mark.no_database
async def test_reconnect_back_off_doubles_up_to_reconnect_max_and_resets_on_success(mock_clock: MockClock) -> None:
    client = StandInClient(CrustSettings(), failures=7)
    conn, _ = connection(client, reconnect_max=5.0)
    start = trio.current_time()
    assert await conn.ensure() is client
    # 0.5, 1, 2, 4, then reconnect_max (5) for every failure in a row after that
    assert trio.current_time() - start == pytest.approx(0.5 + 1 + 2 + 4 + 5 + 5 + 5)
    assert client.connects == 8 and conn.status.connected and conn.status.spec_version == 4
    assert conn.status.order_call == "Market.place_storage_order" and last_error(conn) == "cannot reach the node"
    # the next loss waits the first step again: a success resets the back-off
    client.failures = client.connects + 1
    await conn.lost(ChainUnavailable("dropped"))
    start = trio.current_time()
    await conn.ensure()
    assert trio.current_time() - start == pytest.approx(1.0)  # lost() waited 0.5, one failure in ensure() 1
    assert not client.aborted.is_set()


@pytest.mark.no_database
async def test_a_call_the_node_never_answers_ends_at_call_timeout_and_aborts_the_socket(mock_clock: MockClock) -> None:
    client = StandInClient(CrustSettings())
    conn, metrics = connection(client, call_timeout=120.0)
    start = trio.current_time()
    with pytest.raises(ChainUnavailable, match="longer than call_timeout"):
        await conn.call(client.never_answers)
    assert trio.current_time() - start == pytest.approx(120.0)
    assert client.aborted.is_set()  # the worker thread was released: the socket is shut
    assert metrics.chain_errors.labels("never_answers", "timeout")._value.get() == 1


@pytest.mark.no_database
async def test_keep_running_retries_errors_after_the_back_off_and_waits_what_once_asks(mock_clock: MockClock) -> None:
    client = StandInClient(CrustSettings())
    conn, _ = connection(client, reconnect_max=60.0)
    runs: list[float] = []

    async def once() -> float:
        runs.append(trio.current_time())
        if len(runs) <= 2:
            raise ValueError("a record that does not decode")
        if len(runs) == 4:
            raise Stop
        return 10.0

    with pytest.raises(Stop):
        await conn.keep_running(once)
    # each error: close, back-off 0.5 s, reconnect (which resets the back-off); then once's own 10 s
    assert runs == pytest.approx([0.0, 0.5, 1.0, 11.0])
    assert client.closes == 2 and client.connects == 3
    assert last_error(conn) == "submitter: ValueError: a record that does not decode"


@pytest.mark.no_database
async def test_an_unsupported_runtime_waits_reconnect_max_before_trying_again(mock_clock: MockClock) -> None:
    client = StandInClient(CrustSettings())
    conn, _ = connection(client, reconnect_max=30.0)
    runs: list[float] = []

    async def once() -> float:
        runs.append(trio.current_time())
        if len(runs) == 1:
            raise UnsupportedRuntime("spec 99 has no Market.place_storage_order")
        raise Stop

    with pytest.raises(Stop):
        await conn.keep_running(once)
    assert runs == pytest.approx([0.0, 30.0])
    assert (last_error(conn) or "").startswith("unsupported runtime: spec 99")


class StandInLock:
    """The leader's lock: ``holds`` answers the given answers in turn (and records when it was asked)."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.asked: list[float] = []

    async def holds(self, deadline: float) -> bool:
        self.asked.append(trio.current_time())
        return self.answers.pop(0)


async def test_a_leader_starts_after_the_grace_and_steps_down_at_the_first_failed_check(
        mock_clock: MockClock, db: Any) -> None:
    leadership = Leadership(db, timeout=8.0)  # check every 1 s, a check may take 2 s
    lock = StandInLock([True, True, True, False])
    worked: list[float] = []
    cancelled: list[float] = []

    async def chain_work() -> None:
        worked.append(trio.current_time())
        try:
            await trio.sleep_forever()
        finally:
            cancelled.append(trio.current_time())

    start = trio.current_time()
    await leadership._lead([chain_work], lock)  # type: ignore[arg-type]
    # the grace a cut-off predecessor needs to notice (check_every + check_time = 3 s), then a check a second
    assert [t - start for t in lock.asked] == pytest.approx([3.0, 4.0, 5.0, 6.0])
    assert [t - start for t in worked] == pytest.approx([3.0])
    assert [t - start for t in cancelled] == pytest.approx([6.0])  # the first failed check cancels the work
    assert leadership.role == STANDBY and leadership.lost


async def test_a_leader_whose_lock_is_gone_after_the_grace_never_starts_the_work(
        mock_clock: MockClock, db: Any) -> None:
    leadership = Leadership(db, timeout=4.0)  # grace: 0.5 + 1 s
    lock = StandInLock([False])
    start = trio.current_time()
    await leadership._lead([trio.sleep_forever], lock)  # type: ignore[arg-type]
    assert [t - start for t in lock.asked] == pytest.approx([1.5])
    assert leadership.lost and leadership.role != LEADER
