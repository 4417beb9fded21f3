"""Substrate keys as polkadot.js derives them: ``mnemonic[//hard/soft][///password]``, dev URIs (``//Alice``)
and a raw 32-byte seed in hex; sr25519, the polkadot.js extension's default key type (substrate-interface)."""

from __future__ import annotations

from substrateinterface import Keypair

from w3gate.signers import HEX_32, from_hex

SS58_FORMAT = 66  # Crust's prefix; any prefix names the same user (the identity is the account id)


class SubstrateKey:
    def __init__(self, keypair: Keypair) -> None:
        self._keypair = keypair
        self.address: str = keypair.ss58_address

    def __repr__(self) -> str:
        return f"SubstrateKey({self.address})"

    def w3auth_credentials(self) -> str:
        return f"sub-{self.address}:0x{self.sign(self.address.encode()).hex()}"

    def sign(self, message: bytes) -> bytes:
        return bytes(self._keypair.sign(message))


class SubstrateSigner:
    name = "substrate"
    sign_in: str | None = "Substrate"

    def load(self, secret: str) -> SubstrateKey:
        secret = secret.strip()
        try:
            if HEX_32.fullmatch(secret):
                return SubstrateKey(Keypair.create_from_seed(from_hex(secret).hex(), ss58_format=SS58_FORMAT))
            return SubstrateKey(Keypair.create_from_uri(secret, ss58_format=SS58_FORMAT))
        except Exception:  # the library's messages may quote the phrase
            raise ValueError(
                "not a substrate secret: expected a mnemonic (optionally with //hard/soft paths), a dev URI such "
                "as //Alice, or a 32-byte seed in hex"
            ) from None
