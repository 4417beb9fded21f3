"""The Pinning Service API's operations, independent of HTTP: validate, store, shape PinStatus."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from w3gate.cids import CidError, ContentId, parse
from w3gate.domain.pins import NewPin, PinQuery, PinRecord
from w3gate.errors import ApiError, bad_request, not_found
from w3gate.hookspecs import Identity
from w3gate.multiaddrs import MultiaddrError, check_multiaddr
from w3gate.services.clock import UniqueMillis
from w3gate.store.db import StatementTimeout
from w3gate.store.interface import Store
from w3gate.store.models import PIN_STATUSES
from w3gate.store.pins import UNBOUNDED
from w3gate.store.users import QuotaExceeded
from w3gate.timestamps import rfc3339_ms

if TYPE_CHECKING:
    from w3gate.admission.service import Admission

__all__ = ["PIN_STATUSES", "PinQuery", "PinService", "check_cid", "check_meta", "check_text", "parse_pin"]

MAX_NAME = 255
MAX_CID = 255
MAX_ORIGINS = 20
MAX_META = 1000
MAX_META_KEY = 255
MAX_META_VALUE = 4096
# every requestid w3gate issues is str(uuid4()); anything else names no pin (and a longer one broke the
# ORM's length check with a 500)
REQUESTID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# what no database of ours can hold in text: U+0000 (PostgreSQL refuses it) and lone surrogates (no UTF-8 form)
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _no_such_pin(requestid: str) -> ApiError:
    return not_found(f"no pin request {requestid[:80]!r} for this user")


def check_requestid(requestid: str) -> str:
    """``requestid`` if it has the form of one w3gate issues, else the spec's 404 (before any query)."""
    if not REQUESTID.fullmatch(requestid):
        raise _no_such_pin(requestid)
    return requestid


def check_text(text: str, what: str) -> str:
    """``text`` if every database can store it, else the spec's 400 naming ``what`` (SQLite could store a
    NUL that PostgreSQL cannot: refused on both, so that clients see one contract)."""
    if (found := UNSTORABLE.search(text)) is not None:
        char = found.group()
        kind = "NUL" if char == "\x00" else "a lone surrogate"
        raise bad_request(f"{what} contains U+{ord(char):04X} ({kind}), which cannot be stored")
    return text


def check_cid(text: Any, what: str = "cid") -> ContentId:
    """A CID string parsed by the field's library (v0 ``Qm…`` or any v1 multibase): its text as given, its
    content key and its order text (:mod:`w3gate.cids`); a CID holding no data to store is refused."""
    if not isinstance(text, str) or not text:
        raise bad_request(f"{what} must be a non-empty string")
    if len(text) > MAX_CID:
        raise bad_request(f"{what} is too long ({len(text)} characters, at most {MAX_CID})")
    check_text(text, what)
    try:
        content = parse(text)
    except CidError as exc:
        raise bad_request(f"{what} {text[:80]!r} {exc}") from None
    if len(content.key) > MAX_CID:
        raise bad_request(f"{what} is too long as CIDv1 base32 ({len(content.key)} characters, at most {MAX_CID})")
    return content


def check_meta(meta: Any, what: str = "meta") -> dict[str, str]:
    if not isinstance(meta, dict):
        raise bad_request(f"{what} must be a JSON object of string keys and string values")
    if len(meta) > MAX_META:
        raise bad_request(f"{what} has {len(meta)} keys, at most {MAX_META} are allowed")
    for key, value in meta.items():
        if not isinstance(value, str):
            raise bad_request(f"{what}[{key!r}] must be a string")
        if not key or len(key) > MAX_META_KEY:
            raise bad_request(f"{what} keys must be 1 to {MAX_META_KEY} characters")
        if len(value) > MAX_META_VALUE:
            raise bad_request(f"{what}[{key!r}] is longer than {MAX_META_VALUE} characters")
        check_text(key, f"a {what} key")
        check_text(value, f"{what}[{key!r}]")
    return dict(meta)


def parse_pin(body: Any) -> NewPin:
    """Validate a ``Pin`` object from a request body."""
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object (a Pin)")
    if "cid" not in body:
        raise bad_request("cid is required")
    content = check_cid(body["cid"])
    name = body.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise bad_request("name must be a string")
        if len(name) > MAX_NAME:
            raise bad_request(f"name is longer than {MAX_NAME} characters")
        check_text(name, "name")
    origins = body.get("origins")
    if origins is None:
        origins = []
    if not isinstance(origins, list):
        raise bad_request("origins must be an array of multiaddrs")
    if len(origins) > MAX_ORIGINS:
        raise bad_request(f"origins has {len(origins)} entries, at most {MAX_ORIGINS} are allowed")
    for addr in origins:
        if isinstance(addr, str):
            check_text(addr, "origins")
        try:
            check_multiaddr(addr)
        except MultiaddrError as exc:
            raise bad_request(f"origins: {str(addr)[:100]!r} is not a valid multiaddr: {exc}") from None
    if len(set(origins)) != len(origins):
        raise bad_request("origins must not contain duplicates")
    meta = body.get("meta")
    meta = {} if meta is None else check_meta(meta)
    return NewPin(cid=content.text, name=name, origins=tuple(origins), meta=meta, key=content.key,
                  order_cid=content.order)


class PinService:
    """What the HTTP layer calls; every method is scoped to one owner (a user key)."""

    def __init__(self, db: Store, delegates: Sequence[str], admission: Admission | None = None,
                 replicas: int = 3, node: bool = False) -> None:
        self.db = db
        # replaced in place by the IPFS node's addresses once it answers (w3gate.ordering.fetcher)
        self.delegates = list(delegates)
        self.replicas = replicas  # the replica threshold of ``pinned``, for status_details
        self.node = node  # an IPFS node fetches content first: status_details says where a pin is
        self.clock = UniqueMillis()
        self.admission = admission  # None: every valid pin is accepted (scripts, tests of the store)

    def status_of(self, record: PinRecord) -> dict[str, Any]:
        pin: dict[str, Any] = {"cid": record.cid}
        if record.name is not None:
            pin["name"] = record.name
        if record.origins:
            pin["origins"] = record.origins
        if record.meta:
            pin["meta"] = record.meta
        return {
            "requestid": record.requestid,
            "status": record.status,
            "created": rfc3339_ms(record.created_ms),
            "pin": pin,
            "delegates": self.delegates,
            "info": self._info(record) if self.node else record.info,
        }

    def _info(self, record: PinRecord) -> dict[str, str]:
        """The stored info, with ``status_details`` saying where the pin is when nothing more specific is known
        (the fetcher's "fetching" / "waiting for providers", or an order's error, are)."""
        info = dict(record.info)
        if "status_details" not in info:
            replicas = f"replicas {info.get('replicas', '0')} of {self.replicas}"
            details = {"queued": "queued: to be fetched by the IPFS node" if "dag_size" not in info else
                       "fetched: to be ordered", "pinning": f"ordered; {replicas}", "pinned": replicas}
            if record.status in details:
                info["status_details"] = details[record.status]
        return info

    async def _stored(self, identity: Identity | None, client: str | None, pin: NewPin, replaces: str | None,
                      write: Any, *args: Any) -> tuple[PinRecord | None, int]:
        """``write(*args, quota, size, address)`` once the admission hooks accept ``pin`` from ``client`` (the
        client address); a quota refusal from the store (its transaction rolled back) becomes the limit's
        Failure."""
        if self.admission is None or identity is None:
            return await write(*args, UNBOUNDED, 0)  # type: ignore[no-any-return]
        quota, size = await self.admission.admit(identity, pin, replaces)
        try:
            return await write(*args, quota, size, self.admission.address_quota(client))  # type: ignore[no-any-return]
        except QuotaExceeded as exc:
            raise self.admission.over_quota(exc, size) from None

    async def add(self, owner: str, body: Any, identity: Identity | None = None,
                  client: str | None = None) -> dict[str, Any]:
        pin = parse_pin(body)
        record, used = await self._stored(identity, client, pin, None, self.db.create_pin, owner, pin,
                                          self.clock.next())
        self.clock.seen(used)
        assert record is not None
        return self.status_of(record)

    async def replace(self, owner: str, requestid: str, body: Any, identity: Identity | None = None,
                      client: str | None = None) -> dict[str, Any]:
        pin = parse_pin(body)
        check_requestid(requestid)
        record, used = await self._stored(identity, client, pin, requestid, self.db.replace_pin, owner, requestid,
                                          pin, self.clock.next())
        self.clock.seen(used)
        if record is None:
            raise _no_such_pin(requestid)
        return self.status_of(record)

    async def get(self, owner: str, requestid: str) -> dict[str, Any]:
        record = await self.db.get_pin(owner, check_requestid(requestid))
        if record is None:
            raise _no_such_pin(requestid)
        return self.status_of(record)

    async def delete(self, owner: str, requestid: str) -> None:
        if not await self.db.delete_pin(owner, check_requestid(requestid)):
            raise _no_such_pin(requestid)

    async def list(self, owner: str, query: PinQuery) -> dict[str, Any]:
        try:
            count, records = await self.db.list_pins(owner, query)
        except StatementTimeout:
            raise ApiError(503, "QUERY_TIMEOUT", (
                f"this list took longer than the service allows ({self.db.statement_timeout:g} s) and was "
                "stopped; narrow it (cid, status, before/after, an exact name) or try again later"
            )) from None
        return {"count": count, "results": [self.status_of(r) for r in records]}
