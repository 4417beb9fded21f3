"""Ethereum (and EVM chains: polygon) W3Auth verifier, compatible with Crust's ethers 5.7.2 check.

A token is ``eth-<0x address>:<signature hex>``; the signature is an EIP-191 ``personal_sign`` either of
the address *text* (ethers ``signMessage(string)``) or of its 20 raw bytes (MetaMask ``personal_sign``
of the hex string). Signatures are read like ethers ``splitSignature``: 65 bytes with v in {0, 1, 27,
28, ...} (parity of v >= 27), or 64-byte EIP-2098 compact; high-s is accepted (FORMAT.md, ethereum).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import coincurve
from eth_account.messages import defunct_hash_message

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, hookimpl
from w3gate.w3auth.token import js_trim
from w3gate.wallets.secp256k1 import eth_address_bytes, key_identity, recover

NAME = "ethereum"
ALIASES = ("ethereum", "eth", "polygon", "pol")

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX_BODY = re.compile(r"(?:[0-9a-fA-F]{2})*")


def split_signature(text: str) -> tuple[bytes, int]:
    """``(r||s, recid)`` the way ethers 5 ``splitSignature`` reads a hex signature (0x optional)."""
    body = text[2:] if text.startswith("0x") else text  # the handler prepends 0x when it is missing
    if not _HEX_BODY.fullmatch(body):
        raise InvalidSignature("signature is not even-length hex")
    raw = bytes.fromhex(body)
    if len(raw) == 64:  # EIP-2098: yParity is the top bit of s
        v = 27 + (raw[32] >> 7)
        raw = raw[:32] + bytes([raw[32] & 0x7F]) + raw[33:]
    elif len(raw) == 65:
        v = raw[64]
        raw = raw[:64]
        if v < 27:
            if v not in (0, 1):
                raise InvalidSignature(f"signature v byte {v} is invalid")
            v += 27
    else:
        raise InvalidSignature(f"signature is {len(raw)} bytes, not 64 or 65")
    return raw, 1 - (v % 2)


def recover_personal_key(message: bytes, rs: bytes, recid: int) -> coincurve.PublicKey | None:
    """The key that EIP-191-signed ``message``, or None."""
    return recover(bytes(defunct_hash_message(primitive=message)), rs, recid)


def recover_personal(message: bytes, rs: bytes, recid: int) -> str | None:
    """Lower-case 0x address that EIP-191-signed ``message``, or None."""
    key = recover_personal_key(message, rs, recid)
    return None if key is None else "0x" + eth_address_bytes(key).hex()


class EthereumChain:
    """Verifies ``eth-`` tokens; the identity is the lower-case address, whatever its casing in the token."""

    name = NAME
    aliases = ALIASES

    def verify(self, credentials: Credentials) -> Identity | None:
        address = credentials.address
        wanted = js_trim(address).lower()
        if not _ADDRESS.fullmatch(wanted):
            raise InvalidSignature("address is not 0x + 40 hex digits")
        rs, recid = split_signature(credentials.signature)
        # 1: EIP-191 over the address text exactly as given (so its casing matters);
        # 2: EIP-191 over the 20 raw address bytes (any casing).
        candidates = [address.encode()]
        if _ADDRESS.fullmatch(address):
            candidates.append(bytes.fromhex(address[2:]))
        for message in candidates:
            key = recover_personal_key(message, rs, recid)
            if key is not None and "0x" + eth_address_bytes(key).hex() == wanted:
                return key_identity(key, address)
        return None

    def identity_of(self, address: str) -> Identity | None:
        """The user of an address in any case (the lower-case address), without a signature."""
        wanted = address.strip().lower()
        return Identity(chain=NAME, account=wanted, address=address) if _ADDRESS.fullmatch(wanted) else None

    sign_in = "Ethereum"

    def verify_sign_in(self, address: str, message: bytes, signature: bytes) -> Identity | None:
        """SIWE: an EIP-191 ``personal_sign`` of the message by the EIP-55 address (siwe checked its case)."""
        if not _ADDRESS.fullmatch(address):
            raise InvalidSignature("address is not 0x + 40 hex digits")
        if len(signature) != 65:
            raise InvalidSignature(f"signature is {len(signature)} bytes, not 65")
        rs, recid = split_signature(signature.hex())
        key = recover_personal_key(message, rs, recid)
        if key is None or "0x" + eth_address_bytes(key).hex() != address.lower():
            return None
        return key_identity(key, address)


@hookimpl
def w3gate_chains(settings: Mapping[str, Any]) -> list[EthereumChain]:
    return [EthereumChain()]


@hookimpl
def w3gate_signers(settings: Mapping[str, Any]) -> list[Any]:
    from w3gate.signers.ethereum import EthereumSigner

    return [EthereumSigner()]
