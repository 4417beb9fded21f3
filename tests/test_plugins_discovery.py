"""Plugin discovery (w3gate.plugins): built-ins, installed entry points, the plugin directory, failures,
strict mode, conflicts, the allowed-chains restriction and the ``w3gate plugins`` listing.

Plugins made here are laid out exactly as ``pip install --target DIR`` leaves them (a module next to a
``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt``); test_plugins_http.py goes through a
real wheel and pip instead."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from w3gate.hookspecs import Credentials
from w3gate.plugins import PluginError, format_plugins, load_chains

FIRST_PARTY = {
    "near": ("near", "nea"), "avalanche": ("avalanche", "ava"), "aptos": ("aptos", "apt"),
    "algorand": ("algorand", "algo"), "elrond": ("elrond", "elr"), "ton": ("ton",),
    "flow": ("flow", "flo"), "xx": ("xx",),
}
BUILT_IN = {"substrate": ("substrate", "sub", "crust", "cru"), "ethereum": ("ethereum", "eth", "polygon", "pol"),
            "solana": ("solana", "sol")}

CHAIN_PLUGIN = '''
from w3gate.hookspecs import Identity, InvalidSignature, SimpleChain, hookimpl

def verify(credentials):
    if credentials.signature != "ok":
        raise InvalidSignature("not ok")
    return Identity({name!r}, credentials.address.lower(), credentials.address)

@hookimpl
def w3gate_chains(settings):
    return [SimpleChain({name!r}, {aliases!r}, verify)]
'''


@pytest.fixture(autouse=True)
def isolated_import_state():
    """Each test's plugin dir and plugin modules are gone afterwards (load_chains edits sys.path)."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.startswith("w3gate_t"):
            del sys.modules[name]
    importlib.invalidate_caches()


def make_plugin(directory: Path, code: str, *, ep_name: str, version: str = "1.2.3") -> str:
    """Lay out one plugin distribution in ``directory`` the way ``pip install --target`` does."""
    module = f"w3gate_t{uuid.uuid4().hex[:10]}"
    dist = f"w3gate-{ep_name}-{module[-6:]}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(textwrap.dedent(code))
    info = directory / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[w3gate]\n{ep_name} = {module}\n")
    return module


def chain_plugin(directory: Path, name: str, aliases: tuple[str, ...], **kw) -> str:
    return make_plugin(directory, CHAIN_PLUGIN.format(name=name, aliases=aliases), ep_name=name, **kw)


def plugin_named(registry, name):
    return next(p for p in registry.plugins if p.name == name)


def test_built_ins_and_installed_first_party_plugins():
    registry = load_chains()
    for name, aliases in {**BUILT_IN, **FIRST_PARTY}.items():
        for alias in aliases:
            assert registry.lookup(alias).name == name, alias
            assert registry.lookup(f" {alias.upper()} ").name == name  # Crust trims and lower-cases
    for name in BUILT_IN:
        assert plugin_named(registry, name).source == "built-in"
    for name in FIRST_PARTY:
        info = plugin_named(registry, name)
        assert info.source.startswith("installed ") and f"w3gate-{name} " in info.source
        assert info.version == "0.1.0" and info.aliases == FIRST_PARTY[name]
    assert registry.lookup("bitcoin") is None and registry.lookup("constructor") is None
    assert registry.failures == []


def test_plugin_dir(tmp_path):
    chain_plugin(tmp_path, "dirchain", ("dirchain", "dir"))
    registry = load_chains(plugin_dir=tmp_path)
    chain = registry.lookup("DIR")
    assert chain is not None and chain.name == "dirchain"
    assert chain.verify(Credentials("dir", "ABC", "ok")).user_key == "dirchain:abc"
    info = plugin_named(registry, "dirchain")
    assert info.source.startswith(f"plugin dir {tmp_path.resolve()}") and info.version == "1.2.3"
    assert registry.lookup("near").name == "near"  # the installed ones still load


def test_failing_plugin_is_reported_and_the_rest_start(tmp_path, caplog):
    make_plugin(tmp_path, "import frobnicate_not_installed\n", ep_name="broken")
    chain_plugin(tmp_path, "fine", ("fine",))
    registry = load_chains(plugin_dir=tmp_path)
    assert [(f.name, "frobnicate_not_installed" in f.cause) for f in registry.failures] == [("broken", True)]
    assert "ModuleNotFoundError" in registry.failures[0].cause
    assert registry.lookup("fine") is not None and registry.lookup("near") is not None
    assert any("broken" in r.message and "frobnicate" in r.message for r in caplog.records)
    listing = format_plugins(registry)
    assert "failed to load:" in listing and "broken" in listing and "frobnicate_not_installed" in listing


def test_strict_mode_makes_a_failure_fatal(tmp_path):
    make_plugin(tmp_path, "raise RuntimeError('boom at import')\n", ep_name="broken")
    with pytest.raises(PluginError, match=r"'broken'.*boom at import"):
        load_chains(plugin_dir=tmp_path, strict=True)


@pytest.mark.parametrize("code, cause", [
    ("x = 1\n", "no @hookimpl w3gate_chains"),
    ("from w3gate.hookspecs import hookimpl\n@hookimpl\ndef w3gate_chains():\n    return 'near'\n", "sequence"),
    ("from w3gate.hookspecs import hookimpl\n@hookimpl\ndef w3gate_chains():\n    return [object()]\n",
     "is not a Chain"),
    ("from w3gate.hookspecs import hookimpl\n@hookimpl\ndef w3gate_chains(config):\n    return []\n",
     "config"),
    ("from w3gate.hookspecs import SimpleChain, hookimpl\n@hookimpl\ndef w3gate_chains():\n"
     "    return [SimpleChain('odd', 'odd', print)]\n", "aliases must be a sequence"),
])
def test_malformed_plugins_fail_at_start_up(tmp_path, code, cause):
    make_plugin(tmp_path, code, ep_name="malformed")
    registry = load_chains(plugin_dir=tmp_path)
    assert [f.name for f in registry.failures] == ["malformed"]
    assert cause in registry.failures[0].cause


def test_two_plugins_claiming_one_chain_type_is_an_error(tmp_path):
    chain_plugin(tmp_path, "copycat", ("copycat", "nea"))
    with pytest.raises(PluginError, match=r"'nea' is claimed twice.*'near'.*'copycat'|'nea' is claimed twice.*"
                                          r"'copycat'.*'near'"):
        load_chains(plugin_dir=tmp_path)
    # not even lenient mode starts with an ambiguous table ...
    with pytest.raises(PluginError):
        load_chains(plugin_dir=tmp_path, strict=False, allowed=["copycat", "near"])
    # ... but the operator can settle it by not accepting one side
    registry = load_chains(plugin_dir=tmp_path, allowed=["copycat", "sol"])
    assert registry.lookup("nea").name == "copycat" and registry.lookup("near") is None


def test_allowed_chains(caplog):
    registry = load_chains(allowed=["near", "sol", "Flow", "dogecoin"])
    assert sorted(registry.by_alias) == ["flo", "flow", "nea", "near", "sol"]
    assert registry.lookup("solana") is None and registry.lookup("ava") is None
    assert registry.lookup("sub") is None  # even the built-in default chain can be turned off
    assert plugin_named(registry, "solana").disabled == ("solana",)
    assert "sol (not allowed: solana)" in format_plugins(registry)
    assert any("dogecoin" in r.message for r in caplog.records)  # a typo is pointed out


def test_settings_reach_the_hook(tmp_path):
    make_plugin(tmp_path, '''
        from w3gate.hookspecs import SimpleChain, hookimpl
        @hookimpl
        def w3gate_chains(settings):
            return [SimpleChain(settings["configured"]["name"], (), print)]
        ''', ep_name="configured")
    registry = load_chains(plugin_dir=tmp_path, settings={"configured": {"name": "fromsettings"}})
    assert registry.lookup("fromsettings").name == "fromsettings"


def test_format_plugins_lists_name_version_chain_types_and_origin(tmp_path):
    chain_plugin(tmp_path, "listed", ("listed", "lst"), version="4.5.6")
    listing = format_plugins(load_chains(plugin_dir=tmp_path))
    lines = listing.splitlines()
    assert lines[0].startswith("w3gate plugins (hookspec 1.")
    assert lines[1] == f"plugin dir: {tmp_path.resolve()}"
    assert lines[2].split() == ["NAME", "VERSION", "CHAIN", "TYPES", "FROM"]
    row = next(line for line in lines if line.startswith("listed "))
    assert row.split()[:4] == ["listed", "4.5.6", "listed", "lst"] and f"plugin dir {tmp_path.resolve()}" in row
    row = next(line for line in lines if line.startswith("substrate "))
    assert row.split() == ["substrate", row.split()[1], "substrate", "sub", "crust", "cru", "built-in"]
    assert "failed to load" not in listing


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = os.environ.get("W3GATE_TEST_COMMAND", "").split() or [sys.executable, "-m", "w3gate"]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("W3GATE_")} | env
    return subprocess.run([*command, *args], env=full_env, capture_output=True, text=True, timeout=120)


def test_cli_plugins_lists_plugin_dir_and_failures(tmp_path):
    chain_plugin(tmp_path, "clilisted", ("clilisted",))
    make_plugin(tmp_path, "raise ImportError('needs libfoo')\n", ep_name="clibroken")
    result = run_cli("plugins", env={"W3GATE_PLUGIN_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "clilisted" in result.stdout and "plugin dir" in result.stdout and "solana" in result.stdout
    assert "clibroken" in result.stdout and "needs libfoo" in result.stdout
    strict = run_cli("plugins", env={"W3GATE_PLUGIN_DIR": str(tmp_path), "W3GATE_PLUGINS_STRICT": "true"})
    assert strict.returncode != 0 and "clibroken" in strict.stderr and "needs libfoo" in strict.stderr


def test_cli_conflict_is_a_clear_error(tmp_path):
    chain_plugin(tmp_path, "clash", ("clash", "sol"))  # the built-in solana's alias
    result = run_cli("plugins", env={"W3GATE_PLUGIN_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "'sol' is claimed twice" in result.stderr and "solana" in result.stderr and "clash" in result.stderr
    allowed = run_cli("plugins", env={"W3GATE_PLUGIN_DIR": str(tmp_path), "W3GATE_ALLOWED_CHAINS": "clash,sub"})
    assert allowed.returncode == 0, allowed.stderr
    assert "clash" in allowed.stdout and "not allowed: solana sol" in allowed.stdout


def test_cli_plugin_dir_adds_but_never_shadows(tmp_path):
    """A library or a distribution that w3gate already has is not taken from the plugin dir (what a
    forgotten --no-deps would leave there). Holds for the frozen binary too (W3GATE_TEST_COMMAND)."""
    (tmp_path / "nacl").mkdir()
    (tmp_path / "nacl" / "__init__.py").write_text("raise ImportError('shadowed nacl was imported')\n")
    info = tmp_path / "w3gate-9.9.9.dist-info"  # w3gate's own distribution name
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: w3gate\nVersion: 9.9.9\n")
    (info / "entry_points.txt").write_text("[w3gate]\nimpostor = w3gate_impostor\n")
    chain_plugin(tmp_path, "added", ("added",))
    result = run_cli("plugins", env={"W3GATE_PLUGIN_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "shadowed" not in result.stdout + result.stderr and "failed to load" not in result.stdout
    assert "impostor" not in result.stdout and "9.9.9" not in result.stdout
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[3:] if line.strip()}
    assert {"substrate", "ethereum", "solana"} <= set(rows) and "plugin dir" in rows["added"]
