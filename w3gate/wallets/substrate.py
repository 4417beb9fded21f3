"""Substrate (Crust, Polkadot, ...) W3Auth verifier, compatible with @polkadot/util-crypto's signatureVerify.

A token is ``sub-<address>:<signature hex>``; the message is the address text (raw or wrapped in
``<Bytes>…</Bytes>`` by browser extensions), or for a ``0x`` address also its raw decoded bytes
(Talisman). Keys may be sr25519, ed25519, substrate ECDSA (blake2-256 hashed) or Ethereum-style
(keccak-256, no EIP-191 prefix). FORMAT.md section 4 "substrate" lists every case; one deliberate
difference from Crust's util-crypto 7.9.2: a genuine 65-byte ECDSA signature whose first byte is 0-2 is
accepted (it was mis-read there as a MultiSignature).

Identity: a 32-byte account id ``0x…`` for sr25519/ed25519 keys, whatever SS58 prefix or hex form the token
used; a secp256k1 key (Substrate ECDSA or Ethereum-style) is the ``ethereum`` identity of its address, the
same user as an ``eth-`` token of that key, with its ECDSA account id as an alias (``Identity.aliases``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import base58
import coincurve
import sr25519
from scalecodec.utils.ss58 import ss58_decode

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, hookimpl
from w3gate.w3auth.ed25519 import ed25519_valid
from w3gate.wallets.secp256k1 import eth_address_bytes, keccak256, key_identity, recover, substrate_account_id

NAME = "substrate"
ALIASES = ("substrate", "sub", "crust", "cru")

_HEX_ADDRESS = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_HEX_SIGNATURE = re.compile(r"(?:0x)?((?:[0-9a-fA-F]{2})*)")
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]+")
_SS58_KEY_LENGTHS = (35, 36, 37)  # 1- or 2-byte prefix + 32/33-byte key + 2-byte checksum
_WRAP_OPEN, _WRAP_CLOSE = b"<Bytes>", b"</Bytes>"

ED25519, SR25519, ECDSA = 0, 1, 2  # MultiSignature type bytes


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def decode_address(address: str) -> bytes:
    """The account bytes of an SS58 address (any network prefix, checksum enforced) or of ``0x`` hex.

    Like polkadot's decodeAddress, hex input is taken as raw bytes of any length (a 32-byte key, a
    33-byte compressed ECDSA key or a 20-byte Ethereum address).
    """
    if _HEX_ADDRESS.fullmatch(address):
        return bytes.fromhex(address[2:])
    if not _BASE58.fullmatch(address):
        raise InvalidSignature("address is neither SS58 nor 0x hex")
    raw = base58.b58decode(address)
    # polkadot also decodes 1..8-byte account indices, but only a 32/33-byte key can sign
    if len(raw) not in _SS58_KEY_LENGTHS:
        raise InvalidSignature(f"SS58 address of {len(raw)} bytes holds no public key")
    if raw[0] & 0x80:
        raise InvalidSignature("SS58 prefix byte has bit 7 set")
    try:
        return bytes.fromhex(ss58_decode(address))
    except (ValueError, IndexError) as exc:
        raise InvalidSignature(f"bad SS58 address: {exc}") from None


def decode_signature(text: str) -> bytes:
    """Hex with or without ``0x``, any case; 64, 65 or 66 bytes."""
    match = _HEX_SIGNATURE.fullmatch(text)
    if match is None:
        raise InvalidSignature("signature is not even-length hex")
    raw = bytes.fromhex(match.group(1))
    if len(raw) not in (64, 65, 66):
        raise InvalidSignature(f"signature is {len(raw)} bytes, not 64..66")
    return raw


def messages_for(address: str) -> Iterator[bytes]:
    """The messages a wallet may have signed for this address, each raw and ``<Bytes>``-wrapped."""
    bases = [address.encode()]
    if _HEX_ADDRESS.fullmatch(address):  # the "Talisman fix": a 0x address is also signed as bytes
        bases.append(bytes.fromhex(address[2:]))
    for message in bases:
        yield message
        if message.startswith(_WRAP_OPEN) and message.endswith(_WRAP_CLOSE):
            yield message[len(_WRAP_OPEN) : -len(_WRAP_CLOSE)]
        else:
            yield _WRAP_OPEN + message + _WRAP_CLOSE


def _account_identity(account_id: bytes, address: str) -> Identity:
    return Identity(chain=NAME, account="0x" + account_id.hex(), address=address)


def _verify_ed25519(message: bytes, sig: bytes, account: bytes) -> bool:
    return ed25519_valid(account, message, sig)


def _verify_sr25519(message: bytes, sig: bytes, account: bytes) -> bool:
    if len(sig) != 64 or len(account) != 32:
        return False
    try:
        return bool(sr25519.verify(sig, message, account))
    except Exception:  # the binding raises on malformed points
        return False


def _verify_ecdsa(message: bytes, sig: bytes, account: bytes, address: str) -> Identity | None:
    """Substrate ECDSA (blake2-256 of the message) then Ethereum-style (keccak-256, no prefix): either way the
    key's one identity (:func:`~w3gate.wallets.secp256k1.key_identity`), the user of its ``eth-`` tokens."""
    if len(sig) != 65:
        return None
    rs, recid = sig[:64], sig[64]
    key = recover(blake2_256(message), rs, recid)
    if key is not None:
        compressed = key.format(compressed=True)
        if account in (substrate_account_id(key), compressed):
            return key_identity(key, address)
    key = recover(keccak256(message), rs, recid)
    if key is not None:
        eth = eth_address_bytes(key)
        expanded = key.format(compressed=False)[1:]
        if account == expanded or (len(account) >= 20 and account[-20:] == eth):
            return key_identity(key, address)
    return None


def verify_message(message: bytes, sig: bytes, account: bytes, address: str) -> Identity | None:
    """One message against one signature, the way util-crypto dispatches on the signature's shape."""
    if len(sig) in (65, 66) and sig[0] in (ED25519, SR25519, ECDSA):
        kind, body = sig[0], sig[1:]
        if kind == ED25519 and _verify_ed25519(message, body, account):
            return _account_identity(account, address)
        if kind == SR25519 and _verify_sr25519(message, body, account):
            return _account_identity(account, address)
        if kind == ECDSA and (identity := _verify_ecdsa(message, body, account, address)):
            return identity
        # Not a MultiSignature after all: a plain ECDSA signature whose r starts with 00..02 (v030).
        return _verify_ecdsa(message, sig, account, address)
    if len(sig) == 64:
        if _verify_sr25519(message, sig, account) or _verify_ed25519(message, sig, account):
            return _account_identity(account, address)
        return None
    return _verify_ecdsa(message, sig, account, address)


class SubstrateChain:
    """Verifies ``sub-`` tokens of every key type polkadot.js signatureVerify knows."""

    name = NAME
    aliases = ALIASES

    def verify(self, credentials: Credentials) -> Identity | None:
        account = decode_address(credentials.address)
        sig = decode_signature(credentials.signature)
        for message in messages_for(credentials.address):
            identity = verify_message(message, sig, account, credentials.address)
            if identity is not None:
                return identity
        return None

    def identity_of(self, address: str) -> Identity | None:
        """The user of an address without a signature: a 32-byte key as is (an ECDSA key's account id too:
        it names no key, the identity's alias matches it), a 33-byte ECDSA key by its Ethereum address,
        20 bytes as the Ethereum account it names; any SS58 prefix or hex."""
        try:
            account = decode_address(address.strip())
        except InvalidSignature:
            return None
        if len(account) == 32:
            return _account_identity(account, address)
        if len(account) == 33:  # a compressed ECDSA key: the user of that key (its Ethereum address)
            try:
                return key_identity(coincurve.PublicKey(account), address)
            except ValueError:  # not a point on the curve: nobody's key
                return None
        if len(account) == 20:
            return Identity(chain="ethereum", account="0x" + account.hex(), address=address)
        return None

    sign_in = "Substrate"

    def verify_sign_in(self, address: str, message: bytes, signature: bytes) -> Identity | None:
        """SIWS: the message signed raw or ``<Bytes>``-wrapped (signRaw), any key type ``verify`` knows."""
        account = decode_address(address)
        if len(signature) not in (64, 65, 66):
            raise InvalidSignature(f"signature is {len(signature)} bytes, not 64..66")
        for candidate in (message, _WRAP_OPEN + message + _WRAP_CLOSE):
            identity = verify_message(candidate, signature, account, address)
            if identity is not None:
                return identity
        return None


@hookimpl
def w3gate_chains(settings: Mapping[str, Any]) -> list[SubstrateChain]:
    return [SubstrateChain()]


@hookimpl
def w3gate_signers(settings: Mapping[str, Any]) -> list[Any]:
    from w3gate.signers.substrate import SubstrateSigner

    return [SubstrateSigner()]
