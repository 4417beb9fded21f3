"""Finding and loading chain plugins: the built-ins, entry points, and the operator's plugin directory.

The built-in chains are imported by module name (as datasette does with its DEFAULT_PLUGINS) and go
through the very same hook as third-party plugins. Then every ``w3gate`` entry point visible on the import
path is loaded. The plugin directory is added to the import path before that, so that a plugin installed
with ``pip install --target DIR --no-deps`` is found by an installed w3gate and by the frozen binary alike
(importlib.metadata reads ``*.dist-info/entry_points.txt`` from every ``sys.path`` entry). It is added at
the *end*: the directory can add plugins and their pure-Python dependencies, but never replace a library
w3gate already has (a stray ``nacl`` built for another Python, left by a forgotten ``--no-deps``, must not
shadow the bundled one).

Failure policy (the operator must be able to start with one broken plugin, and must never get an
ambiguous alias table): a plugin that fails to import or to answer the hook is logged by name and cause
and skipped, or is fatal with ``strict``; two chains claiming one chain type is always fatal.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pluggy

from w3gate import hookspecs
from w3gate.hookspecs import Chain

__all__ = [
    "DEFAULT_PLUGINS",
    "Admitter",
    "ENTRY_POINT_GROUP",
    "ChainRegistry",
    "PluginError",
    "PluginFailure",
    "PluginInfo",
    "add_plugin_dir",
    "format_plugins",
    "load_chains",
    "load_signers",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "w3gate"
DEFAULT_PLUGINS = (
    "w3gate.wallets.substrate",
    "w3gate.wallets.ethereum",
    "w3gate.wallets.solana",
)


class PluginError(Exception):
    """A start-up problem with plugins that the operator must fix (conflict, or a strict-mode failure)."""


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin, as ``w3gate plugins`` lists it.

    ``chains`` are the canonical names of the chains it returned; ``aliases`` the chain types it serves;
    ``disabled`` the chain types it offered that ``allowed_chains`` turned away; ``admits``: it has a
    ``w3gate_admit`` hook.
    """

    name: str
    version: str
    source: str
    chains: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    admits: bool = False


@dataclass(frozen=True)
class Admitter:
    """A plugin's ``w3gate_admit`` hook, called by :mod:`w3gate.admission.service` for each pin request."""

    name: str
    function: Callable[..., Any]
    wants_settings: bool
    builtin: bool = False


@dataclass(frozen=True)
class PluginFailure:
    name: str
    source: str
    cause: str


@dataclass
class ChainRegistry:
    """Every accepted chain verifier, by lower-case chain type (alias)."""

    by_alias: dict[str, Chain] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    plugin_dir: Path | None = None
    admitters: list[Admitter] = field(default_factory=list)  # third parties' admission hooks, by plugin order

    def lookup(self, chain_type: str) -> Chain | None:
        """The chain serving a token's raw chain type (trimmed and lower-cased as Crust does), or None."""
        return self.by_alias.get(chain_type.strip().lower())

    @property
    def chain_names(self) -> list[str]:
        return sorted({c.name for c in self.by_alias.values()})


@dataclass(frozen=True)
class _Candidate:
    name: str
    version: str
    source: str
    load: Callable[[], Any]


def add_plugin_dir(plugin_dir: Path | str) -> Path:
    """Add the plugin directory to the end of the import path (once), so its modules and entry points
    are seen without shadowing anything already importable."""
    path = Path(plugin_dir).expanduser().resolve()
    if not path.is_dir():
        log.warning("plugin directory %s does not exist: no plugins loaded from it", path)
    elif (path / "w3gate").is_dir():
        log.warning("plugin directory %s holds a copy of w3gate (installed without --no-deps?); "
                    "it is not used: the running w3gate is", path)
    text = str(path)
    if text not in sys.path:
        sys.path.append(text)
    importlib.invalidate_caches()
    return path


def _is_under(location: Path, directory: Path) -> bool:
    try:
        location.resolve().relative_to(directory)
    except (ValueError, OSError):
        return False
    return True


def _entry_point_source(dist: md.Distribution | None, plugin_dir: Path | None) -> str:
    if dist is None:
        return "entry point"
    label = f"{dist.metadata['Name']} {dist.version}"
    location = dist.locate_file("")
    if isinstance(location, Path):
        where = "plugin dir" if plugin_dir is not None and _is_under(location, plugin_dir) else "installed"
        return f"{where} {location} ({label})"
    return f"entry point ({label})"


def _candidates(plugin_dir: Path | None) -> list[_Candidate]:
    """Built-ins first, then entry points by name (importlib.metadata keeps the first distribution of a
    name on ``sys.path``, so a copy installed in the environment wins over one in the plugin dir)."""
    from w3gate import __version__

    found = [
        _Candidate(mod.rsplit(".", 1)[-1], __version__, "built-in", partial(importlib.import_module, mod))
        for mod in DEFAULT_PLUGINS
    ]
    for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        version = dist.version if dist is not None else "?"
        found.append(_Candidate(ep.name, version, _entry_point_source(dist, plugin_dir), ep.load))
    return found


def _validated(chains: Any) -> list[Chain]:
    """Check what a hook returned, so that a malformed plugin fails at start-up rather than per request."""
    if chains is None:
        return []
    if isinstance(chains, (str, bytes)) or not isinstance(chains, Iterable):
        raise PluginError(f"w3gate_chains must return a sequence of Chain objects, not {type(chains).__name__}")
    result = []
    for chain in chains:
        if not isinstance(chain, Chain) or not callable(chain.verify):
            raise PluginError(f"{chain!r} is not a Chain (needs name, aliases and verify)")
        if not isinstance(chain.name, str) or not chain.name.strip():
            raise PluginError(f"{chain!r} has no name")
        if isinstance(chain.aliases, str) or not isinstance(chain.aliases, Sequence):
            raise PluginError(f"chain {chain.name!r}: aliases must be a sequence of strings")
        if not all(isinstance(a, str) and a.strip() for a in chain.aliases):
            raise PluginError(f"chain {chain.name!r}: every alias must be a non-empty string")
        result.append(chain)
    return result


def _chain_types(chain: Chain) -> list[str]:
    """The lower-case chain types a chain answers to, its canonical name first."""
    names = [chain.name.strip().lower()]
    names += [a.strip().lower() for a in chain.aliases if a.strip().lower() not in names]
    return names


def _admitters(pm: pluggy.PluginManager, plugin: object, name: str) -> list[Admitter]:
    return [Admitter(name, i.function, "settings" in i.argnames)
            for i in pm.hook.w3gate_admit.get_hookimpls() if i.plugin is plugin]


def _call_hook(pm: pluggy.PluginManager, plugin: object, settings: Mapping[str, Any]) -> list[Chain]:
    impls = [i for i in pm.hook.w3gate_chains.get_hookimpls() if i.plugin is plugin]
    if not impls and not any(i.plugin is plugin for i in pm.hook.w3gate_admit.get_hookimpls()):
        raise PluginError("it has no @hookimpl w3gate_chains or w3gate_admit function")
    chains: list[Chain] = []
    for impl in impls:
        kwargs = {"settings": settings} if "settings" in impl.argnames else {}
        chains += _validated(impl.function(**kwargs))
    return chains


def load_chains(
    *,
    plugin_dir: Path | str | None = None,
    strict: bool = False,
    settings: Mapping[str, Any] | None = None,
    allowed: Iterable[str] | None = None,
) -> ChainRegistry:
    """Load every plugin and build the alias table.

    ``settings`` is the operator's ``[chains]`` table, handed to each hook. ``allowed`` restricts the
    accepted chain types: an entry naming a chain (``near``) accepts all of its aliases, an entry naming
    one alias (``nea``) accepts only that one; ``None`` accepts all. Only accepted chain types can
    conflict, so restricting them is also how an operator settles a conflict.

    Raises :class:`PluginError` when two chains claim one accepted chain type, and in ``strict`` mode
    when any plugin fails to load.
    """
    registry = ChainRegistry()
    if plugin_dir is not None:
        registry.plugin_dir = add_plugin_dir(plugin_dir)
    settings = settings if settings is not None else {}
    allowed_set = {a.strip().lower() for a in allowed if a.strip()} if allowed is not None else None
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    owner_of: dict[str, str] = {}
    offered: set[str] = set()

    for cand in _candidates(registry.plugin_dir):
        plugin: object | None = None
        try:
            plugin = cand.load()
            pm.register(plugin, name=f"{cand.name} [{cand.source}]")
            chains = _call_hook(pm, plugin, settings)
            admitters = _admitters(pm, plugin, cand.name)
        except Exception as exc:  # a broken plugin must not take the others down
            if plugin is not None and pm.is_registered(plugin):
                pm.unregister(plugin)
            cause = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if strict:
                raise PluginError(f"plugin {cand.name!r} ({cand.source}) failed to load: {cause}") from exc
            log.error("plugin %r (%s) failed to load and is skipped: %s", cand.name, cand.source, cause)
            registry.failures.append(PluginFailure(cand.name, cand.source, cause))
            continue

        accepted: list[str] = []
        disabled: list[str] = []
        for chain in chains:
            types = _chain_types(chain)
            offered.update(types)
            whole_chain = allowed_set is None or types[0] in allowed_set
            for chain_type in types:
                if not whole_chain and chain_type not in allowed_set:  # type: ignore[operator]
                    disabled.append(chain_type)
                    continue
                if chain_type in owner_of:
                    raise PluginError(
                        f"chain type {chain_type!r} is claimed twice: by {owner_of[chain_type]} and by "
                        f"chain {chain.name!r} of plugin {cand.name!r} ({cand.source}); uninstall one of "
                        "them or leave the chain type out of allowed_chains"
                    )
                owner_of[chain_type] = f"chain {chain.name!r} of plugin {cand.name!r} ({cand.source})"
                registry.by_alias[chain_type] = chain
                accepted.append(chain_type)
        registry.admitters += admitters
        registry.plugins.append(
            PluginInfo(
                cand.name, cand.version, cand.source,
                tuple(dict.fromkeys(c.name for c in chains)), tuple(accepted), tuple(disabled), bool(admitters),
            )
        )

    if allowed_set is not None:
        for unknown in sorted(allowed_set - offered):
            log.warning("allowed_chains names %r, which no loaded plugin offers", unknown)
    log.info("chain types accepted: %s", ", ".join(sorted(registry.by_alias)) or "none")
    return registry


def load_signers(
    *, plugin_dir: Path | str | None = None, settings: Mapping[str, Any] | None = None, wanted: str | None = None,
    origins: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every plugin's ``w3gate_signers`` (hookspec 1.1, optional), by lower-case chain name, for ``w3gate token``.

    A plugin that fails to load or answer is logged and skipped; the first signer of a name wins (built-ins
    come first). With ``wanted``, loading stops at the first plugin that offers it (a built-in chain loads no
    third-party plugin at all). ``origins`` (if given) is filled with each chain's plugin name ("built-in"
    for w3gate's own), for the error that names who signs.
    """
    if plugin_dir is not None:
        plugin_dir = add_plugin_dir(plugin_dir)
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    signers: dict[str, Any] = {}
    for cand in _candidates(Path(plugin_dir) if plugin_dir is not None else None):
        try:
            plugin = cand.load()
            pm.register(plugin, name=f"{cand.name} [{cand.source}]")
            impls = [i for i in pm.hook.w3gate_signers.get_hookimpls() if i.plugin is plugin]
            found: list[Any] = []
            for impl in impls:
                kwargs = {"settings": settings or {}} if "settings" in impl.argnames else {}
                found += list(impl.function(**kwargs) or [])  # type: ignore[call-overload]
        except Exception as exc:  # a broken plugin must not take the others down
            log.error("plugin %r (%s): no signers: %s: %s", cand.name, cand.source, type(exc).__name__, exc)
            continue
        for signer in found:
            if not isinstance(signer, hookspecs.Signer):
                log.error("plugin %r: %r is not a Signer (needs name, sign_in and load)", cand.name, signer)
                continue
            name = signer.name.strip().lower()
            if name not in signers:
                signers[name] = signer
                if origins is not None:
                    origins[name] = "built-in" if cand.source == "built-in" else cand.name
        if wanted is not None and wanted.strip().lower() in signers:
            break
    return signers


def format_plugins(registry: ChainRegistry) -> str:
    """The ``w3gate plugins`` listing: each plugin's name, version, chain types and origin, then failures."""
    rows = [("NAME", "VERSION", "CHAIN TYPES", "FROM")]
    for p in registry.plugins:
        types = (" ".join(p.aliases) + (" (admission)" if p.admits else "")).strip() or "-"
        if p.disabled:
            types += f" (not allowed: {' '.join(p.disabled)})"
        rows.append((p.name, p.version, types, p.source))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"w3gate plugins (hookspec {hookspecs.HOOKSPEC_VERSION})"]
    if registry.plugin_dir is not None:
        lines.append(f"plugin dir: {registry.plugin_dir}")
    lines += ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    if registry.failures:
        lines.append("")
        lines.append("failed to load:")
        lines += [f"  {f.name} ({f.source}): {f.cause}" for f in registry.failures]
    return "\n".join(lines) + "\n"
