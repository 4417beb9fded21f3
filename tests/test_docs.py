"""The documentation agrees with the code: every setting is in the example configuration (the one place settings
are documented, each with its default and meaning), the README stays a front door, and no user-facing file
points at internal work items."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from w3gate.admission.settings import Access, Limits
from w3gate.config import SCALARS, TOKEN_KEYS, load_settings
from w3gate.crust.settings import CrustSettings
from w3gate.ipfs.settings import IpfsSettings

pytestmark = pytest.mark.no_database  # no database part: the PostgreSQL pass leaves it out

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "w3gate.example.toml"
README = ROOT / "README.md"


def example_keys() -> dict[str, set[str]]:
    """Keys the example names, set or commented out (``# key = ...``), per table ("" for the top level)."""
    keys: dict[str, set[str]] = {"": set()}
    table = ""
    for line in EXAMPLE.read_text().splitlines():
        head = re.match(r"^\[([a-z_.]+)\]", line)
        if head:
            table = head.group(1)
            keys.setdefault(table, set())
            continue
        item = re.match(r"^#? ?([a-z0-9_]+) *=", line)
        if item:
            keys[table].add(item.group(1))
    return keys


@pytest.mark.parametrize(("table", "names"), [
    ("", sorted(SCALARS)),
    ("crust", sorted(f.name for f in fields(CrustSettings))),
    ("ipfs", sorted(f.name for f in fields(IpfsSettings))),
    ("limits", sorted(f.name for f in fields(Limits))),
    ("access", sorted(f.name for f in fields(Access))),
    ("tokens", sorted(TOKEN_KEYS)),
])
def test_every_setting_is_in_the_example_configuration(table: str, names: list[str]) -> None:
    documented = example_keys().get(table, set())
    assert not set(names) - documented, f"[{table or 'top level'}] missing from {EXAMPLE.name}"


def test_the_example_configuration_is_the_defaults() -> None:
    """What the example sets (uncommented) is each key's default: copying it changes nothing."""
    doc = tomllib.loads(EXAMPLE.read_text())
    assert load_settings(EXAMPLE, env={}) is not None
    defaults = load_settings(None, env={})
    for key in SCALARS:
        if key in doc:
            got = load_settings(EXAMPLE, env={})
            assert getattr(got, key) == getattr(defaults, key), key


def test_readme_is_a_front_door() -> None:
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 200
    first_block = text.split("```sh", 1)[1].split("```", 1)[0]
    assert ".venv/bin/w3gate serve" in first_block and "tests/run" in first_block
    for target in re.findall(r"\]\(((?:docs|bench|config)/[^)#]+)", text):
        assert (ROOT / target).exists(), target


USER_FACING = [README, EXAMPLE, ROOT / "packaging" / "README.md", *sorted((ROOT / "docs").glob("*.md")),
               ROOT / "bench" / "RESULTS.md", *sorted((ROOT / "w3gate").rglob("*.py"))]


@pytest.mark.parametrize("path", USER_FACING, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_internal_work_item_numbers(path: Path) -> None:
    assert not re.findall(r"\b[Ii]ssues? \d+", path.read_text()), path


def test_default_limits_agree() -> None:
    """pins_per_user is reachable on the defaults: that many pins of unknown size (each counted at the default file
    size until the node or the chain measures it) fit in bytes_per_user."""
    limits, crust = Limits(), CrustSettings()
    assert limits.pins_per_user * crust.default_file_size <= limits.bytes_per_user
