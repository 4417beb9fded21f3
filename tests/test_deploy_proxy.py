"""TLS in front of several instances, as docs/deploy.md sets it up: Debian's nginx with the shipped configuration
(packaging/nginx/w3gate.conf), a certificate from a test CA, and real w3gate instances behind it on loopback:
two on one PostgreSQL (pass 2), one on SQLite (pass 1). The client trusts only the test CA, as Kubo would a
real one, and uses the ``https://`` URL Kubo is given."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import POSTGRES, database_url_for_test
from deploy_helpers import Nginx, https_client, make_certificate, needs_nginx
from helpers import Server, start_server_process, substrate_token

pytestmark = needs_nginx
TOKEN = substrate_token("//Alice")
CIDS = [
    "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
    "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
]
# the limits branch's settings: believe the client address nginx sets, from nginx only
PROXY_ENV = {"W3GATE_TRUSTED_PROXY_HEADER": "X-Forwarded-For", "W3GATE_TRUSTED_PROXIES": "127.0.0.1/32"}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, tls: tuple[Path, Path, Path]) -> Iterator[tuple[Nginx, list]]:
    url = database_url_for_test()
    servers: list[Server] = []
    nginx = Nginx(tmp_path_factory.mktemp("nginx"), tls[1], tls[2])
    try:
        dirs = [tmp_path_factory.mktemp("w3gate") for _ in range(2 if POSTGRES else 1)]  # SQLite: one per file
        with ThreadPoolExecutor() as pool:  # started together, as systemd starts a fleet's units
            starting = [pool.submit(start_server_process, env=PROXY_ENV, database_url=url, data_dir=d) for d in dirs]
        servers.extend(f.result() for f in starting if f.exception() is None)
        for f in starting:
            if f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        nginx.start([int(s.base_url.rsplit(":", 1)[1]) for s in servers])
        yield nginx, servers
    finally:
        nginx.stop()
        for server in servers:
            server.stop()


def test_pins_posted_and_listed_over_https_through_nginx(fleet: tuple[Nginx, list], tls) -> None:
    nginx, servers = fleet
    ca = tls[0]
    with https_client(nginx, ca, TOKEN) as client:
        posted = []
        for i in range(2 * len(CIDS)):
            r = client.post("/pins", json={"cid": CIDS[i % len(CIDS)], "name": f"p{i}"})
            assert r.status_code == 202, r.text
            assert r.headers["content-type"].startswith("application/json")
            posted.append(r.json()["requestid"])
        listed = client.get("/pins", params={"limit": 1000, "status": "queued,pinning,pinned,failed"})
        assert listed.status_code == 200
        assert listed.json()["count"] == len(posted)
        assert sorted(p["requestid"] for p in listed.json()["results"]) == sorted(posted)
        # w3gate's own Failure bodies pass through unchanged (nginx's body limit is above w3gate's)
        big = client.post("/pins", json={"cid": CIDS[0], "meta": {"k": "v" * 300_000}})
        assert big.status_code == 413 and "error" in big.json()
        assert client.get("/pins", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    # every instance served some of them (round robin)
    for server in servers:
        assert "POST /psa/pins 202" in server.log_text()
    # the certificate is really checked: a client that does not trust the test CA is refused
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(nginx.url + "/healthz", timeout=10)


def test_nginx_sets_the_client_address_header_a_client_cannot_forge(tmp_path: Path, tls) -> None:
    """What w3gate's ``trusted_proxy_header`` reads: nginx replaces X-Forwarded-For with the peer's address.
    The upstream is a plain HTTP server here that answers with the headers it got."""
    seen: list[dict[str, str]] = []

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the library's name
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = json.dumps(seen[-1]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    nginx = Nginx(tmp_path, tls[1], tls[2])
    try:
        nginx.start([upstream.server_address[1]])
        with https_client(nginx, tls[0]) as client:
            got = client.get("/pins", headers={"X-Forwarded-For": "203.0.113.9"}).json()
    finally:
        nginx.stop()
        upstream.shutdown()
    assert got["x-forwarded-for"] == "127.0.0.1"  # the client's address, not what it claimed
    assert got["x-forwarded-proto"] == "https"
    assert got["host"] == "localhost"


def test_auth_failures_are_counted_per_client_nginx_names(tmp_path: Path, tls) -> None:
    """``trusted_proxy_header`` end to end: two clients (127.0.0.2, 127.0.0.3) reach w3gate through nginx, whose
    connections all come from 127.0.0.1. auth_failures_per_minute = 3 refuses the client that failed, by the
    address nginx names, whatever X-Forwarded-For it sends; the other client is not refused with it."""
    (tmp_path / "w3gate").mkdir()
    (tmp_path / "nginx").mkdir()
    server = start_server_process(env={**PROXY_ENV, "W3GATE_LIMITS_AUTH_FAILURES_PER_MINUTE": "3"},
                                  database_url=database_url_for_test(), data_dir=tmp_path / "w3gate")
    nginx = Nginx(tmp_path / "nginx", tls[1], tls[2])
    forged = TOKEN[:-8] + "AAAAAAA="
    try:
        nginx.start([int(server.base_url.rsplit(":", 1)[1])])
        with https_client(nginx, tls[0], forged, local_address="127.0.0.2") as failing, \
                https_client(nginx, tls[0], forged, local_address="127.0.0.3") as other:
            for i in range(3):
                r = failing.get("/pins", headers={"X-Forwarded-For": f"198.51.100.{i}"})
                assert r.status_code == 401, r.text
            over = failing.get("/pins", headers={"X-Forwarded-For": "198.51.100.99"})
            assert over.status_code == 429 and over.json()["error"]["reason"] == "AUTH_FAILURES_PER_MINUTE"
            assert int(over.headers["Retry-After"]) >= 1
            assert other.get("/pins").status_code == 401  # its own address: not refused with the first
            assert other.get("/pins", headers={"Authorization": TOKEN}).status_code == 200
    finally:
        nginx.stop()
        server.stop()
