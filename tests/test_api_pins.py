"""The Pinning Service API against the service's app: in-process (tests/inprocess.py), or a running
``w3gate serve`` when W3GATE_TEST_COMMAND names a build (the binary pass) and where a test needs a process."""

from __future__ import annotations

import concurrent.futures
import json
import re
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from helpers import Server, bearer

from w3gate.plugins import load_chains

CID_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
CID_V1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
CIDS = [
    "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
    "bafkreidgvpkjawlxz6sffxzwgooowe5yt7i6wsyg236mfoks77nywkptdq",
    "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am",
    "bafkreiabltrd5zm73pvi7plq25pef3hm7jxhbi3kv4hapegrkfpkqtkbme",
    "bafkreib3vwkrhtsw5xmgyfyuzshf3bgqyo2y2sywzgszgbkpgv5shscwtu",
    "bafkreihcd7dqkcsxiy3kvyuh2h7sxrgfkjbzfnokqzkvycvwkibimn6ytu",
    "bafkreidwk2xsx7qbzq3ptvpxx7gkxaydqxjtqdi4oxk2mllz4mstdxjwuu",
    "bafkreiezx2tx4ex5mxjdnmjkudwunzswzbfsqxgmp4pukwaoytabiejkvi",
    "bafkreig6ylslysmsgffjzgsrxpmftynqqg3uc6ebrrj4dhiy233wd5oyaq",
    "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy",
]
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def assert_failure(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["reason"], str) and body["error"]["reason"]
    assert isinstance(body["error"]["details"], str) and body["error"]["details"]
    return body["error"]


@pytest.fixture
def api(server: Server, token: str) -> httpx.Client:
    with server.client(token) as c:
        yield c


def add(api: httpx.Client, cid: str = CID_V1, **pin: object) -> dict:
    resp = api.post("/pins", json={"cid": cid, **pin})
    assert resp.status_code == 202, resp.text
    return resp.json()


def test_add_get_shape(api: httpx.Client) -> None:
    st = add(api, CID_V0, name="PreciousData.pdf", meta={"app_id": "x"},
             origins=["/ip4/203.0.113.142/tcp/4001/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"])
    assert set(st) >= {"requestid", "status", "created", "pin", "delegates"}
    assert st["status"] == "queued"
    assert RFC3339_MS.match(st["created"])
    assert st["pin"] == {"cid": CID_V0, "name": "PreciousData.pdf", "meta": {"app_id": "x"},
                         "origins": ["/ip4/203.0.113.142/tcp/4001/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"]}
    assert 1 <= len(st["delegates"]) <= 20 and all("/p2p/" in d for d in st["delegates"])
    assert isinstance(st["info"], dict)
    got = api.get(f"/pins/{st['requestid']}")
    assert got.status_code == 200
    assert got.json() == st


def test_requestid_new_for_every_request(api: httpx.Client) -> None:
    a, b = add(api, CID_V1), add(api, CID_V1)
    assert a["requestid"] != b["requestid"]
    assert a["created"] != b["created"]


def test_created_unique_and_immutable_under_burst(server: Server, token: str) -> None:
    """A real burst: 30 POSTs on 10 connections, released together by a barrier, so that several reach
    the service within one millisecond; each gets its own ``created``, which a GET then returns unchanged."""
    clients = [server.client(token) for _ in range(10)]
    barrier = threading.Barrier(len(clients))

    def burst(c: httpx.Client) -> list[dict]:
        c.get("/pins")  # connected and authenticated before the barrier
        barrier.wait()
        return [add(c, CIDS[i % 3]) for i in range(3)]

    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        made = [st for batch in pool.map(burst, clients) for st in batch]
    created = [st["created"] for st in made]
    assert len(made) == 30 and len(set(created)) == 30
    for st in made:
        assert clients[0].get(f"/pins/{st['requestid']}").json()["created"] == st["created"]
    for c in clients:
        c.close()


def test_replace_is_atomic_delete_and_create(api: httpx.Client) -> None:
    old = add(api, CID_V0, name="old")
    resp = api.post(f"/pins/{old['requestid']}", json={"cid": CID_V1, "name": "new"})
    assert resp.status_code == 202, resp.text
    new = resp.json()
    assert new["requestid"] != old["requestid"]
    assert new["pin"]["cid"] == CID_V1 and new["pin"]["name"] == "new"
    assert_failure(api.get(f"/pins/{old['requestid']}"), 404)
    assert api.get(f"/pins/{new['requestid']}").status_code == 200
    # replacing with an invalid pin leaves the old one in place
    assert_failure(api.post(f"/pins/{new['requestid']}", json={"cid": "nope"}), 400)
    assert api.get(f"/pins/{new['requestid']}").status_code == 200
    assert_failure(api.post("/pins/00000000-0000-0000-0000-000000000000", json={"cid": CID_V1}), 404)


def test_delete(api: httpx.Client) -> None:
    st = add(api)
    resp = api.delete(f"/pins/{st['requestid']}")
    assert resp.status_code == 202
    assert resp.content == b""
    assert_failure(api.get(f"/pins/{st['requestid']}"), 404)
    assert_failure(api.delete(f"/pins/{st['requestid']}"), 404)


def test_list_defaults_to_pinned_only_without_filters(api: httpx.Client) -> None:
    add(api, name="n")
    resp = api.get("/pins")
    assert resp.status_code == 200
    assert resp.json() == {"count": 0, "results": []}
    # a request naming no status lists pinned pins only, whatever it filters by (the spec; Helia's
    # isPinned(cid) asks with cid= alone: a queued pin is not pinned)
    assert api.get("/pins", params={"cid": CID_V1}).json()["count"] == 0
    assert api.get("/pins", params={"cid": CID_V1, "status": "queued"}).json()["count"] == 1
    # the one departure (docs/api.md): name without status lists every status, as the conformance suite requires
    assert api.get("/pins", params={"name": "n"}).json()["count"] == 1
    assert api.get("/pins", params={"status": "queued"}).json()["count"] == 1
    assert api.get("/pins", params={"status": "queued,pinning,pinned,failed"}).json()["count"] == 1
    assert api.get("/pins", params={"status": "pinned"}).json()["count"] == 0
    # limit alone is not a filter
    assert api.get("/pins", params={"limit": 5}).json()["count"] == 0


def test_list_newest_first_limit_and_pagination(api: httpx.Client) -> None:
    made = [add(api, CIDS[i])["requestid"] for i in range(7)]
    page = api.get("/pins", params={"status": "queued", "limit": 3}).json()
    assert page["count"] == 7
    assert [r["requestid"] for r in page["results"]] == made[::-1][:3]
    seen = []
    before = None
    while True:
        params = {"status": "queued", "limit": 2}
        if before:
            params["before"] = before
        res = api.get("/pins", params=params).json()
        if not res["results"]:
            break
        seen += [r["requestid"] for r in res["results"]]
        before = res["results"][-1]["created"]
    assert seen == made[::-1]
    # after: strictly later
    mid = api.get(f"/pins/{made[3]}").json()["created"]
    later = api.get("/pins", params={"after": mid, "status": "queued", "limit": 100}).json()
    assert [r["requestid"] for r in later["results"]] == made[4:][::-1]


def test_list_by_cid_and_name_matching(api: httpx.Client) -> None:
    add(api, CIDS[0], name="Holiday Photos")
    add(api, CIDS[1], name="holiday photos")
    add(api, CIDS[2], name="work")
    q = lambda **p: api.get("/pins", params=p).json()["count"]  # noqa: E731
    assert q(cid=f"{CIDS[0]},{CIDS[2]}", status="queued") == 2
    assert q(name="Holiday Photos") == 1
    assert q(name="holiday photos", match="exact") == 1
    assert q(name="HOLIDAY PHOTOS", match="iexact") == 2
    assert q(name="Photo", match="partial") == 1
    assert q(name="photo", match="partial") == 1
    assert q(name="PHOTO", match="ipartial") == 2
    assert q(name="%", match="partial") == 0  # LIKE wildcards are literal


def test_list_by_meta_both_wire_forms(api: httpx.Client) -> None:
    add(api, CIDS[0], meta={"app_id": "a", "env": "prod"})
    add(api, CIDS[1], meta={"app_id": "a", "env": "test"})
    add(api, CIDS[2], meta={"app_id": "b"})
    q = lambda **p: api.get("/pins", params={"status": "queued", **p}).json()["count"]  # noqa: E731
    assert q(meta=json.dumps({"app_id": "a"})) == 2
    assert q(meta=json.dumps({"app_id": "a", "env": "prod"})) == 1
    assert q(meta=json.dumps({"app_id": "zzz"})) == 0
    assert q(**{"meta[app_id]": "a", "meta[env]": "test"}) == 1


def test_users_see_only_their_own_pins(server: Server, token: str, other_token: str) -> None:
    with server.client(token) as alice, server.client(other_token) as bob:
        st = add(alice)
        assert_failure(bob.get(f"/pins/{st['requestid']}"), 404)
        assert_failure(bob.delete(f"/pins/{st['requestid']}"), 404)
        assert_failure(bob.post(f"/pins/{st['requestid']}", json={"cid": CID_V0}), 404)
        assert bob.get("/pins", params={"status": "queued"}).json()["count"] == 0
        assert alice.get("/pins", params={"status": "queued"}).json()["count"] == 1


def test_same_key_any_alias_or_address_form_is_one_user(server: Server) -> None:
    from substrateinterface import Keypair

    kp = Keypair.create_from_uri("//Charlie", ss58_format=66)
    forms = []
    for fmt in (0, 2, 42, 66):
        address = Keypair(public_key=kp.public_key, ss58_format=fmt).ss58_address
        forms.append(address)
    forms.append("0x" + kp.public_key.hex())
    tokens = [bearer(f"{ct}-{a}:0x{kp.sign(a.encode()).hex()}") for ct, a in zip(
        ["sub", "substrate", "crust", "cru", "SUB"], forms, strict=True)]
    with server.client(tokens[0]) as c:
        st = add(c)
    for t in tokens[1:]:
        with server.client(t) as c:
            assert c.get(f"/pins/{st['requestid']}").status_code == 200, t


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "JSON"),
        (b"", "empty"),
        (b"[]", "object"),
        (b'"QmX"', "object"),
        (b"{}", "cid"),
        (b'{"cid": 5}', "cid"),
        (b'{"cid": "not-a-cid"}', "CID"),
        (b'{"cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "name": 7}', "name"),
        (b'{"cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "name": "' + b"x" * 256 + b'"}', "name"),
        (b'{"cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "origins": "x"}', "origins"),
        (b'{"cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "origins": ["/ip4/1.2.3.4/tcp/1"]}', "p2p"),
        (b'{"cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "meta": {"a": 1}}', "meta"),
        (b'{"cid": "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "meta": []}', "meta"),
        (b"\xff\xfe", "JSON"),
    ],
)
def test_bad_pin_bodies(api: httpx.Client, body: bytes, fragment: str) -> None:
    err = assert_failure(api.post("/pins", content=body, headers={"Content-Type": "application/json"}), 400)
    assert fragment.lower() in err["details"].lower()
    assert api.get("/pins").status_code == 200  # still serving


def test_too_many_origins(api: httpx.Client) -> None:
    origins = [f"/ip4/10.0.0.{i}/tcp/4001/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN" for i in range(21)]
    assert_failure(api.post("/pins", json={"cid": CID_V1, "origins": origins}), 400)
    assert add(api, origins=origins[:20])["pin"]["origins"] == origins[:20]


def test_oversized_body(api: httpx.Client) -> None:
    big = {"cid": CID_V1, "meta": {f"k{i}": "v" * 1000 for i in range(400)}}
    err = assert_failure(api.post("/pins", json=big), 413)
    assert "larger" in err["details"]


@pytest.mark.parametrize(
    "params",
    [
        {"cid": ",".join(CIDS)},  # 11 CIDs
        {"cid": "notacid"},
        {"cid": f"{CID_V1},{CID_V1}"},
        {"cid": ""},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"limit": "-1"},
        {"before": "yesterday"},
        {"before": "2020-07-27 17:32:28Z"},
        {"after": "2020-13-27T17:32:28Z"},
        {"after": "2020-07-27T17:32:28"},
        {"status": "done"},
        {"status": "queued,"},
        {"match": "fuzzy", "name": "x"},
        {"meta": "{bad json"},
        {"meta": "[1,2]"},
        {"meta": '{"a": 1}'},
        {"name": "n" * 256},
    ],
)
def test_bad_list_queries(api: httpx.Client, params: dict) -> None:
    assert_failure(api.get("/pins", params=params), 400)
    assert api.get("/pins").status_code == 200


def test_list_limits_accepted(api: httpx.Client) -> None:
    assert api.get("/pins", params={"limit": 1}).status_code == 200
    assert api.get("/pins", params={"limit": 1000}).status_code == 200
    assert api.get("/pins", params={"cid": ",".join(CIDS[:10])}).status_code == 200
    ts = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert api.get("/pins", params={"before": ts}).status_code == 200
    assert api.get("/pins", params={"before": "2020-07-27T17:32:28.276+02:00"}).status_code == 200


def test_unknown_requestid_and_routes(api: httpx.Client) -> None:
    assert_failure(api.get("/pins/does-not-exist"), 404)
    assert_failure(api.get("/nothing-here"), 404)
    assert_failure(api.put("/pins", json={"cid": CID_V1}), 405)
    assert_failure(api.patch("/pins/x", json={}), 405)


def test_auth_errors(server: Server) -> None:
    with server.client() as anon:
        err = assert_failure(anon.get("/pins"), 401)
        assert err == {"reason": "UNAUTHORIZED", "details": "Empty Signature"}
    with server.client(bearer("sub-5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY:0x00")) as bad:
        err = assert_failure(bad.get("/pins"), 401)
        assert err["details"] == "Invalid Signature"
    with server.client(bearer("nochain-abc:0x00")) as bad:
        err = assert_failure(bad.get("/pins"), 401)
        assert err["details"] == "Unsupported web3 signature"
    with server.client("Bearer") as bad:
        assert_failure(bad.post("/pins", json={"cid": CID_V1}), 401)


def test_cors_preflight_needs_no_token(server: Server, token: str) -> None:
    resp = server.options(server.psa_url + "/pins", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert resp.status_code == 204
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "authorization" in resp.headers["access-control-allow-headers"].lower()
    resp = server.get(server.psa_url + "/pins", headers={"Origin": "https://app.example", "Authorization": token})
    assert resp.headers["access-control-allow-origin"] == "*"


def test_basic_scheme_and_healthz(server: Server, token: str) -> None:
    basic = token.replace("Bearer ", "Basic ")
    assert server.get(server.psa_url + "/pins", headers={"Authorization": basic}).status_code == 200
    h = server.health()
    assert h.status_code == 200
    body = h.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert "substrate" in body["chains"]


def test_token_and_user_data_never_logged(start_server, token: str) -> None:
    """At debug, the most any logger says (the server's log is every logger's output: the root handler), no
    token, signature, owner, pin name or meta value appears; the rejection's debug line does (so the level
    really was debug). With ``log_sql`` the operator gets the statements with their parameters."""
    from w3gate.w3auth.authenticator import Authenticator

    owner = Authenticator(load_chains()).authenticate_sync(token).user_key
    rejected = bearer("sub-5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY:0xdeadbeef")
    for log_sql in ("false", "true"):
        server = start_server(env={"W3GATE_LOG_LEVEL": "debug", "W3GATE_LOG_SQL": log_sql})
        with server.client(token) as c:
            add(c, name="name-in-no-log", meta={"app": "meta-in-no-log"})
            c.get("/pins", params={"name": "name-in-no-log"})
        with server.client(rejected) as c:
            c.get("/pins")
        assert server.stop() == 0
        text = server.log_text()
        assert " rejected: " in text and " DEBUG " in text  # the debug path was logged
        assert token.split(" ", 1)[1] not in text
        assert "deadbeef" not in text
        user_data = [owner in text, "name-in-no-log" in text, "meta-in-no-log" in text]
        assert user_data == ([False] * 3 if log_sql == "false" else [True] * 3), log_sql


def _text_forms(cid: str) -> list[str]:
    """18 text forms of one CID: v0, v1 in 16 multibases, and v1 base32 in mixed case."""
    from multiformats import CID

    v1 = CID.decode(cid).set(version=1)
    bases = ["base32", "base32upper", "base58btc", "base58flickr", "base36", "base36upper", "base16",
             "base16upper", "base32hex", "base32hexupper", "base32pad", "base32padupper", "base32z", "base64",
             "base64url", "base64urlpad"]
    forms = [str(v1.set(version=0, base="base58btc"))] + [v1.encode(b) for b in bases]
    forms.append("b" + forms[1][1:].upper())  # a case-insensitive base's case
    assert len(set(forms)) == 18 and all(str(CID.decode(f).set(version=1, base="base32")) == forms[1] for f in forms)
    return forms


def _database_rows(server: Server, sql: str) -> list[dict]:
    """Rows from the server's own database (SQLite file or PostgreSQL), read with the store's client."""
    import trio
    from tortoise import connections

    from w3gate.store.db import Database

    async def read() -> list[dict]:
        db = Database(server.env.get("W3GATE_DATABASE_URL") or f"sqlite://{server.data_dir / 'w3gate.sqlite3'}")
        await db.open()
        try:
            async def query(h) -> list[dict]:
                return list(await connections.get(db.connection_name).execute_query_dict(sql))

            return await db.run(query)
        finally:
            await db.close()

    return trio.run(read)


def test_one_content_in_18_text_forms_is_one_order(server: Server, token: str, other_token: str) -> None:
    forms = _text_forms(CID_V0)
    with server.client(token) as alice, server.client(other_token) as bob:
        made = {}
        for i, form in enumerate(forms):
            st = add(bob if i % 3 == 0 else alice, form, name=f"form{i}")
            assert st["pin"]["cid"] == form  # the user's own text comes back
            made[form] = st["requestid"]
        for i, form in enumerate(forms):
            got = (bob if i % 3 == 0 else alice).get(f"/pins/{made[form]}").json()
            assert got["pin"]["cid"] == form
        alice_forms = {f for i, f in enumerate(forms) if i % 3}
        for form in forms:  # a cid filter in any form finds every form pinned
            listed = alice.get("/pins", params={"cid": form, "status": "queued", "limit": 100}).json()
            assert listed["count"] == 12
            assert {r["pin"]["cid"] for r in listed["results"]} == alice_forms
        # the spec's comma list, several forms of one content and another content
        add(alice, CIDS[0])
        assert alice.get("/pins", params={"cid": f"{forms[5]},{forms[0]},{CIDS[0]}", "status": "queued"}).json()[
            "count"] == 13
        assert alice.get("/pins", params={"cid": CID_V1, "status": "queued"}).json()["count"] == 0  # other content
    assert server.stop() == 0
    orders = _database_rows(server, "SELECT cid, cid_key FROM orders ORDER BY cid")
    assert len(orders) == 2  # the 18 forms: one order; CIDS[0]: one
    assert {o["cid_key"] for o in orders} == {forms[1], CIDS[0]}
    assert {o["cid"] for o in orders} == {CID_V0, CIDS[0]}  # ordered as Crust's nodes report it (v0 for dag-pb)
    keys = _database_rows(server, "SELECT DISTINCT cid_key FROM pins")
    assert sorted(k["cid_key"] for k in keys) == sorted([forms[1], CIDS[0]])


def _identity_cids() -> list[str]:
    from multiformats import CID, multihash

    inline = multihash.wrap(b"hello", "identity")
    return ["bafkqaaa", str(CID("base32", 1, "raw", inline)), CID("base32", 1, "raw", inline).encode("base58btc"),
            str(CID("base32", 1, "dag-pb", inline)), str(CID("base32", 1, "dag-cbor", multihash.wrap(b"", "identity")))]


@pytest.mark.parametrize("cid", _identity_cids())
def test_identity_cids_hold_nothing_to_store(api: httpx.Client, cid: str) -> None:
    err = assert_failure(api.post("/pins", json={"cid": cid}), 400)
    assert err["reason"] == "BAD_REQUEST"
    assert "no data to store" in err["details"] and "identity" in err["details"]
    st = add(api, CID_V1)
    assert_failure(api.post(f"/pins/{st['requestid']}", json={"cid": cid}), 400)  # replace: refused too
    assert api.get(f"/pins/{st['requestid']}").json()["pin"]["cid"] == CID_V1
