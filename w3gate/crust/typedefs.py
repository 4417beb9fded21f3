"""SCALE type definitions per Crust runtime spec version (package data in ``typedefs/``).

A runtime with v14+ metadata describes its own types; an older one needs a registry. ``specs.json``
lists the spec versions whose definitions were checked against that runtime; any other pre-v14 spec
version is refused with :class:`UnsupportedRuntime` rather than decoded (or signed) with guessed types.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any


class UnsupportedRuntime(Exception):
    """The runtime's types or calls are not ones this code can encode/decode safely."""


def _read(name: str) -> Any:
    return json.loads(resources.files("w3gate.crust").joinpath("typedefs", name).read_text("utf-8"))


def type_registry(extra: Path | None = None) -> dict[str, Any]:
    """A scalecodec type registry: shipped per-spec ``versioning`` entries plus the operator's extra file."""
    specs = _read("specs.json")
    versioning = [
        {"runtime_range": [e["spec_min"], e["spec_max"]], "types": _read(e["file"])["types"]}
        for e in specs["pre_v14"]
    ]
    registry: dict[str, Any] = {"types": {}, "versioning": versioning}
    if extra is not None:
        data = json.loads(extra.read_text("utf-8"))
        registry["types"].update(data.get("types", {}))
        versioning.extend(data.get("versioning", []))
    return registry


def covered(spec_version: int, extra: Path | None = None) -> bool:
    """Whether definitions exist for this pre-v14 spec version."""
    if extra is not None:
        return True  # the operator vouches for their registry
    for e in _read("specs.json")["pre_v14"]:
        if e["spec_min"] <= spec_version and (e["spec_max"] is None or spec_version <= e["spec_max"]):
            return True
    return False
