"""SCALE type definitions per Crust chain and runtime spec version (package data in ``typedefs/``).

A runtime with v14+ metadata describes its own types; an older one (every Crust runtime so far) needs a
registry, as polkadot.js type bundles give one: definitions per range of spec versions. ``specs.json``
lists the ranges, each checked against the market pallet's Rust structs of that version, and the chains
they apply to: spec numbers are per chain (the Rocky testnet's spec 4 is not mainnet's spec 4), so a range
names the chains (``system_chain``, normalised by :func:`chain_key`) it was checked for. Any other pre-v14
spec version is refused with :class:`UnsupportedRuntime` rather than decoded (or signed) with guessed types.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any


class UnsupportedRuntime(Exception):
    """The runtime's types or calls are not ones this code can encode/decode safely."""


def chain_key(system_chain: str) -> str:
    """``Crust Rocky`` (a node's chain spec name) and ``crust_rocky`` (its id, as chopsticks answers) alike."""
    return "_".join(system_chain.strip().lower().replace("-", " ").split())


@cache
def _read(name: str) -> Any:
    return json.loads(resources.files("w3gate.crust").joinpath("typedefs", name).read_text("utf-8"))


def ranges(chain: str) -> list[dict[str, Any]]:
    """The shipped ranges that apply to ``chain``, in file order."""
    return [e for e in _read("specs.json")["pre_v14"] if chain in e["chains"]]


def _types(entry: dict[str, Any]) -> dict[str, Any]:
    types: dict[str, Any] = {}
    for name in entry["files"]:
        types.update(_read(name)["types"])
    return types


def type_registry(chain: str, extra: Path | None = None) -> dict[str, Any]:
    """A scalecodec type registry for ``chain``: shipped per-spec ``versioning`` entries plus the operator's
    extra file (a scalecodec registry: ``types`` for every version, ``versioning`` with ``runtime_range``)."""
    versioning = [
        {"runtime_range": [e["spec_min"], e["spec_max"]], "types": _types(e)} for e in ranges(chain)
    ]
    registry: dict[str, Any] = {"types": {}, "versioning": versioning}
    if extra is not None:
        data = json.loads(extra.read_text("utf-8"))
        registry["types"].update(data.get("types", {}))
        versioning.extend(data.get("versioning", []))
    return registry


def covered(spec_version: int, chain: str, extra: Path | None = None) -> bool:
    """Whether checked definitions exist for this pre-v14 spec version of ``chain``."""
    if extra is not None:
        return True  # the operator vouches for their registry
    return any(
        e["spec_min"] <= spec_version and (e["spec_max"] is None or spec_version <= e["spec_max"])
        for e in ranges(chain)
    )


def checked_range(spec_version: int, chain: str) -> dict[str, Any] | None:
    """The shipped range for this spec version of ``chain`` (None: not shipped)."""
    for e in ranges(chain):
        if e["spec_min"] <= spec_version and (e["spec_max"] is None or spec_version <= e["spec_max"]):
            return e
    return None


def runtime_config(chain: str, spec_version: int, ss58_format: int = 66) -> Any:
    """A scalecodec registry set up as a connected client's is for this chain and spec version, with no
    chain: decodes records offline (tests decode hand-encoded bytes of runtimes no machine here can run)."""
    from scalecodec.base import RuntimeConfigurationObject
    from scalecodec.type_registry import load_type_registry_preset

    config = RuntimeConfigurationObject(ss58_format=ss58_format)
    config.update_type_registry(load_type_registry_preset("legacy"))
    config.update_type_registry(load_type_registry_preset("crust"))
    config.update_type_registry(type_registry(chain))
    config.set_active_spec_version_id(spec_version)
    return config
