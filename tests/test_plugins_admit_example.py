"""The admission example plugin (plugins/admit-example), as a third party ships it: built as a wheel,
installed with ``pip install --target DIR --no-deps`` into a plugin directory, then asked by a running
w3gate about every pin request, next to the built-in limits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import POSTGRES
from helpers import substrate_token
from multiformats import CID, multihash
from substrateinterface import Keypair
from test_plugins_example import pip

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "plugins" / "admit-example"
# the plugin's path through w3gate is the same on either database (and building the wheel costs half a minute)
pytestmark = pytest.mark.skipif(bool(POSTGRES), reason="database-independent: the SQLite pass runs it")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels, target = tmp_path_factory.mktemp("wheels"), tmp_path_factory.mktemp("plugin-dir")
    source = tmp_path_factory.mktemp("src") / "admit-example"  # a copy: the build leaves files in its tree
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(source))
    (wheel,) = wheels.glob("w3gate_admit_example-*.whl")
    pip("install", "--no-deps", "--target", str(target), str(wheel))
    return target


def new_cid() -> str:
    return str(CID("base32", 1, "raw", multihash.digest(os.urandom(16), "sha2-256")))


def test_plugin_admits_only_what_the_file_lists(start_server, plugin_dir: Path, tmp_path: Path) -> None:
    listing = tmp_path / "allowed.txt"
    alice = "substrate:0x" + Keypair.create_from_uri("//Alice").public_key.hex()
    sponsored = new_cid()
    listing.write_text(f"{alice}\n{sponsored}\nmeta:pass=open-sesame\n")
    config = tmp_path / "w3gate.toml"
    config.write_text(f'[admission.admit_example]\nallow_file = "{listing}"\n')
    server = start_server(env={"W3GATE_PLUGIN_DIR": str(plugin_dir)}, args=["--config", str(config)])

    def pin(uri: str, **body: object) -> httpx.Response:
        return httpx.post(server.psa_url + "/pins", json={"cid": new_cid(), **body},
                          headers={"Authorization": substrate_token(uri)}, timeout=30)

    assert pin("//Alice").status_code == 202
    refused = pin("//Bob")
    assert refused.status_code == 403 and refused.json()["error"]["reason"] == "NOT_LISTED", refused.text
    assert pin("//Bob", cid=sponsored).status_code == 202
    assert pin("//Bob", meta={"pass": "open-sesame"}).status_code == 202
    listing.unlink()  # the plugin now raises: refused with 503, nothing stored, the service goes on
    failed = pin("//Alice")
    assert failed.status_code == 503 and failed.json()["error"]["reason"] == "ADMISSION_UNAVAILABLE", failed.text
    assert "admit_example" in server.log_text() and "FileNotFoundError" in server.log_text()
    mine = httpx.get(server.psa_url + "/pins", params={"status": "queued"},
                     headers={"Authorization": substrate_token("//Alice")}).json()
    assert mine["count"] == 1


def test_listed_by_w3gate_plugins(plugin_dir: Path) -> None:
    command = os.environ.get("W3GATE_TEST_COMMAND", "").split() or [sys.executable, "-m", "w3gate"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("W3GATE_")}
    result = subprocess.run([*command, "plugins"], env=env | {"W3GATE_PLUGIN_DIR": str(plugin_dir)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("admit_example "))
    assert row.split()[:3] == ["admit_example", "0.1.0", "(admission)"]
