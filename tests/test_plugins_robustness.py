"""Malformed tokens make every first-party chain raise InvalidSignature (a clear refusal), never another
exception: a verifier's own errors would only be logged as crashes."""

from __future__ import annotations

import random
import string

import pytest

from w3gate.hookspecs import Credentials, InvalidSignature
from w3gate.plugins import load_chains

FIRST_PARTY = ("near", "avalanche", "aptos", "algorand", "elrond", "ton", "flow", "xx")
PIECES = ["", "0x", "0X", "zz", "00" * 32, "ff" * 64, "ab" * 33, "1" * 44, "erd1", "avax1", "A" * 58,
          "=" * 8, "e30=", "W10=", "W3siYWRkciI6MX1d", "WyJhIl0=", "bnVsbA==", "\x00\x7f", "é", "-", ":",
          "0x0123456789abcdef", "erd1unjavk4dy6p994m55ahp4kc648aqr662ccc25yv9kpt02fclmers9hha3q"]


@pytest.mark.parametrize("name", FIRST_PARTY)
def test_garbage_is_refused_cleanly(name):
    chain = load_chains(settings={"flow": {"access_node": "http://127.0.0.1:9"}}).lookup(name)
    rng = random.Random(name)
    for _ in range(400):
        def piece() -> str:
            if rng.random() < 0.7:
                return rng.choice(PIECES)
            return "".join(rng.choice(string.printable) for _ in range(rng.randrange(0, 90)))
        credentials = Credentials(name, piece(), piece(), tuple(piece() for _ in range(rng.randrange(0, 5))))
        try:
            identity = chain.verify(credentials)
        except InvalidSignature:
            continue
        pytest.fail(f"{name} accepted garbage {credentials!r} as {identity!r}")
