"""Every substrate, ethereum and solana W3Auth vector, sent over HTTP, gets w3gate_expect_valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

VECTORS = json.loads((Path(__file__).parent / "data" / "w3auth_vectors.json").read_text())["vectors"]
BUILTIN = [v for v in VECTORS if v["family"] in ("substrate", "ethereum", "solana")]


def test_vectors_cover_the_builtin_families() -> None:
    assert {v["family"] for v in BUILTIN} == {"substrate", "ethereum", "solana"}
    assert len(BUILTIN) >= 80


def raw_get(base_url: str, path: str, authorization: str) -> tuple[int, bytes]:
    """GET with the header value's bytes as they are (http.client does not trim them)."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest("GET", path)
        conn.putheader("Authorization", authorization)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory):
    """The app (in this process unless W3GATE_TEST_COMMAND names a build)."""
    from conftest import database_url_for_test
    from helpers import start_app

    server = start_app(data_dir=tmp_path_factory.mktemp("vectors"), database_url=database_url_for_test())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def process_server(tmp_path_factory: pytest.TempPathFactory):
    """A ``w3gate serve`` process: what an HTTP server does to a header's bytes is tested over a socket."""
    from conftest import database_url_for_test
    from helpers import start_server_process

    server = start_server_process(data_dir=tmp_path_factory.mktemp("vectors"), database_url=database_url_for_test())
    yield server
    server.stop()


SPACED = [v for v in BUILTIN if v["header_value"] != v["header_value"].strip()]


@pytest.mark.slow
@pytest.mark.parametrize("vector", SPACED, ids=[v["id"] for v in SPACED])
def test_spaced_vector_over_a_socket(process_server, vector: dict) -> None:
    expected = vector["w3gate_expect_valid"]
    if expected is None:
        pytest.skip("either answer is acceptable for this vector")
    header = vector["header_value"]
    # HTTP strips leading/trailing white space from field values (RFC 9110 5.5), so a server never
    # sees it; send the raw bytes anyway and check the outcome, not Crust's in-process detail.
    status, body = raw_get(process_server.base_url, "/psa/pins", header)
    assert status == (200 if expected else 401), (vector["note"], body)


@pytest.mark.parametrize("vector", [v for v in BUILTIN if v not in SPACED],
                         ids=[v["id"] for v in BUILTIN if v not in SPACED])
def test_vector_over_http(shared_server, vector: dict) -> None:
    expected = vector["w3gate_expect_valid"]
    if expected is None:
        pytest.skip("either answer is acceptable for this vector")
    header = vector["header_value"]
    resp = shared_server.get(shared_server.psa_url + "/pins", headers={"Authorization": header})
    if expected:
        assert resp.status_code == 200, (vector["note"], resp.text)
        assert set(resp.json()) == {"count", "results"}
    else:
        assert resp.status_code == 401, (vector["note"], resp.text)
        assert resp.headers["content-type"].startswith("application/json")
        if vector.get("expect_body") and vector["expect_valid"] is False:
            assert resp.json() == vector["expect_body"], vector["note"]
        else:
            assert resp.json()["error"]["reason"] == "UNAUTHORIZED"
