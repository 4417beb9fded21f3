"""The upload gateway ``POST /api/v0/add``: real ``w3gate serve`` processes in front of a real IPFS node
(js-ipfs with Kubo's RPC API, /work/shared/ipfs-devnode), over real HTTP on loopback."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import Server, substrate_token, wait_for
from ipfs_fixtures import IpfsNode, devnode
from multiformats import CID
from substrateinterface import Keypair

from w3gate.testing import bearer

ALL = {"status": "queued,pinning,pinned,failed"}
LIMIT = 4 * 1024 * 1024  # max_upload_bytes of the test servers


@pytest.fixture(scope="module")
def node() -> Iterator[IpfsNode]:
    with devnode() as n:
        yield n


@pytest.fixture
def gateway(start_server: Any, node: IpfsNode) -> Server:
    return start_server(env={"W3GATE_IPFS_RPC_URL": node.rpc_url, "W3GATE_IPFS_MAX_UPLOAD_BYTES": str(LIMIT)})


def upload(server: Server, token: str | None, files: list[tuple[str, bytes]], **params: str) -> httpx.Response:
    headers = {"Authorization": token} if token else {}
    return server.post(server.base_url + "/api/v0/add", params=params, headers=headers, timeout=60,
                      files=[("file", (name, data)) for name, data in files])


def objects(resp: httpx.Response) -> list[dict]:
    assert resp.status_code == 200, resp.text
    return [httpx.Response(200, content=line).json() for line in resp.content.splitlines() if line.strip()]


def same_cid(a: str, b: str) -> bool:
    return CID.decode(a) == CID.decode(b)


def failure(resp: httpx.Response, status: int, reason: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["reason"] == reason and body["error"]["details"], body
    assert body["Message"] == body["error"]["details"] and body["Type"] == "error"  # Kubo's client shows it
    return body["error"]


def my_pins(server: Server, token: str) -> list[dict]:
    resp = server.get(server.psa_url + "/pins", params=ALL, headers={"Authorization": token}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["results"]


def raw_request(server: Server, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send a request head (and maybe part of a body) on a fresh socket and read the answer's head and body."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed before an answer: {data!r}"
            data += chunk
        top, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = top.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        while len(rest) < int(headers.get("content-length", "0")):
            chunk = sock.recv(65536)
            assert chunk
            rest += chunk
        return int(status_line.split()[1]), headers, rest


OPTIONS = [{}, {"cid-version": "1"}, {"raw-leaves": "true"}, {"chunker": "size-1024"},
           {"cid-version": "1", "raw-leaves": "false"}]


def test_the_cid_is_the_nodes_for_the_same_bytes_and_options(gateway: Server, node: IpfsNode, token: str) -> None:
    """Each option reaches the node: the CID equals the node's own for those options, and they all differ."""
    data = os.urandom(300_000)  # larger than max_body_bytes (256 KiB): this route takes more
    seen = []
    for options in OPTIONS:
        got = objects(upload(gateway, token, [("blob", data)], **options))
        assert len(got) == 1 and got[0]["Name"] == "blob"
        expected = node.add_file(data, "blob", **options, **{"only-hash": "true"})
        assert same_cid(got[0]["Hash"], expected["Hash"]), options
        seen.append(str(CID.decode(got[0]["Hash"])))
    assert len(set(seen)) == len(OPTIONS)


def test_the_root_becomes_the_users_pin_and_the_node_holds_it(gateway: Server, node: IpfsNode, token: str,
                                                              other_token: str) -> None:
    data = os.urandom(5000)
    resp = upload(gateway, token, [("hello.bin", data)], **{"cid-version": "1"})
    root = objects(resp)[-1]["Hash"]
    [pin] = [p for p in my_pins(gateway, token) if same_cid(p["pin"]["cid"], root)]
    assert pin["requestid"] == resp.headers["X-Pin-Requestid"]
    assert pin["pin"]["name"] == "hello.bin" and pin["status"] == "queued"  # waits for the order path
    assert node.has_pin(root)  # Kubo's default pin=true reached the node
    assert not [p for p in my_pins(gateway, other_token) if same_cid(p["pin"]["cid"], root)]


def test_a_w3auth_token_as_basic_is_taken(gateway: Server, token: str) -> None:
    """Crust's gateway takes W3Auth tokens as Basic (Kubo's ``--api-auth basic:...`` sends that): so does this."""
    basic = "Basic " + token.split(" ", 1)[1]
    root = objects(upload(gateway, basic, [("basic.bin", os.urandom(100))]))[-1]["Hash"]
    assert [p for p in my_pins(gateway, token) if same_cid(p["pin"]["cid"], root)]


def test_wrap_with_directory_pins_the_directory(gateway: Server, node: IpfsNode, token: str) -> None:
    files = [("a.txt", os.urandom(100)), ("b.txt", os.urandom(100))]
    got = objects(upload(gateway, token, files, **{"wrap-with-directory": "true"}))
    root = got[-1]["Hash"]
    assert all(not same_cid(root, o["Hash"]) for o in got[:-1] if o["Name"])
    assert node.rpc("ls", params={"arg": root}).status_code == 200
    assert [p for p in my_pins(gateway, token) if same_cid(p["pin"]["cid"], root)]


def test_pin_false_reaches_the_node(gateway: Server, node: IpfsNode, token: str) -> None:
    """The add leaves the content unpinned; w3gate's own fetcher, which looks for new pins every second, then pins
    it as it does any pin's content (under load that can come before the check: then it must be that fetch)."""
    root = objects(upload(gateway, token, [("x", os.urandom(2000))], pin="false"))[-1]["Hash"]
    if node.has_pin(root):
        wait_for(lambda: f"ipfs node fetched {root}" in gateway.log_text(), timeout=30)
    assert [p for p in my_pins(gateway, token) if same_cid(p["pin"]["cid"], root)]  # w3gate's pin all the same


def test_several_unwrapped_files_are_refused_and_unpinned(gateway: Server, node: IpfsNode, token: str,
                                                          other_token: str) -> None:
    """...except what another pin on w3gate holds: another user's upload of the same bytes stays pinned."""
    kept = os.urandom(1000)
    held = objects(upload(gateway, other_token, [("kept", kept)]))[-1]["Hash"]
    files = [("one", os.urandom(1000)), ("two", os.urandom(1000)), ("kept", kept)]
    resp = upload(gateway, token, files)
    failure(resp, 400, "BAD_REQUEST")
    for name, data in files[:2]:
        cid = node.add_file(data, name, **{"only-hash": "true"})["Hash"]
        assert not node.has_pin(cid)
        assert not [p for p in my_pins(gateway, token) if same_cid(p["pin"]["cid"], cid)]
    assert node.has_pin(held)


def test_unauthenticated_is_401_before_the_body(gateway: Server, token: str) -> None:
    head = ("POST /api/v0/add HTTP/1.1\nHost: x\nContent-Type: multipart/form-data; boundary=b\n"
            f"Content-Length: {LIMIT}\n")
    status, headers, body = raw_request(gateway, head)  # no byte of the body is ever sent
    assert status == 401 and headers.get("connection") == "close"
    assert httpx.Response(401, content=body).json()["error"]["reason"] == "UNAUTHORIZED"
    forged = bearer(f"sub-{Keypair.create_from_uri('//Alice', ss58_format=66).ss58_address}:0x{'00' * 64}")
    failure(upload(gateway, forged, [("f", b"x")]), 401, "UNAUTHORIZED")
    failure(upload(gateway, None, [("f", b"x")]), 401, "UNAUTHORIZED")


def test_over_max_upload_bytes_is_413(gateway: Server, token: str) -> None:
    head = (f"POST /api/v0/add HTTP/1.1\nHost: x\nAuthorization: {token}\n"
            f"Content-Type: multipart/form-data; boundary=b\nContent-Length: {LIMIT + 1}\n")
    status, headers, body = raw_request(gateway, head)  # refused on the declared length, no body sent
    assert status == 413 and headers.get("connection") == "close"
    assert httpx.Response(413, content=body).json()["error"]["reason"] == "PAYLOAD_TOO_LARGE"

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\n"
               b"Content-Type: application/octet-stream\r\n\r\n")
        chunk = os.urandom(65536)
        for _ in range(3 * LIMIT // 65536):  # well past the limit: more than the server holds unread
            yield chunk
        yield b"\r\n--b--\r\n"

    before = len(my_pins(gateway, token))
    try:
        resp = gateway.post(gateway.base_url + "/api/v0/add", content=chunked(), timeout=60,
                          headers={"Authorization": token, "Content-Type": "multipart/form-data; boundary=b"})
        failure(resp, 413, "PAYLOAD_TOO_LARGE")
    except httpx.WriteError:  # the server may close before the client has sent it all
        pass
    assert len(my_pins(gateway, token)) == before
    # the request ended (its access line), though its answer came while the body was still arriving
    deadline = time.monotonic() + 60  # a hang, not a speed: without the fix it ends only at shutdown
    while gateway.log_text().count("POST /api/v0/add 413") < 2:
        assert time.monotonic() < deadline, gateway.log_text()[-3000:]
        time.sleep(0.2)


@pytest.mark.parametrize("path", ["/api/v0/pin/rm?arg=x", "/api/v0/cat?arg=x", "/api/v0/add/../id", "/api/v0/id",
                                  "/api/v0/add/x", "/api/v0/pin/add?arg=x"])
def test_no_other_rpc_path_reaches_the_node(gateway: Server, token: str, path: str) -> None:
    status, _, body = raw_request(gateway, f"POST {path} HTTP/1.1\nHost: x\nAuthorization: {token}\n"
                                           "Content-Length: 0\n")
    assert status == 404, body


def test_parameters_and_body_type_are_checked(gateway: Server, token: str) -> None:
    for params in ({"only-hash": "true"}, {"hash": "blake2b-256"}, {"cid-version": "2"}, {"pin": "maybe"},
                   {"chunker": "bogus"}):
        failure(upload(gateway, token, [("f", b"x")], **params), 400, "BAD_REQUEST")
    resp = gateway.post(gateway.base_url + "/api/v0/add", content=b"x", timeout=30,
                      headers={"Authorization": token, "Content-Type": "application/octet-stream"})
    failure(resp, 415, "UNSUPPORTED_MEDIA_TYPE")
    # what Kubo's own client adds to every call is ignored
    objects(upload(gateway, token, [("f", b"x")], progress="true", **{"stream-channels": "true"}))
    # the route answers with a trailing slash too, streamed as well (a body over max_body_bytes)
    resp = gateway.post(gateway.base_url + "/api/v0/add/", headers={"Authorization": token}, timeout=60,
                      files={"file": ("slash", os.urandom(300_000))})
    objects(resp)
    assert gateway.get(gateway.base_url + "/api/v0/add", headers={"Authorization": token}).status_code == 405


def test_a_user_over_the_pins_quota_is_refused_before_the_body(start_server: Any, node: IpfsNode) -> None:
    server = start_server(env={"W3GATE_IPFS_RPC_URL": node.rpc_url, "W3GATE_LIMITS_PINS_PER_USER": "1"})
    token = substrate_token("//Quota")
    objects(upload(server, token, [("one", os.urandom(1000))]))
    data = os.urandom(1000)
    failure(upload(server, token, [("two", data)]), 403, "PINS_PER_USER")
    assert not node.has_pin(node.add_file(data, "two", **{"only-hash": "true"})["Hash"])  # never reached the node
    head = (f"POST /api/v0/add HTTP/1.1\nHost: x\nAuthorization: {token}\n"
            "Content-Type: multipart/form-data; boundary=b\nContent-Length: 1000000\n")
    status, headers, _ = raw_request(server, head)  # refused without the body
    assert status == 403 and headers.get("connection") == "close"
    assert len(my_pins(server, token)) == 1


def test_body_timeout_is_per_chunk_and_other_routes_keep_max_body_bytes(start_server: Any, node: IpfsNode,
                                                                        token: str) -> None:
    """An upload may take longer than body_timeout in all while its bytes keep coming; one that stops is 408.
    Every other route still refuses a body over max_body_bytes."""
    server = start_server(env={"W3GATE_IPFS_RPC_URL": node.rpc_url, "W3GATE_BODY_TIMEOUT": "3"})
    head = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n")

    def slow() -> Iterator[bytes]:
        yield head
        for _ in range(8):  # 4 s in all, never 3 s without a byte
            time.sleep(0.5)
            yield os.urandom(1000)
        yield b"\r\n--b--\r\n"

    resp = server.post(server.base_url + "/api/v0/add", content=slow(), timeout=60,
                      headers={"Authorization": token, "Content-Type": "multipart/form-data; boundary=b"})
    objects(resp)
    status, headers, body = raw_request(server, (
        f"POST /api/v0/add HTTP/1.1\nHost: x\nAuthorization: {token}\n"
        "Content-Type: multipart/form-data; boundary=b\nContent-Length: 100000\n"), head + b"x" * 1000)
    assert status == 408 and headers.get("connection") == "close"
    assert httpx.Response(408, content=body).json()["error"]["reason"] == "REQUEST_TIMEOUT"
    resp = server.post(server.psa_url + "/pins", content=b" " * (300 * 1024), timeout=30,
                      headers={"Authorization": token, "Content-Type": "application/json"})
    assert resp.status_code == 413, resp.text


def test_without_an_ipfs_node_uploads_are_501(server: Server, token: str) -> None:
    failure(upload(server, token, [("f", b"x")]), 501, "NOT_IMPLEMENTED")


def test_node_credentials_are_sent_but_never_shown(start_server: Any, node: IpfsNode, token: str) -> None:
    """The node's Authorization comes from rpc_url's userinfo; neither it nor the URL's password is logged or
    answered, whether the node takes the upload or cannot be reached."""
    secret = "s3cret-node-password"
    host = node.rpc_url.removeprefix("http://")
    ok = start_server(env={"W3GATE_IPFS_RPC_URL": f"http://w3gate:{secret}@{host}"})
    objects(upload(ok, token, [("f", os.urandom(100))]))
    dead_port = node.rpc_url.rsplit(":", 1)[1]
    down = start_server(env={"W3GATE_IPFS_RPC_URL": f"http://w3gate:{secret}@127.0.0.2:{dead_port}"})
    resp = upload(down, token, [("f", os.urandom(100))])
    failure(resp, 502, "NODE_UNAVAILABLE")
    for server in (ok, down):
        log = server.log_text()
        assert secret not in log and "dzNnYXRl" not in log  # nor the Basic credentials
    assert secret not in resp.text
    assert "upload failed" in down.log_text()


def test_the_body_is_streamed_not_held(start_server: Any, node: IpfsNode, token: str) -> None:
    """A 64 MiB upload goes through w3gate without w3gate's memory growing by anything like its size (the
    process's RSS sampled throughout; bench/bench_ipfs.py measures up to 1 GiB)."""
    import threading

    import psutil

    size = 64 * 1024 * 1024
    server = start_server(env={"W3GATE_IPFS_RPC_URL": node.rpc_url, "W3GATE_IPFS_MAX_UPLOAD_BYTES": str(2 * size)})
    process = psutil.Process(server.proc.pid)
    objects(upload(server, token, [("warm-up", os.urandom(1000))]))
    idle = process.memory_info().rss
    peak, done = idle, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.01)

    def body() -> Iterator[bytes]:
        yield (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\n"
               b"Content-Type: application/octet-stream\r\n\r\n")
        for _ in range(size // (1024 * 1024)):
            yield os.urandom(1024 * 1024)
        yield b"\r\n--b--\r\n"

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        resp = server.post(server.base_url + "/api/v0/add", content=body(), timeout=600,
                          headers={"Authorization": token, "Content-Type": "multipart/form-data; boundary=b"})
    finally:
        done.set()
        sampler.join()
    root = objects(resp)[-1]["Hash"]
    assert peak - idle < size // 4, f"w3gate grew by {(peak - idle) >> 20} MiB for a {size >> 20} MiB upload"
    node.rpc("pin/rm", params={"arg": root})
