"""A pin request as the API and admission see it: plain, frozen values. The store (:mod:`w3gate.store`) reads
and writes them; nothing here knows of a database."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["NewPin", "PinQuery", "PinRecord"]


@dataclass(frozen=True)
class NewPin:
    cid: str  # as the user wrote it
    name: str | None = None
    origins: tuple[str, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    key: str = ""  # the content key (w3gate.cids.ContentId.key); the store takes ``cid`` when empty
    order_cid: str = ""  # the text a new order carries; ``key`` when empty

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self.key or self.cid)
        object.__setattr__(self, "order_cid", self.order_cid or self.key)


@dataclass(frozen=True)
class PinQuery:
    cids: tuple[str, ...] = ()  # content keys
    name: str | None = None
    match: str = "exact"
    statuses: tuple[str, ...] = ()
    before_ms: int | None = None
    after_ms: int | None = None
    meta: tuple[tuple[str, str], ...] = ()
    limit: int = 10


@dataclass(frozen=True)
class PinRecord:
    requestid: str
    cid: str
    name: str | None
    status: str
    created_ms: int
    origins: list[str]
    meta: dict[str, str]
    info: dict[str, str]
