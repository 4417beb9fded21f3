"""Bad input and edge requests over real HTTP (issue 9): never a 500, the spec's Failure body with the right
status, and the small protocol points (Authorization headers, schemes, CORS, query strictness)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from helpers import HEALTH_TOKEN, Server, bearer
from test_api_pins import CID_V1, add, assert_failure

NOT_OURS = ["0" * 37, "f" * 200, "x" * 36 + "-" + "y" * 400, "does-not-exist", "%00", "0" * 36]


@pytest.fixture
def api(server: Server, token: str) -> httpx.Client:
    with server.client(token) as c:
        yield c


def test_requestid_not_ours_is_404_on_every_method(api: httpx.Client) -> None:
    """A requestid longer than 36 characters was a 500 on DELETE and replace."""
    add(api)  # the user has a pin: the 404 is about this requestid, not an empty store
    for requestid in NOT_OURS:
        for resp in (api.get(f"/pins/{requestid}"), api.delete(f"/pins/{requestid}"),
                     api.post(f"/pins/{requestid}", json={"cid": CID_V1})):
            err = assert_failure(resp, 404)
            assert err["reason"] == "NOT_FOUND", requestid
    assert api.get("/pins").status_code == 200


def _nested(depth: int) -> str:
    return '{"a":' * depth + '"v"' + "}" * depth


BAD_META_FILTERS = [
    {"meta": '{' + ",".join(f'"k{i}":"v"' for i in range(495)) + '}'},  # 495 keys: SQLite's bound values
    {"meta": '{' + ",".join(f'"k{i}":"v"' for i in range(900)) + '}'},
    {**{f"meta[k{i}]": "v" for i in range(495)}},  # the generated JS client's wire form
    {"meta": _nested(1200)},  # RecursionError in json
    {"meta": _nested(20)},
    {"meta": '{"a": ' + "7" * 5000 + "}"},  # int-from-string digit limit in json
    {"meta": '{"a": 1e999}'},
]


def test_meta_filter_bad_input_is_400(api: httpx.Client) -> None:
    for params in BAD_META_FILTERS:
        err = assert_failure(api.get("/pins", params=params), 400)
        assert "meta" in err["details"]
    assert api.get("/pins").status_code == 200


def test_meta_filter_of_many_keys_still_works(api: httpx.Client) -> None:
    meta = {f"k{i}": "v" for i in range(64)}
    add(api, meta=meta)
    assert api.get("/pins", params={"meta": json.dumps(meta), "status": "queued"}).json()["count"] == 1


BAD_QUERIES = [
    {"match": "", "name": "x"},
    {"limit": "+5"},
    {"limit": "５"},  # full-width digit five
    {"limit": "٥"},  # Arabic-Indic five
    {"limit": " 5"},
    {"limit": "5 "},
]


def test_list_query_strictness(api: httpx.Client) -> None:
    for params in BAD_QUERIES:
        assert_failure(api.get("/pins", params=params), 400)
    assert api.get("/pins", params={"limit": "5", "match": "exact", "name": "x"}).status_code == 200


def test_several_authorization_headers_are_refused(server: Server, token: str, other_token: str) -> None:
    for pair in ([token, other_token], [token, token], ["Bearer x", token]):
        resp = server.get(server.psa_url + "/pins", headers=[("Authorization", v) for v in pair])
        err = assert_failure(resp, 401)
        assert "Authorization headers" in err["details"]
        assert resp.headers["www-authenticate"].startswith("Bearer realm=")


def test_scheme_is_case_insensitive(server: Server, token: str) -> None:
    word = token.split(" ", 1)[1]
    for scheme in ("bearer", "BEARER", "Bearer", "basic", "BASIC"):
        resp = server.get(server.psa_url + "/pins", headers={"Authorization": f"{scheme} {word}"})
        assert resp.status_code == 200, (scheme, resp.text)


def test_401_names_the_scheme(server: Server) -> None:
    for headers in ({}, {"Authorization": bearer("sub-5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY:0x00")},
                    {"Authorization": "Token abc"}):
        resp = server.get(server.psa_url + "/pins", headers=headers)
        assert_failure(resp, 401)
        assert resp.headers["www-authenticate"] == 'Bearer realm="w3gate"'


def test_cors_vary_always_and_only_the_apis_methods(start_app_server: Any, token: str) -> None:
    listed = start_app_server(env={"W3GATE_CORS_ORIGINS": "https://app.example"})
    for server, origin_allowed in ((listed, "https://app.example"), (start_app_server(), "*")):
        for origin in ("https://app.example", "https://other.example", None):
            headers = {"Authorization": token, **({"Origin": origin} if origin else {})}
            resp = server.get(server.psa_url + "/pins", headers=headers)
            assert resp.status_code == 200
            assert "origin" in resp.headers.get("vary", "").lower(), (origin_allowed, origin)
        pre = server.options(server.psa_url + "/pins", headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
        assert pre.headers["access-control-allow-origin"] == origin_allowed
        methods = {m.strip() for m in pre.headers["access-control-allow-methods"].split(",")}
        assert methods == {"GET", "HEAD", "POST", "DELETE"}
        for method in methods - {"HEAD"}:  # each one listed is served
            assert server.request(method, server.psa_url + "/pins/" + "0" * 36,
                                 headers={"Authorization": token}).status_code != 405
        for method in ("PUT", "PATCH"):
            assert server.request(method, server.psa_url + "/pins", headers={"Authorization": token}).status_code == 405


def test_healthz_details_only_for_the_operator(start_app_server: Any) -> None:
    env = {"W3GATE_CRUST_SEED": "//Alice", "W3GATE_CRUST_URL": "ws://127.0.0.1:9/"}
    server = start_app_server(env=env)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {HEALTH_TOKEN}"},
                    {"Authorization": f"Bearer {HEALTH_TOKEN}x"}):
        resp = server.get(server.base_url + "/healthz", headers=headers)
        assert resp.status_code == 200
        assert resp.json() == {"status": "ok"}
    body = server.health().json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["ordering"]["account"]  # the operator sees the account
    unset = start_app_server(env={**env, "W3GATE_HEALTH_TOKEN": ""})
    assert unset.health().json() == {"status": "ok"}  # no token configured: details to nobody
