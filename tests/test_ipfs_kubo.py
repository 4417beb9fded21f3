"""The Kubo RPC connector against what js-ipfs cannot show: a loopback HTTP server speaking Kubo's wire format for
``pin/add?progress=true`` (progress lines every half second), ``dag/stat``, ``routing/provide``, its errors, and
``API.Authorizations`` headers. js-ipfs's own answers (404 for those calls, no progress lines) are covered by the
real nodes in test_ipfs_node.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from w3gate.ipfs.kubo import Kubo, NodeError, NodeUnavailable, auth_header

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

CID = "bafybeibzdcz7xoe7bs5vjcqwyemmsn5t6353lmjk2igexkgbxfi7voira4"


class FakeKubo(BaseHTTPRequestHandler):
    """Kubo 0.3x's answers, byte for byte in shape: JSON per line, chunked streams, errors as 500 + Message."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict[str, list[str]], str | None]] = []
    has_extras = True  # dag/stat and routing/provide (js-ipfs: 404)
    stuck_lines = 0  # progress lines the stalled pin/add got out before the client went away

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, lines: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Chunked-Output", "1")
        self.end_headers()
        try:
            for line in lines:
                data = json.dumps(line).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        cmd = url.path.removeprefix("/api/v0/")
        q = parse_qs(url.query)
        FakeKubo.seen.append((cmd, q, self.headers.get("Authorization")))
        if self.headers.get("Authorization") == "Bearer wrong":  # as Kubo's API.Authorizations refuses
            return self._send(403, b"403 - Forbidden\n", "text/plain")
        arg = q.get("arg", [""])[0]
        if cmd == "pin/add":
            def progress() -> Iterator[dict[str, Any]]:
                if arg == "stuck":  # 3 blocks, then the same count every half second
                    for n in (1, 2, 3):
                        yield {"Progress": n}
                        time.sleep(0.1)
                    for _ in range(40):
                        time.sleep(0.5)
                        FakeKubo.stuck_lines += 1
                        yield {"Progress": 3}
                    return
                for n in range(1, 6):
                    yield {"Progress": n}
                    time.sleep(0.4)  # slower than the stall limit in all, but every line is new progress
                yield {"Pins": [arg]}
            return self._stream(progress())
        if cmd == "dag/stat" and self.has_extras:
            return self._send(200, json.dumps({"UniqueBlocks": 12, "TotalSize": 3000700, "SharedSize": 0, "Ratio": 1,
                                               "DagStats": [{"Cid": {"/": arg}, "Size": 3000700,
                                                             "NumBlocks": 12}]}).encode())
        if cmd == "routing/provide" and self.has_extras:
            return self._stream(iter([{"Extra": "", "ID": "", "Responses": None, "Type": 4}]))
        if cmd == "files/stat":
            return self._send(200, json.dumps({"Hash": CID, "Size": 3000000, "CumulativeSize": 3000609,
                                               "Blocks": 12, "Type": "file"}).encode())
        if cmd == "pin/rm":
            return self._send(500, json.dumps({"Message": "not pinned or pinned indirectly", "Code": 0,
                                               "Type": "error"}).encode())
        self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")


@pytest.fixture
def fake() -> Iterator[str]:
    FakeKubo.seen = []
    FakeKubo.has_extras = True
    FakeKubo.stuck_lines = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKubo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_progress_lines_keep_a_long_pin_going_and_a_stall_ends_it(fake: str) -> None:
    kubo = Kubo(f"http://{fake}")
    try:
        done = await kubo.pin_add(CID, total=30, stall=1.0)  # 2 s in all, but never 1 s without progress
        assert done.done and done.saw_progress and done.progress == 5
        stuck = await kubo.pin_add("stuck", total=30, stall=1.5)
        assert not stuck.done and stuck.progress == 3
        assert FakeKubo.stuck_lines < 40  # the stall ended it, not the stream's end or the total
        cmd, q, _ = FakeKubo.seen[0]
        assert cmd == "pin/add" and q["progress"] == ["true"] and q["recursive"] == ["true"] and q["timeout"] == ["30s"]
    finally:
        await kubo.aclose()


async def test_dag_stat_and_provide_where_the_node_has_them_else_none(fake: str) -> None:
    kubo = Kubo(f"http://{fake}")
    try:
        assert await kubo.cumulative_size(CID, 5) == 3000609
        assert await kubo.dag_size(CID, 5) == 3000700
        assert await kubo.provide(CID) is True
        FakeKubo.has_extras = False  # as js-ipfs: 404 for both
        assert await kubo.dag_size(CID, 5) is None
        assert await kubo.provide(CID) is False
        assert [c for c, _, _ in FakeKubo.seen[-3:]] == ["dag/stat", "routing/provide", "provide/once"]
        assert await kubo.pin_rm(CID) is False  # Kubo's "not pinned" error
        with pytest.raises(NodeError):
            await kubo.call("no/such")
    finally:
        await kubo.aclose()


@pytest.mark.parametrize(("userinfo", "header"), [
    ("alice:s3cret@", "Basic YWxpY2U6czNjcmV0"),
    (":tok3n@", "Bearer tok3n"),
    ("tok3n@", "Bearer tok3n"),
    ("", None),
])
async def test_credentials_become_the_authorization_header(fake: str, userinfo: str, header: str | None) -> None:
    kubo = Kubo(f"http://{userinfo}{fake}")
    try:
        await kubo.cumulative_size(CID, 5)
        assert FakeKubo.seen[-1][2] == header
    finally:
        await kubo.aclose()
    assert auth_header(f"http://{userinfo}{fake}/")[0] == f"http://{fake}"


async def test_refused_credentials_make_the_node_unavailable(fake: str) -> None:
    kubo = Kubo(f"http://:wrong@{fake}")
    try:
        with pytest.raises(NodeUnavailable, match="refused w3gate's credentials") as err:
            await kubo.id()
        assert "wrong" not in str(err.value)
    finally:
        await kubo.aclose()


async def test_node_down_is_unavailable_and_never_shows_the_credentials() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubo = Kubo(f"http://alice:s3cret@127.0.0.1:{port}")
    try:
        with pytest.raises(NodeUnavailable) as err:
            await kubo.id()
        assert "s3cret" not in str(err.value) and "alice" not in str(err.value) and "***" in str(err.value)
    finally:
        await kubo.aclose()
