"""Helpers for testing chain plugins (public: docs/plugins.md uses them).

A plugin's tests check its Chain against signed tokens exactly as the service will see them: parsed by
w3gate's own W3Auth parser, dispatched by alias, verified.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from w3gate.hookspecs import Chain, Identity, InvalidSignature
from w3gate.w3auth.token import parse_authorization


def bearer(credentials: str) -> str:
    """The ``Authorization`` value for ``chain-address:signature`` credentials."""
    return "Bearer " + base64.b64encode(credentials.encode()).decode()


def check_token(chain: Chain, header: str) -> Identity | None:
    """Parse ``header`` as the service does and verify it with ``chain``: the identity, or None."""
    credentials = parse_authorization(header)
    if credentials.chain_type.strip().lower() not in {a.lower() for a in chain.aliases}:
        raise AssertionError(f"{credentials.chain_type!r} is not an alias of chain {chain.name!r}")
    try:
        return chain.verify(credentials)
    except InvalidSignature:
        return None


def load_vectors(path: Path | str) -> list[dict[str, Any]]:
    """The ``vectors`` of a W3Auth vectors file (the format of w3gate's tests/data/w3auth_vectors.json)."""
    return json.loads(Path(path).read_text())["vectors"]
