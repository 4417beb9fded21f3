"""Parsers of setting values as they come from TOML (typed) or the environment (text): one rule for every table."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def parse_bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def parse_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value)
    raise ValueError("expected a list of strings or a comma-separated string")


def parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    return int(value)


def load_table(table: Mapping[str, Any], env: Mapping[str, str], name: str,
               parsers: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """A ``[name]`` table's keys, each overridden by ``W3GATE_<NAME>_<KEY>``, through its parser.

    Raises ValueError with one line naming the table and key; the value itself is never in the message (it
    may be a URL with credentials)."""
    raw = dict(table)
    for key in raw:
        if key not in parsers:
            raise ValueError(f"[{name}]: unknown setting {key!r} (known: {', '.join(parsers)})")
    for key in parsers:
        var = f"W3GATE_{name.upper()}_{key.upper()}"
        if var in env:
            raw[key] = env[var]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            values[key] = parsers[key](value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid [{name}] {key} ({exc})") from None
    return values
