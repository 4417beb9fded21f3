"""Naming a user as the operator does (``[access]`` lists, ``w3gate users``): ``<chain>:<address>`` in any
address form or alias of one key, resolved through the chain plugins to the same
:attr:`~w3gate.hookspecs.Identity.user_key` the user's tokens give."""

from __future__ import annotations

from collections.abc import Iterable

from w3gate.plugins import ChainRegistry


def resolve_user(text: str, registry: ChainRegistry) -> str:
    """The user key of ``text`` (``substrate:<ss58 or 0x hex>``, ``eth:0x...``, a user key as listed);
    ValueError says why not. A chain without ``identity_of`` takes the account as written."""
    chain_type, sep, address = text.strip().partition(":")
    if not sep or not address.strip():
        raise ValueError(f"{text!r}: name a user as <chain>:<address>, e.g. substrate:5Grw... or ethereum:0x...")
    chain = registry.lookup(chain_type)
    if chain is None:
        raise ValueError(f"{text!r}: no loaded chain answers to {chain_type!r} (chains: "
                         f"{', '.join(registry.chain_names) or 'none'})")
    identity_of = getattr(chain, "identity_of", None)
    if identity_of is None:
        return f"{chain.name}:{address.strip()}"
    identity = identity_of(address.strip())
    if identity is None:
        raise ValueError(f"{text!r}: {address.strip()!r} is not a {chain.name} address")
    return str(identity.user_key)


def resolve_chains(names: Iterable[str], registry: ChainRegistry) -> frozenset[str]:
    """Chain names or aliases as canonical chain names (an unknown one as written, lower-cased)."""
    out = set()
    for name in names:
        chain = registry.lookup(name)
        out.add(chain.name if chain is not None else name.strip().lower())
    return frozenset(out)
