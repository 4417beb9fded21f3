"""The hook on its own (the served plugin is tested in w3gate's tests/test_plugins_admit_example.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from w3gate.hookspecs import Identity, PinRequest, Refusal


def _load_plugin_source():
    """The plugin from this checkout, without installing it (w3gate's own test installs it into a plugin
    directory and must find it only there)."""
    path = Path(__file__).resolve().parents[1] / "w3gate_admit_example" / "__init__.py"
    spec = importlib.util.spec_from_file_location("w3gate_admit_example_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


w3gate_admit = _load_plugin_source().w3gate_admit


def request(account: str = "0xaa", cid: str = "bafk", meta: dict | None = None) -> PinRequest:
    return PinRequest(Identity("substrate", account), cid, None, meta or {}, 1000)


def test_listed_identity_cid_or_meta_is_admitted(tmp_path: Path) -> None:
    listing = tmp_path / "allowed.txt"
    listing.write_text("# wallets that paid\nsubstrate:0xaa\nbafylisted\nmeta:pass=open-sesame\n")
    settings = {"admit_example": {"allow_file": str(listing)}}
    assert w3gate_admit(request(), settings) is None
    assert w3gate_admit(request("0xbb", "bafylisted"), settings) is None
    assert w3gate_admit(request("0xbb", meta={"pass": "open-sesame"}), settings) is None
    refused = w3gate_admit(request("0xbb"), settings)
    assert isinstance(refused, Refusal) and refused.reason == "NOT_LISTED" and refused.status == 403
    assert w3gate_admit(request("0xbb"), {}) is None  # not configured
    listing.unlink()
    with pytest.raises(FileNotFoundError):
        w3gate_admit(request(), settings)
