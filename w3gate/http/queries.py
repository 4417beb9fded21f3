"""Reading ``GET /pins`` query parameters exactly as the spec defines them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson
from werkzeug.datastructures import MultiDict

from w3gate.errors import bad_request
from w3gate.services.pins import MAX_NAME, PIN_STATUSES, PinQuery, check_cid, check_meta, check_text

MATCHES = ("exact", "iexact", "partial", "ipartial")
MAX_CIDS = 10
MAX_LIMIT = 1000
# A meta filter is one SQL condition (two bound values) per key: more keys than this is no real query,
# and at 495 keys SQLite's limit of bound values was reached (a 500)
MAX_META_FILTER = 64
# RFC 3339 section 5.6 date-time, nothing looser
RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
META_BRACKET = re.compile(r"^meta\[(.+)\]$")


def _one(args: MultiDict, name: str, what: str | None = None) -> str | None:
    """The one value of parameter ``name`` (None when absent), refused when it holds unstorable text."""
    values = args.getlist(name)
    if not values:
        return None
    what = what or name
    if len(values) > 1:
        raise bad_request(f"{what} was given {len(values)} times; give it once (use a comma list)")
    return check_text(values[0], what)


def _csv(text: str, name: str) -> list[str]:
    items = [p.strip() for p in text.split(",")]
    if any(not p for p in items):
        raise bad_request(f"{name} has an empty item")
    if len(set(items)) != len(items):
        raise bad_request(f"{name} has duplicate items")
    return items


def parse_time_us(text: str, name: str) -> int:
    """RFC 3339 date-time to microseconds since the epoch, or a 400."""
    m = RFC3339.match(text)
    if not m:
        raise bad_request(f"{name} must be an RFC 3339 date-time such as 2020-07-27T17:32:28.276Z")
    frac = (m.group(7) or ".0")[1:]
    base = text[: m.start(7)] if m.group(7) else text[: m.start(8)]
    zone = m.group(8)
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        dt = datetime.fromisoformat(base.replace("t", "T") + zone)
    except ValueError as exc:
        raise bad_request(f"{name} is not a valid date-time: {exc}") from None
    micros = int((frac + "000000")[:6])
    return int(dt.timestamp()) * 1_000_000 + micros


def parse_limit(text: str | None) -> int:
    if text is None:
        return 10
    if not re.fullmatch(r"[0-9]{1,7}", text):  # ASCII digits only: no sign, spaces or other scripts' digits
        raise bad_request(f"limit must be an integer from 1 to {MAX_LIMIT}")
    value = int(text)
    if not 1 <= value <= MAX_LIMIT:
        raise bad_request(f"limit must be from 1 to {MAX_LIMIT}, got {value}")
    return value


def _meta(args: MultiDict) -> dict[str, str]:
    meta: dict[str, Any] = {}
    text = _one(args, "meta")
    if text is not None:
        try:  # orjson: bounded nesting and number sizes, where json raised RecursionError / ValueError
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"meta must be a JSON object string: {str(exc)[:200]}") from None
        meta.update(check_meta(parsed))
    for key in args:
        m = META_BRACKET.match(key)
        if m:  # the generated JS client sends meta[key]=value
            meta[check_text(m.group(1), "a meta key")] = _one(args, key, f"meta[{m.group(1)!r}]")
    if len(meta) > MAX_META_FILTER:
        raise bad_request(f"meta filter has {len(meta)} keys, at most {MAX_META_FILTER} are allowed")
    return check_meta(meta)


def parse_list_query(args: MultiDict) -> PinQuery:
    cid_text = _one(args, "cid")
    cids: list[str] = []
    if cid_text is not None:
        cids = _csv(cid_text, "cid")
        if len(cids) > MAX_CIDS:
            raise bad_request(f"cid takes at most {MAX_CIDS} CIDs, got {len(cids)}")
        # any text form of a CID finds the pins of its content, whatever form they were pinned in
        cids = list(dict.fromkeys(check_cid(c).key for c in cids))
    name = _one(args, "name")
    if name is not None and len(name) > MAX_NAME:
        raise bad_request(f"name is longer than {MAX_NAME} characters")
    match = _one(args, "match")
    match = "exact" if match is None else match
    if match not in MATCHES:
        raise bad_request(f"match must be one of {', '.join(MATCHES)}")
    status_text = _one(args, "status")
    statuses: list[str] = []
    if status_text is not None:
        statuses = _csv(status_text, "status")
        for s in statuses:
            if s not in PIN_STATUSES:
                raise bad_request(f"unknown status {s[:40]!r}: use {', '.join(PIN_STATUSES)}")
    before = _one(args, "before")
    after = _one(args, "after")
    before_ms = -(-parse_time_us(before, "before") // 1000) if before is not None else None
    after_ms = parse_time_us(after, "after") // 1000 if after is not None else None
    meta = _meta(args)
    limit = parse_limit(_one(args, "limit"))
    if not statuses and name is None:
        # the spec: a request that names no status lists pinned pins only, whatever else it filters by
        # (Helia's isPinned(cid) sends cid= alone). The one departure (docs/api.md): a name filter without
        # a status finds pins of every status, as the official conformance suite requires (it creates a
        # pin and expects GET /pins?name=<it> to list it while it is still queued).
        statuses = ["pinned"]
    return PinQuery(
        cids=tuple(cids),
        name=name,
        match=match,
        statuses=tuple(statuses),
        before_ms=before_ms,
        after_ms=after_ms,
        meta=tuple(sorted(meta.items())),
        limit=limit,
    )
