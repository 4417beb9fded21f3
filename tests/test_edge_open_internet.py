"""The edge on the open internet, over real loopback HTTP from several client addresses (127.0.0.2, .3, .4: a
client socket is bound to one of them): slow bodies cannot lock everyone out, one address cannot hold every
connection, a proxy's clients are counted one by one, the text log cannot be forged, and the operator's
endpoints answer no CORS and count failed token guesses.

A hang is detected with socket timeouts well above the configured ones, never by timing.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import database_url_for_test
from helpers import HEALTH_TOKEN, Server, start_server_process, substrate_token
from test_http_edge import HANG, _closed_by_server, _head, _response

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

TOKEN = substrate_token("//Alice")
ATTACKER, BYSTANDER, PROXY = "127.0.0.2", "127.0.0.3", "127.0.0.4"
METRICS_TOKEN = "operator-metrics-token-for-edge-tests"


def _start(tmp: Path, env: dict[str, str]) -> Server:
    return start_server_process(env=env, data_dir=tmp, database_url=database_url_for_test())


def _connect(server: Server, source: str, timeout: float = HANG) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout, source_address=(source, 0))


def _get(server: Server, source: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    with _connect(server, source) as sock:
        sock.sendall(_head("GET", path, {**(headers or {}), "Connection": "close"}))
        status, resp_headers, _ = _response(sock)
        return status, resp_headers


def _slow_body(server: Server, source: str, headers: dict[str, str], length: int = 200_000,
               first: bytes = b"") -> socket.socket:
    """A connection whose request head has arrived, with ``first`` of its body (of ``length``) and no more yet."""
    sock = _connect(server, source)
    sock.sendall(_head("POST", "/psa/pins", headers, length) + first)
    return sock


def _let_the_server_count_them() -> None:
    """Connections opened together become runnable together, and trio runs such a batch in no fixed order (it
    shuffles or reverses it at random): the one opened last may be counted first. The held connections are given
    time to be counted before the next arrives (CI once saw the sixth answered 200 and a held one refused)."""
    time.sleep(0.5)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``max_connections = 100``, ``body_timeout = 5``: the settings of the slow-body attack."""
    server = _start(tmp_path_factory.mktemp("slow"), {"W3GATE_MAX_CONNECTIONS": "100", "W3GATE_BODY_TIMEOUT": "5"})
    yield server
    server.stop()


class Trickler:
    """``n`` connections from one address, each ``POST /psa/pins`` without a token, ``Content-Length: 200000``,
    then a byte a second; a connection the server ends (or refuses) is opened again at once."""

    def __init__(self, server: Server, source: str, n: int) -> None:
        self.server, self.source, self.n = server, source, n
        self.socks: list[socket.socket | None] = [None] * n
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> socket.socket | None:
        try:
            sock = _slow_body(self.server, self.source, {})
        except OSError:
            return None
        sock.setblocking(False)
        self.opened += 1
        return sock

    def _alive(self, sock: socket.socket) -> bool:
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return False
        except BlockingIOError:
            pass
        except OSError:
            return False
        try:
            sock.send(b"x")
        except BlockingIOError:
            pass
        except OSError:
            return False
        return True

    def _run(self) -> None:
        while not self.stop.is_set():
            for i, sock in enumerate(self.socks):
                if self.stop.is_set():
                    return
                if sock is not None and self._alive(sock):
                    continue
                if sock is not None:
                    sock.close()
                self.socks[i] = self._open()
            self.stop.wait(1.0)

    def __enter__(self) -> Trickler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=HANG)
        assert not self.thread.is_alive()
        _close_all([sock for sock in self.socks if sock is not None])


def _close_all(socks: list[socket.socket]) -> None:
    """Close ``socks`` and give the server a moment to see them go (traffic shape, not a check)."""
    for sock in socks:
        sock.close()
    time.sleep(0.5)


def test_slow_bodies_without_a_token_cannot_lock_healthz_out(slow_server: Server) -> None:
    """110 slow-body connections from one address at ``max_connections = 100``: another address still gets 200
    from ``/healthz`` every time (before, 503 most of the time until the bodies' ``body_timeout``)."""
    with Trickler(slow_server, ATTACKER, 110):
        time.sleep(2)  # the flood is in place (traffic shape, not a check)
        statuses = []
        for _ in range(24):
            statuses.append(_get(slow_server, BYSTANDER, "/healthz")[0])
            time.sleep(0.5)
    assert statuses == [200] * len(statuses), f"{statuses.count(200)} of {len(statuses)} got 200: {statuses}"


def test_a_head_over_max_body_bytes_is_answered_413_from_its_head(slow_server: Server) -> None:
    with _slow_body(slow_server, "127.0.0.9", {"Authorization": TOKEN}, length=10_000_000) as sock:
        status, headers, _ = _response(sock)
        assert status == 413 and headers.get("connection", "").lower() == "close"


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Long body timeouts (``body_timeout = 300``), a 1 s first byte, at most 20 connections, 5 per address;
    127.0.0.4 is a trusted proxy naming its clients in ``X-Forwarded-For``."""
    env = {"W3GATE_MAX_CONNECTIONS": "20", "W3GATE_BODY_TIMEOUT": "300", "W3GATE_BODY_FIRST_BYTE_TIMEOUT": "1",
           "W3GATE_MAX_CONNECTIONS_PER_ADDRESS": "5", "W3GATE_TRUSTED_PROXIES": PROXY,
           "W3GATE_TRUSTED_PROXY_HEADER": "X-Forwarded-For"}
    server = _start(tmp_path_factory.mktemp("patient"), env)
    yield server
    server.stop()


def test_a_tokenless_post_is_answered_from_its_head(patient: Server) -> None:
    """401 before any body byte is sent (the body is not waited for), and the connection is closed."""
    with _slow_body(patient, ATTACKER, {}, length=200_000) as sock:
        status, headers, body = _response(sock)
        assert status == 401 and b'"UNAUTHORIZED"' in body
        assert headers.get("connection", "").lower() == "close"
        assert _closed_by_server(sock)


def test_a_body_whose_first_byte_never_comes_gets_408(patient: Server) -> None:
    """A token's POST whose body never starts is answered 408 at ``body_first_byte_timeout`` (1 s here), not
    held for ``body_timeout`` (300 s)."""
    with _slow_body(patient, ATTACKER, {"Authorization": TOKEN}, length=1000) as sock:
        status, headers, body = _response(sock)
        assert status == 408 and b'"REQUEST_TIMEOUT"' in body
        assert headers.get("connection", "").lower() == "close"


def test_one_address_may_hold_max_connections_per_address(patient: Server) -> None:
    """The sixth connection from one address is refused with 429 (five is its share); another address is not."""
    held = [_slow_body(patient, ATTACKER, {"Authorization": TOKEN}, length=1000, first=b"{") for _ in range(5)]
    _let_the_server_count_them()
    try:
        with _connect(patient, ATTACKER) as extra:
            extra.sendall(_head("GET", "/healthz", {}))
            status, headers, body = _response(extra)
            assert status == 429 and b'"TOO_MANY_CONNECTIONS"' in body and headers.get("retry-after")
            assert _closed_by_server(extra)
        assert _get(patient, BYSTANDER, "/healthz")[0] == 200
        assert "max_connections_per_address (5): its new connections get 429" in patient.log_text()
    finally:
        _close_all(held)


def test_a_trusted_proxys_clients_are_counted_each_not_the_proxy(patient: Server) -> None:
    """Through a trusted proxy every connection comes from its address: the proxy is not capped, each client it
    names is (five requests in flight at most)."""
    client = {"Authorization": TOKEN, "X-Forwarded-For": "203.0.113.7"}
    held = [_slow_body(patient, PROXY, client, length=1000, first=b"{") for _ in range(5)]
    _let_the_server_count_them()
    try:
        with _slow_body(patient, PROXY, client, length=1000, first=b"{") as sixth:
            status, headers, body = _response(sixth)
            assert status == 429 and b'"TOO_MANY_CONNECTIONS"' in body
            assert headers.get("connection", "").lower() == "close"
        for other in ("203.0.113.8", "203.0.113.9"):  # the proxy's 7th and 8th connections: other clients
            assert _get(patient, PROXY, "/healthz", {"X-Forwarded-For": other})[0] == 200
    finally:
        _close_all(held)


def test_connections_waiting_for_a_body_are_evicted_when_all_are_busy(patient: Server) -> None:
    """20 connections from four addresses (5 each), each in the middle of a body from a known token: a new client
    is let in, and the one waiting the longest is closed to make room (before: 503)."""
    waiting = []
    try:
        for source in ("127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"):
            for _ in range(5):
                waiting.append(_slow_body(patient, source, {"Authorization": TOKEN}, length=1000, first=b'{"cid": '))
        time.sleep(0.5)  # all heads have arrived (traffic shape, not a check)
        assert _get(patient, BYSTANDER, "/healthz")[0] == 200
        assert _closed_by_server(waiting[0])
    finally:
        _close_all(waiting)


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A text log, ``metrics_token`` set, three failed sign-ins a minute per address."""
    env = {"W3GATE_METRICS_TOKEN": METRICS_TOKEN, "W3GATE_LIMITS_AUTH_FAILURES_PER_MINUTE": "3",
           "W3GATE_LOG_FORMAT": "text"}
    server = _start(tmp_path_factory.mktemp("operator"), env)
    yield server
    server.stop()


def test_the_text_log_cannot_be_forged(operator: Server) -> None:
    """A path with ``%0a``, ``%0d`` and ESC (``%1b``) stays on its access line, escaped; nothing reaches the
    terminal raw."""
    forged = "FORGED-LINE 2026-01-01 00:00:00,000 INFO w3gate.access: GET /psa/pins 200"
    path = f"/nothing%0a{forged.replace(' ', '%20')}%0d%1b[2J%1b]0;title%07"
    assert _get(operator, BYSTANDER, path)[0] == 404
    deadline = time.monotonic() + HANG
    while "/nothing" not in operator.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    raw = operator.log_path.read_bytes()
    assert b"\x1b" not in raw and b"\r" not in raw and b"\x07" not in raw
    lines = operator.log_text().splitlines()
    assert not any(line.startswith("FORGED-LINE") for line in lines)
    line = next(line for line in lines if "/nothing" in line)
    assert "w3gate.access: GET /nothing\\x0aFORGED-LINE" in line and "\\x0d\\x1b[2J" in line, line


def test_operator_endpoints_answer_no_cors(operator: Server) -> None:
    origin = {"Origin": "https://evil.example"}
    for path, headers in (("/healthz", {}), ("/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"}),
                          ("/healthz", {"Authorization": f"Bearer {HEALTH_TOKEN}"})):
        resp = httpx.get(operator.base_url + path, headers={**origin, **headers}, timeout=HANG)
        assert resp.status_code == 200
        assert not [h for h in resp.headers if h.lower().startswith("access-control-")], resp.headers
        pre = httpx.options(operator.base_url + path, headers={**origin, "Access-Control-Request-Method": "GET",
                                                               "Access-Control-Request-Headers": "authorization"})
        assert not [h for h in pre.headers if h.lower().startswith("access-control-")], pre.headers
        assert pre.status_code >= 400
    pre = httpx.options(operator.psa_url + "/pins", headers={**origin, "Access-Control-Request-Method": "GET"})
    assert pre.headers["access-control-allow-origin"] == "*"  # the API itself still answers CORS


def test_operator_token_guesses_count_as_failed_sign_ins(operator: Server) -> None:
    """Wrong ``metrics_token`` and ``health_token`` guesses use up the address's ``auth_failures_per_minute``
    (3 here), as failed W3Auth tokens do: then 429, for the right token too (no oracle left), while another
    address is unaffected."""
    def metrics(source: str, token: str) -> int:
        return _get(operator, source, "/metrics", {"Authorization": f"Bearer {token}"})[0]

    assert metrics(ATTACKER, "guess-1") == 401
    assert _get(operator, ATTACKER, "/healthz", {"Authorization": "Bearer guess-2"})[0] == 200  # no details
    assert metrics(ATTACKER, "guess-3") == 401
    assert metrics(ATTACKER, "guess-4") == 429
    assert _get(operator, ATTACKER, "/healthz", {"Authorization": "Bearer guess-5"})[0] == 429
    assert metrics(ATTACKER, METRICS_TOKEN) == 429
    assert _get(operator, ATTACKER, "/psa/pins", {"Authorization": "Bearer sub-nobody:0x00"})[0] == 429
    assert _get(operator, ATTACKER, "/healthz")[0] == 200  # the public probe, no token: never refused
    assert metrics(BYSTANDER, METRICS_TOKEN) == 200


def test_a_traceback_cannot_forge_a_line() -> None:
    """An exception's message (which may quote a client) stays inside its indented traceback, escaped."""
    import io
    import logging

    from w3gate.logs import TEXT_FORMAT, TextFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter(TEXT_FORMAT))
    logger = logging.getLogger("w3gate.test.forging")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise ValueError("bad value\n2026-01-01 00:00:00,000 INFO w3gate.access: GET / 200\x1b[2J")
    except ValueError:
        logger.exception("internal error on %s", "/x\r\ny")
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("internal error on /x\\x0d\\x0ay")
    assert all(line.startswith("  ") for line in lines[1:]) and "\x1b" not in out.getvalue()
