"""Connections at the edge, over real loopback HTTP: early answers never hang (the connection is closed after
them, the body not waited for), connections that must end are closed by the server (``recv`` returns ``b""``),
idle and slow ones time out, a flood of connections cannot keep ``/healthz`` out, and every request leaves one
access log line without its token.

A hang is detected with socket (or client) timeouts well above the configured ones, never by timing.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import database_url_for_test
from helpers import Server, start_server_process, substrate_token

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

HANG = 8.0  # seconds of silence that count as a hang (the server's own timeouts here are 1 s)
TOKEN = substrate_token("//Alice")
CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
SEQUENCES = 100
PAUSE = 0.03  # seconds a raw client waits in the middle of a body

# name -> (method, path, headers, body): each answered before its body is read
EARLY = {
    "401": ("POST", "/psa/pins", {}, b'{"cid": "' + CID.encode() + b'", "name": "' + b"n" * 200_000 + b'"}'),
    "413": ("POST", "/psa/pins", {"Authorization": TOKEN}, b'{"meta": {"k": "' + b"v" * 300_000 + b'"}}'),
    "405": ("PUT", "/psa/pins", {"Authorization": TOKEN}, b'{"cid": "' + CID.encode() + b'", "name": "' + b"n" * 20_000
            + b'"}'),
    "404": ("POST", "/nothing-here", {}, b"x" * 20_000),
}


def _start(tmp: Path, env: dict[str, str], command: list[str] | None = None) -> Server:
    return start_server_process(env=env, data_dir=tmp, database_url=database_url_for_test(), command=command)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with short timeouts: idle connections 1 s, request bodies 1 s."""
    server = _start(tmp_path_factory.mktemp("edge"), {"W3GATE_KEEP_ALIVE_TIMEOUT": "1", "W3GATE_BODY_TIMEOUT": "1"})
    yield server
    server.stop()


def _connect(server: Server) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=HANG)
    return sock


def _head(method: str, path: str, headers: dict[str, str], body_length: int | None = None,
          version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response read off ``sock`` (Content-Length framed); socket.timeout if it never comes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of a response")
        rest += chunk
    return int(status_line.split()[1]), headers, rest


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed (recv returns b''); socket.timeout if it keeps the connection open."""
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True


def _early_then_normal(server: Server, name: str) -> str:
    """One sequence on one connection: the early answer, then (unless it closed) ``GET /healthz``. The body
    pauses after its first KB, as on a slow network, so that its rest arrives after an early answer."""
    method, path, headers, body = EARLY[name]
    with _connect(server) as sock:
        try:
            sock.sendall(_head(method, path, headers, len(body)) + body[:1000])
            time.sleep(PAUSE)  # the rest of the body comes after the app could answer (traffic shape, not a check)
            sock.sendall(body[1000:])
            status, resp_headers, _ = _response(sock)
            assert str(status) == name, (name, status)
            if resp_headers.get("connection", "").lower() == "close":
                return "closed" if _closed_by_server(sock) else "open"
            sock.sendall(_head("GET", "/healthz", {}))
            status, _, _ = _response(sock)
            return "reused" if status == 200 else f"status {status}"
        except TimeoutError:
            return "hang"


@pytest.mark.parametrize("name", list(EARLY))
def test_early_answers_raw_sockets_never_hang(edge: Server, name: str) -> None:
    outcomes = [_early_then_normal(edge, name) for _ in range(SEQUENCES)]
    assert outcomes.count("hang") == 0, f"{outcomes.count('hang')} of {SEQUENCES} hung: {set(outcomes)}"
    # an answer decided from the head does not wait for the rest of the body (a slow body would hold the
    # connection): it says Connection: close and the server closes
    assert set(outcomes) == {"closed"}, outcomes


@pytest.mark.parametrize("name", list(EARLY))
def test_early_answers_pooled_client_never_hangs(edge: Server, name: str) -> None:
    method, path, headers, body = EARLY[name]
    hangs = 0
    with httpx.Client(base_url=edge.base_url, timeout=HANG) as client:
        for _ in range(SEQUENCES):
            try:
                assert client.request(method, path, headers=headers, content=body).status_code == int(name)
                assert client.get("/healthz").status_code == 200
            except httpx.TimeoutException:
                hangs += 1
    assert hangs == 0, f"{hangs} of {SEQUENCES} sequences hung"


@pytest.mark.parametrize("head", [
    b"GET /healthz HTTP/1.0\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    b"POST /psa/pins HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
])
def test_http10_and_connection_close_are_closed_after_the_answer(edge: Server, head: bytes) -> None:
    with _connect(edge) as sock:
        sock.sendall(head)
        status, headers, _ = _response(sock)
        assert status in (200, 401) and headers.get("connection", "").lower() == "close"
        assert _closed_by_server(sock)


def test_idle_connections_are_closed_at_keep_alive_timeout(edge: Server) -> None:
    with _connect(edge) as used, _connect(edge) as never_used:
        for _ in range(3):
            used.sendall(_head("GET", "/healthz", {}))
            assert _response(used)[0] == 200
        assert _closed_by_server(used)  # idle after its requests
        assert _closed_by_server(never_used)  # never sent a request


@pytest.mark.parametrize("headers", [{"Authorization": TOKEN}, {}])
def test_a_body_that_never_finishes_is_timed_out(edge: Server, headers: dict[str, str]) -> None:
    """A body that stops arriving gets an answer and the connection is closed at ``body_timeout``, whether the
    handler was reading it (408) or had answered without it (401)."""
    with _connect(edge) as sock:
        sock.sendall(_head("POST", "/psa/pins", headers, 1000) + b'{"cid": ')
        status, resp_headers, body = _response(sock)
        assert status == (408 if headers else 401)
        assert b'"REQUEST_TIMEOUT"' in body if headers else b'"UNAUTHORIZED"' in body
        assert resp_headers.get("connection", "").lower() == "close"
        assert _closed_by_server(sock)


def test_a_client_that_stops_reading_is_cut_off(edge: Server) -> None:
    """A client that asks for 10 MB (50 pipelined reads of a 200 KB pin) but does not read the answers holds its
    connection only until a send has been blocked for ``body_timeout`` (1 s here), not for ever."""
    meta = {f"k{i}": "v" * 4000 for i in range(50)}
    with httpx.Client(base_url=edge.psa_url, headers={"Authorization": TOKEN}, timeout=HANG) as client:
        rid = client.post("/pins", json={"cid": CID, "meta": meta}).json()["requestid"]
    n = 50
    host, port = edge.base_url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the answers back up soon
        sock.settimeout(HANG)
        sock.connect((host, int(port)))
        sock.sendall(_head("GET", f"/psa/pins/{rid}", {"Authorization": TOKEN}) * n)
        time.sleep(3)  # not reading for three times the timeout (traffic shape, not a check)
        received = b""
        try:
            while chunk := sock.recv(1 << 20):
                received += chunk
        except ConnectionResetError:
            pass
    assert 0 < received.count(b"HTTP/1.1 200 ") < n


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server under an open-file limit of 300 (``ulimit -n 300``), with long timeouts and no per-address limit
    (the flood comes from one address)."""
    cmd = ["prlimit", "--nofile=300:300", *(os.environ.get("W3GATE_TEST_COMMAND", "").split()
                                            or [sys.executable, "-m", "w3gate"])]
    env = {"W3GATE_KEEP_ALIVE_TIMEOUT": "300", "W3GATE_BODY_TIMEOUT": "300", "W3GATE_MAX_CONNECTIONS_PER_ADDRESS": "0"}
    server = _start(tmp_path_factory.mktemp("crowded"), env, command=cmd)
    yield server
    server.stop()


def test_a_flood_of_connections_cannot_keep_healthz_out(crowded: Server) -> None:
    """400 connections that stay open (idle after an answer, or never asking) do not keep a new client out: the
    connections idle the longest are closed to make room."""
    assert re.search(r"max_connections lowered from 1000 to (\d+)", crowded.log_text()), \
        "the open-file limit of 300 should lower max_connections"
    flood: list[socket.socket] = []
    try:
        for i in range(400):
            sock = _connect(crowded)
            flood.append(sock)
            if i % 2:
                sock.sendall(_head("GET", "/healthz", {}))
                assert _response(sock)[0] == 200
        with httpx.Client(timeout=HANG) as client:
            for _ in range(5):
                assert client.get(crowded.base_url + "/healthz").status_code == 200
        assert _closed_by_server(flood[0])  # the one idle the longest made room
    finally:
        for sock in flood:
            sock.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """At most 3 connections, long timeouts."""
    env = {"W3GATE_MAX_CONNECTIONS": "3", "W3GATE_KEEP_ALIVE_TIMEOUT": "300", "W3GATE_BODY_TIMEOUT": "300"}
    server = _start(tmp_path_factory.mktemp("tiny"), env)
    yield server
    server.stop()


def test_busy_connections_at_the_limit_get_503_at_once(tiny: Server) -> None:
    """When every connection is busy with an answer (a client asking for 10 MB and not reading it), a new one is
    answered 503 and closed, not left waiting. (A connection still waiting for a body is not busy: it is closed
    to make room, see test_edge_open_internet.py.)"""
    meta = {f"k{i}": "v" * 4000 for i in range(50)}
    with httpx.Client(base_url=tiny.psa_url, headers={"Authorization": TOKEN}, timeout=HANG) as client:
        rid = client.post("/pins", json={"cid": CID, "meta": meta}).json()["requestid"]
    host, port = tiny.base_url.removeprefix("http://").split(":")
    busy: list[socket.socket] = []
    try:
        for _ in range(3):
            sock = socket.socket()
            busy.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the answers back up soon
            sock.settimeout(HANG)
            sock.connect((host, int(port)))
            sock.sendall(_head("GET", f"/psa/pins/{rid}", {"Authorization": TOKEN}) * 50)
        time.sleep(1)  # the answers back up (traffic shape, not a check)
        with _connect(tiny) as extra:
            extra.sendall(_head("GET", "/healthz", {}))
            status, _, body = _response(extra)
            assert status == 503 and b"SERVICE_UNAVAILABLE" in body
            assert _closed_by_server(extra)
    finally:
        for sock in busy:
            sock.close()


def test_one_access_line_per_request_without_token_or_query(edge: Server) -> None:
    marker = f"marker{time.monotonic_ns()}"
    with httpx.Client(base_url=edge.psa_url, headers={"Authorization": TOKEN}, timeout=HANG) as client:
        assert client.get("/pins", params={"name": marker}).status_code == 200
        assert client.get("/pins/no-such-pin").status_code == 404
    assert httpx.get(edge.psa_url + f"/pins?secret={marker}", timeout=HANG).status_code == 401
    user = r"substrate:0x[0-9a-f]{10}"
    expected = [rf"w3gate\.access: GET /psa/pins 200 \d+\.\dms {user}$",
                rf"w3gate\.access: GET /psa/pins/no-such-pin 404 \d+\.\dms {user}$",
                r"w3gate\.access: GET /psa/pins 401 \d+\.\dms -$"]

    def missing() -> list[str]:  # the line is written just after the answer is sent: wait for it, a while
        lines = [line for line in edge.log_text().splitlines() if "w3gate.access" in line]
        return [p for p in expected if not any(re.search(p, line) for line in lines)]

    deadline = time.monotonic() + HANG
    while missing() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not missing(), edge.log_text()[-3000:]
    text = edge.log_text()
    assert TOKEN.split(" ", 1)[1] not in text and marker not in text


@pytest.mark.parametrize("env", [{"W3GATE_KEEP_ALIVE_TIMEOUT": "0"}, {"W3GATE_BODY_TIMEOUT": "-1"},
                                 {"W3GATE_BODY_TIMEOUT": "nan"}, {"W3GATE_KEEP_ALIVE_TIMEOUT": "inf"},
                                 {"W3GATE_MAX_CONNECTIONS": "0"}, {"W3GATE_MAX_CONNECTIONS": "many"}])
def test_connection_settings_are_validated(env: dict[str, str]) -> None:
    from w3gate.config import ConfigError, load_settings

    with pytest.raises(ConfigError):
        load_settings(None, env=env)
    settings = load_settings(None, env={"W3GATE_KEEP_ALIVE_TIMEOUT": "2.5", "W3GATE_MAX_CONNECTIONS": "7"})
    assert (settings.keep_alive_timeout, settings.max_connections) == (2.5, 7)
