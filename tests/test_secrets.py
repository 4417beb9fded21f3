"""Credentials in endpoint URLs never shown: not in /healthz (anyone's or the operator's), the log, or
--print-config (issue 9, item 5)."""

from __future__ import annotations

import json
import time

import httpx
from helpers import free_port
from test_lifecycle import w3gate

SECRETS = ("chainuser", "chainpass", "apikeyvalue", "pgpass", "hookpass")
CHAIN_URL = "ws://chainuser:chainpass@127.0.0.1:{port}/rpc?apikey=apikeyvalue"


def test_redact_url_hides_userinfo_and_query_values() -> None:
    from w3gate.redact import redact_url

    assert redact_url("wss://u:p@host:9944/ws?apikey=k&x=1") == "wss://***@host:9944/ws?apikey=***&x=***"
    assert redact_url("wss://key@host/?bare-secret") == "wss://***@host/?***"
    assert redact_url("postgres://w3gate:pw@db:5432/w3gate") == "postgres://***@db:5432/w3gate"
    assert redact_url("wss://rpc.crust.network") == "wss://rpc.crust.network"
    assert redact_url("sqlite:///var/lib/w3gate/w3gate.sqlite3") == "sqlite:///var/lib/w3gate/w3gate.sqlite3"
    assert redact_url("http://[::1:80/x") == "***"  # cannot be taken apart: nothing shown


def test_print_config_is_json_values_without_secrets(tmp_path) -> None:
    env = {"W3GATE_CRUST_URL": CHAIN_URL.format(port=9), "W3GATE_CRUST_SEED": "//Alice",
           "W3GATE_DATABASE_URL": "postgres://w3gate:pgpass@127.0.0.1:5432/w3gate",
           "W3GATE_CRUST_WEBHOOK": "https://ops:hookpass@ops.example/hook?token=hookpass",
           "W3GATE_HEALTH_TOKEN": "health-token-value", "W3GATE_METRICS_TOKEN": "metrics-token-value"}
    out = w3gate("serve", "--print-config", "--data-dir", str(tmp_path), env=env)
    assert out.returncode == 0, out.stderr
    conf = json.loads(out.stdout)
    crust = conf["crust"]
    assert isinstance(crust, dict)  # TOML/JSON values, not a Python repr string
    assert crust["url"] == "ws://***@127.0.0.1:9/rpc?apikey=***"
    assert crust["webhook"] == "https://***@ops.example/hook?token=***"
    assert crust["seed"] == "***" and crust["replicas"] == 3 and crust["rpc_timeout"] == 20.0
    assert conf["database_url"] == "postgres://***@127.0.0.1:5432/w3gate"
    assert conf["health_token"] == "***" and conf["metrics_token"] == "***"
    for secret in (*SECRETS, "//Alice", "health-token-value", "metrics-token-value"):
        assert secret not in out.stdout + out.stderr, secret


def test_chain_endpoint_credentials_not_in_healthz_or_log(start_server) -> None:
    port = free_port()  # nothing listens: every connection attempt fails and is logged with the URL
    server = start_server(env={"W3GATE_CRUST_SEED": "//Alice", "W3GATE_CRUST_URL": CHAIN_URL.format(port=port),
                               "W3GATE_LOG_LEVEL": "debug"})
    deadline = time.monotonic() + 30
    while "cannot reach" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    detailed = server.health()
    assert detailed.json()["ordering"]["chain_url"] == f"ws://***@127.0.0.1:{port}/rpc?apikey=***"
    assert "cannot reach" in (detailed.json()["ordering"]["last_error"] or "")
    anonymous = httpx.get(server.base_url + "/healthz")
    assert server.stop() == 0
    log = server.log_text()
    assert "cannot reach ws://***@127.0.0.1" in log
    for text in (anonymous.text, detailed.text, log):
        for secret in SECRETS:
            assert secret not in text, secret
