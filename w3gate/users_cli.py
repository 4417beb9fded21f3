"""``w3gate users``: the operator's view of who uses the service, and per-user settings.

Works on the service's database (SQLite or PostgreSQL) while the service runs: usage is read as stored
(live pins and bytes are kept by triggers; last seen is written every few seconds), and a change (own
limits, block) moves a version counter that every running instance polls each second, so it takes
effect within about a second, without a restart.

A user is named as ``<chain>:<address>`` in any address form or alias of the key (``substrate:<SS58 of
any network, or 0x hex>``, ``eth:0x...`` in any case) or by the user key ``w3gate users list`` shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from w3gate.domain.users import PER_USER
from w3gate.timestamps import rfc3339_ms

__all__ = ["add_parser", "run"]


def add_parser(sub: Any, common: Any) -> None:
    users = sub.add_parser("users", help="list users, show one, set their own limits, block and unblock")
    common(users)
    users.add_argument("--json", action="store_true", help="print JSON instead of a table")
    actions = users.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="users seen last first: pins, bytes ordered, last seen")
    listing.add_argument("--limit", type=int, default=100)
    actions.add_parser("show", help="one user").add_argument("user")
    setting = actions.add_parser("set", help="set a user's own limits: KEY=N (0: unlimited; 'default': the "
                                 f"configuration's); keys: {', '.join(PER_USER)}")
    setting.add_argument("user")
    setting.add_argument("values", nargs="+", metavar="KEY=VALUE")
    block = actions.add_parser("block", help="refuse the user's pin requests (403 BLOCKED)")
    block.add_argument("user")
    block.add_argument("--note", help="why (kept with the user, shown by show)")
    actions.add_parser("unblock", help="accept the user's pin requests again").add_argument("user")


def _parse_values(values: list[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in PER_USER:
            raise ValueError(f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(PER_USER)}")
        if value.strip().lower() == "default":
            out[key] = None
            continue
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{item!r}: the value must be a whole number >= 0 or 'default'") from None
        if number < 0:
            raise ValueError(f"{item!r}: the value must be >= 0 (0: unlimited)")
        out[key] = number
    return out


def _when(ms: int) -> str:
    """The API's form of an instant (a pin's ``created``), so that the two can be compared as text."""
    return rfc3339_ms(ms) if ms else "-"


def _as_dict(row: Any, limits: Any) -> dict[str, Any]:
    return {
        "user": row.user_key, "address": row.address, "pins": row.pins, "bytes": row.bytes,
        "pins_today": row.pins_today, "last_seen": _when(row.last_seen_ms), "blocked": row.blocked,
        "note": row.note, "own_limits": {k: v for k, v in row.limits.items() if v is not None},
        "limits": {k: (v if v is not None else getattr(limits, k)) for k, v in row.limits.items()},
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("USER", "PINS", "BYTES", "TODAY", "LAST SEEN", "STATE")
    lines = [head]
    for r in rows:
        own = ",".join(f"{k}={v}" for k, v in r["own_limits"].items())
        state = ("blocked " if r["blocked"] else "") + own
        lines.append((r["user"], str(r["pins"]), str(r["bytes"]), str(r["pins_today"]), r["last_seen"],
                      state.strip() or "-"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) + "  " + line[-1]
                     for line in lines)


def run(args: argparse.Namespace, settings: Any) -> int:
    """Run one ``w3gate users`` action; 0, or 2 with one line on stderr for a bad argument."""
    import trio

    from w3gate.admission.identities import resolve_user
    from w3gate.plugins import load_chains

    try:
        user = None
        if getattr(args, "user", None):
            registry = load_chains(plugin_dir=settings.plugin_dir, strict=False, settings=settings.chains)
            user = resolve_user(args.user, registry)
        values = _parse_values(args.values) if args.action == "set" else {}
    except ValueError as exc:
        print(f"w3gate users: {exc}", file=sys.stderr)
        return 2
    out = trio.run(_act, args, settings, user, values)
    if out is None:
        print(f"w3gate users: no user {args.user!r} ({user}) has used this service", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out, indent=2))
    elif isinstance(out, list):
        print(_table(out))
    else:
        print("\n".join(f"{k}: {json.dumps(v) if isinstance(v, dict) else v}" for k, v in out.items()))
    return 0


async def _act(args: argparse.Namespace, settings: Any, user: str | None, values: dict[str, int | None]) -> Any:
    from w3gate.store.db import Database

    db = Database(settings.db_url)
    await db.open()
    try:
        now = int(time.time() * 1000)
        if args.action == "list":
            return [_as_dict(r, settings.limits) for r in await db.list_users(max(1, args.limit), now)]
        if user is None:  # every other action names its user (argparse requires it)
            return None
        if args.action == "set":
            await db.update_settings(user, values)
        elif args.action == "block":
            await db.update_settings(user, {"blocked": 1, "note": args.note})
        elif args.action == "unblock":
            await db.update_settings(user, {"blocked": 0})
        row = await db.get_user(user, now)
        return None if row is None else _as_dict(row, settings.limits)
    finally:
        await db.close()
