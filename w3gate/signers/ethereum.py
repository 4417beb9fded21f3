"""Ethereum keys as MetaMask has them: a BIP39 mnemonic on m/44'/60'/0'/0/0 (MetaMask's first account), a
64-byte BIP39 seed in hex on the same path, or a private key in hex (eth-account)."""

from __future__ import annotations

from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.messages import encode_defunct

from w3gate.signers import HEX_32, HEX_64, from_hex, is_mnemonic, words

PATH = "m/44'/60'/0'/0/0"


class EthereumKey:
    def __init__(self, private_key: bytes) -> None:
        self._account = Account.from_key(private_key)
        self.address: str = self._account.address

    def __repr__(self) -> str:
        return f"EthereumKey({self.address})"

    def w3auth_credentials(self) -> str:
        return f"eth-{self.address}:0x{self.sign(self.address.encode()).hex()}"

    def sign(self, message: bytes) -> bytes:
        """EIP-191 ``personal_sign``, v = 27/28, as MetaMask returns it."""
        return bytes(self._account.sign_message(encode_defunct(primitive=message)).signature)


class EthereumSigner:
    name = "ethereum"
    sign_in: str | None = "Ethereum"

    def load(self, secret: str) -> EthereumKey:
        secret = secret.strip()
        try:
            if HEX_32.fullmatch(secret):
                return EthereumKey(from_hex(secret))
            if HEX_64.fullmatch(secret):
                return EthereumKey(key_from_seed(from_hex(secret), PATH))
            if is_mnemonic(secret):
                return EthereumKey(key_from_seed(seed_from_mnemonic(words(secret), ""), PATH))
        except Exception:
            raise ValueError("not a valid ethereum secret (a mnemonic's checksum or a key's range is wrong)") from None
        raise ValueError(
            "not an ethereum secret: expected a BIP39 mnemonic, a private key (64 hex digits) or a seed (128)"
        )
