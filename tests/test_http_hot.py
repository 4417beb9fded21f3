"""GET and POST /psa/pins take the direct path (w3gate/http/hot.py): the same answers, access log lines and
metrics as the app's routes, which still answer everything else. The edge's rules on that path (a token checked
before the body, 408 for a body that never starts, Connection: close after an early answer, a client leaving)
are the tests of test_http_edge.py and test_edge_open_internet.py, which send their requests to /psa/pins."""

from __future__ import annotations

import re
from typing import Any

import pytest

CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
CID_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
ORIGIN = "https://pins.example"
ADDR = f"/ip4/1.2.3.4/tcp/4001/p2p/{CID_V0}"

# (method, path and query, headers, body, with the token?)
REQUESTS: list[tuple[str, str, dict[str, str], bytes | None, bool]] = [
    ("GET", "/psa/pins", {}, None, True),
    ("POST", "/psa/pins", {}, b'{"cid":"%s","name":"n","meta":{"a":"b"}}' % CID.encode(), True),
    ("POST", "/psa/pins", {"Origin": ORIGIN}, b'{"cid":"%s","origins":["%s"]}' % (CID_V0.encode(), ADDR.encode()),
     True),
    ("GET", "/psa/pins?status=queued,pinning&limit=1", {"Origin": ORIGIN}, None, True),
    ("GET", "/psa/pins?status=queued&name=n&match=exact", {}, None, True),
    ("GET", "/psa/pins?limit=0", {}, None, True),
    ("GET", "/psa/pins?status=nope", {"Origin": "https://elsewhere.example"}, None, True),
    ("GET", "/psa/pins", {}, None, False),
    ("GET", "/psa/pins", {"Authorization": "Bearer abc"}, None, False),
    ("POST", "/psa/pins", {}, b'{"cid":"%s"}' % CID.encode(), False),
    ("POST", "/psa/pins", {}, b'{"cid":', True),
    ("POST", "/psa/pins", {}, b'{"cid":"bafyXYZ"}', True),
    ("POST", "/psa/pins", {}, b"", True),
    ("POST", "/psa/pins", {}, b"[1]", True),
    ("POST", "/psa/pins", {}, b'{"cid":"%s","meta":{"k":1}}' % CID.encode(), True),
]


def normalised(response: Any) -> tuple[int, list[tuple[str, str]], str]:
    """Status, headers, and the body with request ids and times replaced. Left out: the date, and whether an
    answer given before the body was read closes the connection (on both paths that depends on whether the
    body reader got a turn before the answer; test_http_edge.py checks it on real sockets)."""
    body = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", response.text)
    body = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", "TIME", body)
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in ("date", "connection")]
    return response.status_code, headers, body


def send_all(server: Any, token: str) -> list[tuple[int, list[tuple[str, str]], str]]:
    answers = []
    with server.client() as client:
        for method, path, headers, body, with_token in REQUESTS:
            sent = {**({"Authorization": token} if with_token else {}), **headers}
            answers.append(normalised(client.request(method, server.base_url + path, headers=sent, content=body)))
    return answers


def access_lines(server: Any) -> list[str]:
    """The access log's lines for /psa/pins, without the time taken and with the user's name as USER."""
    lines = [line.partition("w3gate.access: ")[2] for line in server.log_text().splitlines()]
    return [re.sub(r" [\d.]+ms (substrate:0x\w+)?", " Nms USER", line) for line in lines if "/psa/pins" in line]


def pin_requests_counted(server: Any) -> dict[str, float]:
    with server.client() as client:
        text = client.get(server.base_url + "/metrics").text
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^w3gate_http_requests_total(\{[^}]*route="/psa/pins"[^}]*\}) (\S+)$', text, re.M)}


@pytest.fixture
def in_process(start_app_server: Any) -> Any:
    server = start_app_server(env={"W3GATE_CORS_ORIGINS": ORIGIN})
    if not hasattr(server, "service"):
        pytest.skip("compares the two paths inside one service: needs the service in this process")
    return server


def test_the_direct_path_answers_logs_and_counts_as_the_apps_routes_do(in_process: Any, token: str,
                                                                      other_token: str) -> None:
    """The same requests from two users (so that each list sees the same pins), one through each path."""
    hot = in_process.service.app.asgi_http_class.hot
    assert hot is not None
    direct = send_all(in_process, token)
    direct_log = access_lines(in_process)
    direct_counts = pin_requests_counted(in_process)
    in_process.service.app.asgi_http_class.hot = None  # every request through Quart's routes
    try:
        routes = send_all(in_process, other_token)
    finally:
        in_process.service.app.asgi_http_class.hot = hot
    routes_log = access_lines(in_process)[len(direct_log):]
    routes_counts = pin_requests_counted(in_process)

    assert [a[0] for a in direct] == [200, 202, 202, 200, 200, 400, 400, 401, 401, 401, 400, 400, 400, 400, 400]
    for sent, a, b in zip(REQUESTS, direct, routes, strict=True):
        assert a == b, sent
    assert direct_log == routes_log
    assert len(direct_log) == len(REQUESTS)
    assert {k: 2 * v for k, v in direct_counts.items()} == routes_counts  # each request once more


def test_get_and_post_pins_never_reach_the_apps_request_machinery(in_process: Any, token: str) -> None:
    app = in_process.service.app
    handled: list[str] = []
    original = app.handle_request

    async def counting(request: Any) -> Any:
        handled.append(f"{request.method} {request.path}")
        return await original(request)

    app.handle_request = counting
    try:
        with in_process.client(token) as client:
            assert client.get(in_process.psa_url + "/pins").status_code == 200
            assert client.post(in_process.psa_url + "/pins", json={"cid": CID}).status_code == 202
            assert handled == []
            # what the direct path leaves to the routes: another path, HEAD, a body on a GET
            assert client.get(in_process.psa_url + "/pins/").status_code == 200
            assert client.head(in_process.psa_url + "/pins").status_code == 200
            assert client.request("GET", in_process.psa_url + "/pins", content=b"x").status_code == 200
    finally:
        app.handle_request = original
    assert handled == ["GET /psa/pins/", "HEAD /psa/pins", "GET /psa/pins"]
