"""No text a client sends is a 500: characters a database cannot store are the spec's 400, on every database.

PostgreSQL cannot store U+0000 in text, and neither database (nor UTF-8) holds a lone surrogate, so every
field of a Pin and every filter of ``GET /pins`` refuses them with a Failure naming the field, the same on
SQLite (one contract for clients). The property tests send random text, control characters, NULs and
surrogate escapes over HTTP to a running server; the suite's PostgreSQL pass runs them there too.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, quote_from_bytes

import httpx
import pytest
from helpers import Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
ORIGIN = "/ip4/203.0.113.142/tcp/4001/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_spec_failure(resp: httpx.Response, status: int | None = None) -> dict[str, str]:
    """A 4xx with exactly the spec's Failure body (and never a 5xx)."""
    assert resp.status_code < 500, resp.text
    if status is not None:
        assert resp.status_code == status, resp.text
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"reason", "details"}, body
    assert body["error"]["reason"] and isinstance(body["error"]["reason"], str)
    assert body["error"]["details"] and isinstance(body["error"]["details"], str)
    return body["error"]


@pytest.fixture
def api(server: Server, token: str) -> Any:
    with server.client(token) as c:
        yield c


def post_raw(api: httpx.Client, url: str, body: str) -> httpx.Response:
    """``body`` as given (stdlib JSON escapes a lone surrogate as ``\\ud800``; httpx's own would too)."""
    return api.post(url, content=body.encode(), headers={"Content-Type": "application/json"})


BAD_PINS = [  # (Pin object, the field its Failure must name)
    ({"cid": CID, "name": "a\x00b"}, "name"),
    ({"cid": CID, "name": "\ud800"}, ""),  # orjson refuses a lone surrogate escape: "not valid JSON"
    ({"cid": CID, "meta": {"k\x00": "v"}}, "meta"),
    ({"cid": CID, "meta": {"k": "v\x00"}}, "meta"),
    ({"cid": CID, "meta": {"k": "\udfff"}}, ""),
    ({"cid": CID + "\x00"}, "cid"),
    ({"cid": "\x00"}, "cid"),
    ({"cid": CID, "origins": [ORIGIN + "\x00"]}, "origins"),
    ({"cid": CID, "origins": ["\x00"]}, "origins"),
]


@pytest.mark.parametrize(("pin", "field"), BAD_PINS)
def test_unstorable_text_in_a_pin_is_a_400_naming_the_field(api: httpx.Client, pin: dict, field: str) -> None:
    body = json.dumps(pin)
    created = api.post("/pins", json={"cid": CID}).json()["requestid"]
    for url in ("/pins", f"/pins/{created}"):  # add, and replace
        err = assert_spec_failure(post_raw(api, url, body), 400)
        assert field in err["details"], err
        if not field:
            assert "JSON" in err["details"]
    assert api.get(f"/pins/{created}").status_code == 200  # the replace changed nothing


BAD_FILTERS = [  # (raw query string, the filter its Failure must name)
    ("cid=%00", "cid"),
    (f"cid={CID}%00", "cid"),
    ("name=a%00b", "name"),
    ("name=%00&match=partial", "name"),
    ("name=x&match=exact%00", "match"),
    ("status=pinned%00", "status"),
    ("before=2020-07-27T17:32:28Z%00", "before"),
    ("after=%002020-07-27T17:32:28Z", "after"),
    ("limit=1%00", "limit"),
    ("meta=" + quote(json.dumps({"k\x00": "v"})), "meta"),
    ("meta=" + quote(json.dumps({"k": "v\x00"})), "meta"),
    ("meta=" + quote('{"k": "\\ud800"}'), "meta"),
    ("meta%5Bk%00%5D=v", "meta"),
    ("meta%5Bk%5D=v%00", "meta"),
    ("meta%5Bk%5D=%ED%A0%80", ""),  # a surrogate's UTF-8 form is invalid UTF-8: read as U+FFFD, a fine value
]


@pytest.mark.parametrize(("query", "field"), BAD_FILTERS)
def test_unstorable_text_in_a_filter_is_a_400_naming_it(api: httpx.Client, query: str, field: str) -> None:
    api.post("/pins", json={"cid": CID, "name": "n", "meta": {"k": "v"}})
    resp = api.get("/pins?" + query)
    if not field:
        assert resp.status_code == 200, resp.text
        return
    err = assert_spec_failure(resp, 400)
    assert field in err["details"], err


# -- properties: random text anywhere, never a 5xx -----------------------------------------------------

# NUL and the C0/C1 controls weighted up among all code points; now and then a lone surrogate (a JSON escape)
ANY_CHAR = st.one_of(st.sampled_from(["\x00", "\x01", "\x1f", "\x7f", "\x85", "\ufffe"]), st.characters(codec=None))
TEXT = st.text(ANY_CHAR, max_size=40)
TEXT = st.one_of(TEXT, TEXT, TEXT, st.builds(lambda a, b: a + "\ud800" + b, TEXT, TEXT))
CIDS = st.one_of(st.just(CID), st.just(CID), st.just(CID), TEXT, st.builds(lambda s: CID + s, TEXT))
ORIGINS = st.one_of(st.just(ORIGIN), st.just(ORIGIN), TEXT, st.builds(lambda s: ORIGIN + s, TEXT))
PINS = st.fixed_dictionaries(
    {"cid": CIDS},
    optional={"name": st.one_of(st.none(), TEXT), "origins": st.lists(ORIGINS, max_size=2, unique=True),
              "meta": st.dictionaries(TEXT, TEXT, max_size=3)},
)
# a query value as a client can put it in a URL: text as UTF-8, or any bytes at all
QUERY_VALUE = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40).map(lambda s: quote(s, safe="")),
    st.binary(max_size=20).map(lambda b: quote_from_bytes(b, safe="")),
    st.dictionaries(TEXT, TEXT, max_size=2).map(lambda d: quote(json.dumps(d), safe="")),
    st.sampled_from(["pinned", "queued,failed", "2020-07-27T17:32:28Z", "10", "partial", CID]),
)
QUERY_KEY = st.one_of(st.sampled_from(["cid", "name", "match", "status", "before", "after", "limit", "meta"]),
                      QUERY_VALUE.map(lambda v: f"meta%5B{v}%5D"))
QUERIES = st.lists(st.tuples(QUERY_KEY, QUERY_VALUE), max_size=4).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))


def assert_no_fault(resp: httpx.Response) -> None:
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert_spec_failure(resp)


@PROPERTY
@given(pin=PINS)
def test_random_pins_are_never_a_5xx(api: httpx.Client, pin: dict) -> None:
    resp = post_raw(api, "/pins", json.dumps(pin))
    assert_no_fault(resp)
    if resp.status_code == 202:  # stored: it reads back as sent, and can be replaced by another random pin
        requestid = resp.json()["requestid"]
        assert api.get(f"/pins/{requestid}").json()["pin"].get("name") == pin.get("name")
        assert_no_fault(post_raw(api, f"/pins/{requestid}", json.dumps(pin)))


@PROPERTY
@given(query=QUERIES)
def test_random_filters_are_never_a_5xx(api: httpx.Client, query: str) -> None:
    assert_no_fault(api.get("/pins?" + query))
