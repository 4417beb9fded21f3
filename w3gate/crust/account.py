"""The ordering account's keypair, from a mnemonic, a raw 0x seed or a secret URI."""

from __future__ import annotations

import re

from substrateinterface import Keypair, KeypairType

_HEX_SEED = re.compile(r"^0x[0-9a-fA-F]{64}$")


def keypair_from_secret(secret: str, key_type: str, ss58_format: int) -> Keypair:
    """The keypair for ``secret``; raises ValueError (whose text never quotes the secret)."""
    crypto = KeypairType.ED25519 if key_type == "ed25519" else KeypairType.SR25519
    try:
        if _HEX_SEED.match(secret):
            return Keypair.create_from_seed(secret, ss58_format=ss58_format, crypto_type=crypto)
        return Keypair.create_from_uri(secret, ss58_format=ss58_format, crypto_type=crypto)
    except Exception:
        raise ValueError("invalid ordering account secret") from None
