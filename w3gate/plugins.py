"""Finding and loading chain plugins: the built-ins, entry points, and the operator's plugin directory.

The built-in chains are imported by module name (as datasette does with its DEFAULT_PLUGINS), then every
``w3gate`` entry point visible on the import path is loaded; the plugin directory is put on the import
path first so that ``pip install --target DIR`` plugins are found by an installed w3gate and by the frozen
binary alike.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from w3gate import hookspecs
from w3gate.hookspecs import Chain

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "w3gate"
DEFAULT_PLUGINS = (
    "w3gate.chains.substrate",
    "w3gate.chains.ethereum",
    "w3gate.chains.solana",
)


class PluginError(Exception):
    """A start-up problem with plugins that the operator must fix (conflict, or a strict-mode failure)."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    source: str
    chains: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class PluginFailure:
    name: str
    source: str
    cause: str


@dataclass
class ChainRegistry:
    """Every chain verifier that was loaded, by lower-case alias."""

    by_alias: dict[str, Chain] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)

    def lookup(self, chain_type: str) -> Chain | None:
        return self.by_alias.get(chain_type.strip().lower())

    @property
    def chain_names(self) -> list[str]:
        return sorted({c.name for c in self.by_alias.values()})


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _dist_source(dist: md.Distribution | None) -> str:
    path = getattr(dist, "_path", None)
    return f"entry point ({Path(path).parent})" if path else "entry point"


def _plugin_modules(plugin_dir: Path | None) -> Iterable[tuple[str, str, str, Any]]:
    """Yield (name, version, source, loader) for each plugin, built-ins first."""
    from w3gate import __version__

    for modname in DEFAULT_PLUGINS:
        yield modname.rsplit(".", 1)[-1], __version__, "built-in", lambda m=modname: importlib.import_module(m)
    seen: set[str] = set()
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        key = f"{ep.name}={ep.value}"
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        version = dist.version if dist is not None else "?"
        source = _dist_source(dist)
        if plugin_dir is not None and str(plugin_dir) in source:
            source = f"plugin dir ({plugin_dir})"
        yield ep.name, version, source, ep.load


def add_plugin_dir(plugin_dir: Path) -> None:
    """Put the plugin directory on the import path (once), so its modules and entry points are seen."""
    text = str(plugin_dir)
    if text not in sys.path:
        sys.path.insert(0, text)
    importlib.invalidate_caches()


def load_chains(
    *,
    plugin_dir: Path | None = None,
    strict: bool = False,
    settings: Mapping[str, Any] | None = None,
    allowed: Iterable[str] | None = None,
) -> ChainRegistry:
    """Load every plugin and build the alias table.

    A plugin that fails to import is logged by name and cause and skipped (fatal with ``strict``); two
    chains claiming one alias is always a :class:`PluginError`. ``allowed`` restricts the accepted chains
    (by canonical name or alias); ``None`` accepts all.
    """
    if plugin_dir is not None:
        add_plugin_dir(plugin_dir)
    settings = settings or {}
    registry = ChainRegistry()
    pm = _new_manager()
    owner_of: dict[str, str] = {}
    allowed_set = {a.strip().lower() for a in allowed} if allowed is not None else None
    for name, version, source, loader in _plugin_modules(plugin_dir):
        try:
            module: ModuleType = loader()
            pm.register(module, name=f"{name}:{source}")
            impl = getattr(module, "w3gate_chains", None)
            if impl is None:
                raise PluginError("the module has no w3gate_chains hook implementation")
            hook_caller = pm.subset_hook_caller("w3gate_chains", remove_plugins=[
                p for p in pm.get_plugins() if p is not module
            ])
            chains = [c for batch in hook_caller(settings=settings) for c in (batch or [])]
            for chain in chains:
                if not isinstance(chain, Chain):
                    raise PluginError(f"{chain!r} is not a Chain (name, aliases, verify)")
        except Exception as exc:  # a broken plugin must not take the others down
            cause = f"{type(exc).__name__}: {exc}"
            if strict:
                raise PluginError(f"plugin {name!r} from {source} failed to load: {cause}") from exc
            log.error("plugin %r from %s failed to load, skipped: %s", name, source, cause)
            registry.failures.append(PluginFailure(name, source, cause))
            continue
        aliases_of_plugin: list[str] = []
        for chain in chains:
            names = {chain.name.lower(), *(a.strip().lower() for a in chain.aliases)}
            if allowed_set is not None and not (names & allowed_set):
                log.info("chain %s from plugin %r is not in allowed_chains: not accepted", chain.name, name)
                continue
            for alias in sorted(names):
                if alias in owner_of:
                    raise PluginError(
                        f"chain type {alias!r} is claimed by two plugins: {owner_of[alias]} and {name} ({source})"
                    )
                owner_of[alias] = f"{name} ({source})"
                registry.by_alias[alias] = chain
                aliases_of_plugin.append(alias)
        registry.plugins.append(
            PluginInfo(name, version, source, tuple(c.name for c in chains), tuple(aliases_of_plugin))
        )
    return registry
