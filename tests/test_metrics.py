"""``GET /metrics`` and the JSON log of a running ``w3gate serve``, over real HTTP after real traffic.

One service for the module (``metrics_token`` set, ``log_format = "json"``); its scrape is parsed with
prometheus_client's own parser and checked by Prometheus' ``promtool check metrics``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import database_url_for_test
from helpers import Server, bearer, start_server_process, substrate_token
from prometheus_client.parser import text_string_to_metric_families

from w3gate.plugins import load_chains
from w3gate.w3auth.authenticator import Authenticator

METRICS_TOKEN = "operator-metrics-token-for-tests"
CIDS = [
    "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
    "bafkreidgvpkjawlxz6sffxzwgooowe5yt7i6wsyg236mfoks77nywkptdq",
    "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("metrics")
    server = start_server_process(data_dir=data_dir, database_url=database_url_for_test(),
                                  env={"W3GATE_METRICS_TOKEN": METRICS_TOKEN, "W3GATE_LOG_FORMAT": "json"})
    yield server
    server.stop()


def scrape(server: Server) -> str:
    resp = server.get(server.base_url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return resp.text


def samples(text: str) -> Samples:
    """Every sample of a scrape, parsed by prometheus_client: (name, labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_token_is_required(service: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {METRICS_TOKEN}"}):
        resp = service.get(service.base_url + "/metrics", headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"]["reason"] == "UNAUTHORIZED"
        assert "w3gate_" not in resp.text


def test_counts_follow_the_traffic(service: Server) -> None:
    alice, bob = (substrate_token(f"//{name}{uuid.uuid4().hex}") for name in ("Alice", "Bob"))  # new keys
    forged = bearer("sub-5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY:0x" + "00" * 64)
    before = samples(scrape(service))
    with service.client(alice) as api:
        ids = [api.post("/pins", json={"cid": cid}).json()["requestid"] for cid in CIDS]
        assert api.get("/pins").status_code == 200
        unknown = str(uuid.uuid4())
        assert api.get(f"/pins/{unknown}").status_code == 404
        assert api.delete(f"/pins/{ids[0]}").status_code == 202
    with service.client(bob) as api:
        assert api.post("/pins", json={"cid": CIDS[1]}).status_code == 202  # a content already wanted
    for _ in range(2):
        assert service.get(service.psa_url + "/pins", headers={"Authorization": forged}).status_code == 401
    assert service.get(service.psa_url + "/pins").status_code == 401
    assert service.get(service.base_url + "/no/such/route").status_code == 404
    for method in ("BREW1", "BREW2"):  # any method token: counted as "other", not one label set each
        assert service.request(method, service.base_url + "/healthz").status_code == 405
    requests = "w3gate_http_requests_total"

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    deadline = time.monotonic() + 10  # a request is counted just after its answer is sent: the last one may lag
    while True:
        text = scrape(service)
        after = samples(text)
        if delta(requests, route="unmatched", method="other", status="405") == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert delta(requests, route="/psa/pins", method="POST", status="202") == 4
    assert delta(requests, route="/psa/pins", method="GET", status="200") == 1
    assert delta(requests, route="/psa/pins", method="GET", status="401") == 3
    assert delta(requests, route="/psa/pins/<requestid>", method="GET", status="404") == 1
    assert delta(requests, route="/psa/pins/<requestid>", method="DELETE", status="202") == 1
    assert delta(requests, route="unmatched", method="GET", status="404") == 1
    assert delta(requests, route="unmatched", method="other", status="405") == 2
    assert unknown not in text and "/no/such/route" not in text  # route templates, never raw paths
    assert "BREW" not in text
    duration = "w3gate_http_request_duration_seconds"
    post = {"route": "/psa/pins", "method": "POST", "status": "202"}
    assert delta(duration + "_count", **post) == 4
    assert delta(duration + "_bucket", le="+Inf", **post) == 4
    assert delta(duration + "_sum", **post) > 0

    assert delta("w3gate_auth_results_total", result="ok") == 7
    assert delta("w3gate_auth_results_total", result="invalid_signature") == 2
    assert delta("w3gate_auth_results_total", result="missing") == 1
    cache = "w3gate_token_cache_lookups_total"
    assert delta(cache, result="miss") == 3  # Alice's, Bob's and the forged token's first use: checked
    assert delta(cache, result="hit") == 5  # 7 authenticated requests, 2 of them checked
    assert delta(cache, result="rejected") == 1  # the forged token again: remembered as rejected
    # ordering is off: every pin stays queued. Alice's first pin is deleted; its content is ordered by nobody
    # else, so 2 orders are queued (Bob's pin shares the second content)
    assert value(after, "w3gate_pins", status="queued") == 3
    assert value(after, "w3gate_pins", status="pinned") == 0
    assert value(after, "w3gate_orders_queued") == 2
    assert value(after, "w3gate_crust_ordering_enabled") == 0
    assert ("w3gate_crust_account_balance", frozenset({("kind", "free")})) not in after  # no account: no balance
    assert value(after, "process_cpu_seconds_total") > 0


def test_promtool_accepts_the_scrape(service: Server) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("W3GATE_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is missing and W3GATE_REQUIRE_PROMTOOL=1 (Debian package prometheus)")
        pytest.skip("promtool not installed (Debian package prometheus)")
    with service.client(substrate_token("//Alice")) as api:  # every family with samples: histograms included
        assert api.get("/pins").status_code == 200
    text = scrape(service)
    assert "w3gate_http_request_duration_seconds_bucket" in text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == "", check.stdout + check.stderr  # no lint findings


def test_json_log_has_the_access_fields_and_no_secrets(service: Server) -> None:
    token = substrate_token(f"//Charlie{uuid.uuid4().hex}")
    user = Authenticator(load_chains()).authenticate_sync(token).user_key
    marker = uuid.uuid4().hex
    with service.client(token) as api:
        assert api.get("/pins", params={"name": f"secret-{marker}"}).status_code == 200
    assert service.get(service.base_url + f"/psa/pins/{marker}").status_code == 401
    chain, _, account = user.partition(":")
    short = f"{chain}:{account[:12]}"

    def records() -> list[dict]:  # the complete lines so far
        text = service.log_text()
        return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]

    def ours(found: list[dict]) -> list[dict]:
        return [r for r in found if r["logger"] == "w3gate.access"
                and (r["user"] == short or r["path"] == f"/psa/pins/{marker}")]

    deadline = time.monotonic() + 10  # a request's line is written just after its answer is sent: wait a while
    while len(ours(records())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    found = records()
    assert all(isinstance(r, dict) and {"time", "level", "logger", "message"} <= set(r) for r in found)
    access = [r for r in found if r["logger"] == "w3gate.access"]
    listed = [r for r in access if r["user"] == short]
    assert len(listed) == 1
    assert listed[0]["method"] == "GET" and listed[0]["path"] == "/psa/pins" and listed[0]["status"] == 200
    assert isinstance(listed[0]["duration_ms"], float) and listed[0]["duration_ms"] >= 0
    refused = [r for r in access if r["path"] == f"/psa/pins/{marker}"]
    assert len(refused) == 1 and refused[0]["status"] == 401 and refused[0]["user"] == "-"
    log = service.log_text()
    assert f"secret-{marker}" not in log  # the query string is never logged
    assert token.split()[1] not in log and METRICS_TOKEN not in log


def test_metrics_open_without_a_token(server: Server) -> None:
    """``metrics_token`` unset: anyone who can reach the port may scrape (documented)."""
    resp = server.get(server.base_url + "/metrics")
    assert resp.status_code == 200
    assert "w3gate_pins" in {f.name for f in text_string_to_metric_families(resp.text)}


def test_log_format_is_validated() -> None:
    from w3gate.config import ConfigError, load_settings

    assert load_settings(env={"W3GATE_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="log_format"):
        load_settings(env={"W3GATE_LOG_FORMAT": "xml"})


def test_order_verdicts_by_outcome() -> None:
    """A batch's verdict counts (as resolve_tx returns them) become w3gate_orders_total by outcome."""
    from w3gate.metrics import Metrics

    metrics = Metrics()
    metrics.order_verdicts({"ok": 5, "renewed": 2, "topped": 1, "fail": 3, "failed": 1, "requeue": 0, "pause": 4})
    found = samples(metrics.render().decode())
    got = {dict(labels)["outcome"]: v for (name, labels), v in found.items() if name == "w3gate_orders_total"}
    assert got == {"placed": 3, "renewed": 2, "topped_up": 1, "retry": 2, "failed": 1, "paused": 4}


def test_limits_hit_and_bound_token_refusals_are_counted(tmp_path) -> None:
    """A refusal by a limit counts under its limit's name, a bound token's refusal under its reason."""
    from w3gate.w3auth.bound import encode_token

    server = start_server_process(data_dir=tmp_path, database_url=database_url_for_test(),
                                  env={"W3GATE_METRICS_TOKEN": METRICS_TOKEN, "W3GATE_LIMITS_PINS_PER_USER": "1"})
    try:
        with server.client(substrate_token(f"//Carol{uuid.uuid4().hex}")) as api:
            assert api.post("/pins", json={"cid": CIDS[0]}).status_code == 202
            refused = api.post("/pins", json={"cid": CIDS[1]})
            assert refused.status_code == 403 and refused.json()["error"]["reason"] == "PINS_PER_USER"
        garbage = encode_token("not a sign-in message", b"\x00" * 64)
        assert server.get(server.base_url + "/psa/pins", headers={"Authorization": f"Bearer {garbage}"}
                         ).status_code == 401
        found = samples(scrape(server))
    finally:
        server.stop()
    assert value(found, "w3gate_limits_hit_total", limit="pins_per_user") == 1
    assert value(found, "w3gate_auth_results_total", result="malformed") == 1
    assert value(found, "w3gate_auth_results_total", result="ok") == 2
