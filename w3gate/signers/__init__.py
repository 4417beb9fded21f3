"""Keys from the secrets wallets export, for ``w3gate token`` (the built-in :class:`~w3gate.hookspecs.Signer` s).

Each module turns one chain's secret forms into a key that signs W3Auth tokens and sign-in messages exactly
as that chain's wallets do, so a token made here is the user's token in the wallet too: same address, same
identity. Errors never quote the secret.
"""

from __future__ import annotations

import re

HEX_32 = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")
HEX_64 = re.compile(r"(?:0x)?[0-9a-fA-F]{128}")


def words(secret: str) -> str:
    """A mnemonic as BIP39 wants it: single spaces, lower case."""
    return " ".join(secret.split()).lower()


def is_mnemonic(secret: str) -> bool:
    return len(secret.split()) in (12, 15, 18, 21, 24) and all(w.isalpha() for w in secret.split())


def from_hex(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))
