"""The built-in limits, answering the public admission hook exactly as a third-party plugin does:
the operator's blocks, the ``[access]`` lists, and the ``[limits]`` quotas with each user's own values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from w3gate.admission.settings import Limits
from w3gate.hookspecs import PinRequest, Quota, Refusal, hookimpl
from w3gate.store.users import UserRow


@dataclass(frozen=True)
class AccessLists:
    """``[access]`` resolved: user keys (:attr:`Identity.user_key`) and canonical chain names."""

    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    allow_chains: frozenset[str] = frozenset()
    deny_chains: frozenset[str] = frozenset()


def user_limit(limits: Limits, user: UserRow | None, name: str) -> int:
    """The limit ``name`` for a user: their own value if the operator set one, else the configuration's."""
    own = user.limits.get(name) if user is not None else None
    return int(getattr(limits, name)) if own is None else own


class BuiltinLimits:
    """Registered under the name ``limits``; ``user_of`` is the service's table of users with settings."""

    def __init__(self, limits: Limits, access: AccessLists, user_of: Callable[[str], UserRow | None]) -> None:
        self.limits = limits
        self.access = access
        self.user_of = user_of

    @hookimpl
    def w3gate_admit(self, request: PinRequest) -> Refusal | Quota:
        identity = request.identity
        keys, chain = (identity.user_key, *identity.aliases), identity.chain  # any name of the key counts
        user = next((row for key in keys if (row := self.user_of(key)) is not None), None)
        if user is not None and user.blocked:
            return Refusal("BLOCKED", "this identity is blocked by the operator of this service")
        if not self.access.deny.isdisjoint(keys) or chain in self.access.deny_chains:
            return Refusal("DENIED", "this identity may not pin here: the operator's deny list names it")
        if (self.access.allow or self.access.allow_chains) and not (
                not self.access.allow.isdisjoint(keys) or chain in self.access.allow_chains):
            return Refusal("NOT_ALLOWED", "this service pins only for the identities its operator lists")
        return Quota(pins=user_limit(self.limits, user, "pins_per_user"),
                     bytes=user_limit(self.limits, user, "bytes_per_user"),
                     pins_per_day=user_limit(self.limits, user, "pins_per_day_per_user"))
