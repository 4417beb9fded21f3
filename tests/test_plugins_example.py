"""The example plugin, as a third party ships it: built as a wheel, installed with
``pip install --target DIR --no-deps`` into a plugin directory, then served by w3gate (or the frozen
binary, with W3GATE_TEST_COMMAND) started with W3GATE_PLUGIN_DIR=DIR, and listed by ``w3gate plugins``."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from nacl.signing import SigningKey

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "plugins" / "example"


def pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels, target = tmp_path_factory.mktemp("wheels"), tmp_path_factory.mktemp("plugin-dir")
    source = tmp_path_factory.mktemp("src") / "example"  # a copy: the build leaves files in its source tree
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(source))
    (wheel,) = wheels.glob("w3gate_example-*.whl")
    pip("install", "--no-deps", "--target", str(target), str(wheel))
    assert (target / "w3gate_example" / "__init__.py").is_file()
    return target


def example_token(key: SigningKey) -> tuple[str, str]:
    address = bytes(key.verify_key).hex()
    credentials = f"exa-{address}:{key.sign(address.encode()).signature.hex()}"
    return "Bearer " + base64.b64encode(credentials.encode()).decode(), address


def test_example_plugin_is_not_installed_in_the_environment() -> None:
    """Otherwise the tests below would not show that the plugin dir is what loads it."""
    from importlib.metadata import PackageNotFoundError, distribution

    with pytest.raises(PackageNotFoundError):
        distribution("w3gate-example")


def test_served_from_the_plugin_dir(start_server, plugin_dir: Path) -> None:
    key = SigningKey.generate()
    header, address = example_token(key)
    without = start_server()
    resp = httpx.get(without.psa_url + "/pins", headers={"Authorization": header})
    assert resp.status_code == 401 and resp.json()["error"]["details"] == "Unsupported web3 signature"

    server = start_server(env={"W3GATE_PLUGIN_DIR": str(plugin_dir)})
    resp = httpx.get(server.psa_url + "/pins", headers={"Authorization": header})
    assert resp.status_code == 200, resp.text
    attacker = SigningKey.generate()  # signs the victim's address with another key
    forged = f"exa-{address}:{attacker.sign(address.encode()).signature.hex()}"
    resp = httpx.get(server.psa_url + "/pins",
                     headers={"Authorization": "Bearer " + base64.b64encode(forged.encode()).decode()})
    assert resp.status_code == 401 and resp.json()["error"]["details"] == "Invalid Signature"

    # the plugin's signer: w3gate token --chain example makes a token the server accepts
    command = os.environ.get("W3GATE_TEST_COMMAND", "").split() or [sys.executable, "-m", "w3gate"]
    made = subprocess.run([*command, "token", "--chain", "example", "--w3auth", "--quiet"], env=server.env,
                          input=bytes(key).hex(), capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "Bearer " + made.stdout.strip() == header
    resp = httpx.get(server.psa_url + "/pins", headers={"Authorization": "Bearer " + made.stdout.strip()})
    assert resp.status_code == 200, resp.text


def test_listed_by_w3gate_plugins(plugin_dir: Path) -> None:
    command = os.environ.get("W3GATE_TEST_COMMAND", "").split() or [sys.executable, "-m", "w3gate"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("W3GATE_")}
    result = subprocess.run([*command, "plugins"], env=env | {"W3GATE_PLUGIN_DIR": str(plugin_dir)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("example "))
    assert row.split()[:4] == ["example", "0.1.0", "example", "exa"]
    assert f"plugin dir {plugin_dir.resolve()}" in row and "w3gate-example 0.1.0" in row
