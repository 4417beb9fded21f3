"""The example configuration is valid and documents every setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from w3gate.config import SCALARS, ConfigError, load_settings
from w3gate.crust import settings as crust_settings

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "w3gate.example.toml"


def test_example_config_loads() -> None:
    s = load_settings(EXAMPLE, env={})
    assert s.port == 8080 and s.host == "127.0.0.1"
    assert not s.crust.ordering_enabled


def test_example_config_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*([a-z0-9_]+)\s*=", text, re.M))
    missing = (set(SCALARS) | set(crust_settings._ALL)) - documented
    assert not missing, f"not documented in {EXAMPLE.name}: {sorted(missing)}"


def test_env_overrides_file_and_secret_is_hidden(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('port = 1234\n[crust]\nreplicas = 2\n')
    s = load_settings(cfg, env={"W3GATE_PORT": "4321", "CRUST_SEED": "//Alice", "VALID_FILE_REPLICAS": "5"})
    assert s.port == 4321 and s.crust.replicas == 5 and s.crust.ordering_enabled
    assert "Alice" not in repr(s) and "Alice" not in str(s.crust)


@pytest.mark.parametrize("env", [{"W3GATE_CRUST_REPLICAS": "0"}, {"W3GATE_CRUST_URL": "http://x"},
                                 {"W3GATE_ALLOWED_CHAINS": ""}, {"W3GATE_PLUGIN_DIR": "/nonexistent/dir"}])
def test_invalid_values_raise_config_error(env: dict) -> None:
    if env == {"W3GATE_ALLOWED_CHAINS": ""}:
        assert load_settings(None, env=env).allowed_chains is None  # empty = no restriction
        return
    with pytest.raises(ConfigError):
        load_settings(None, env=env)
