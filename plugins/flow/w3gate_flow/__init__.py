"""Flow for w3gate: an FCL user signature over the address, checked against a Flow access node.

Token (Crust-compatible): ``flow-<0x address>:<base64 JSON array of composite signatures>`` (also
``flo-``), each composite signature ``{"addr", "keyId", "signature"}`` as FCL's ``signUserMessage``
returns it for the message ``hex(utf8(address))``.

A Flow account's keys live on chain (they can be added, weighted and revoked), so a signature can only be
checked against the chain's current state: this plugin asks the operator's access node, configured as
``[chains.flow] access_node = "https://…"`` (its REST API, ``GET /v1/accounts/{address}?expand=keys``).
Without one, every Flow token is refused (said once in the log at start-up).

Rules, stricter than Crust's ``fcl.verifyUserSignatures`` (FORMAT.md section 5, item 3):

* every composite signature's ``addr`` must be the token's address (Crust never compared them, so anyone
  could sign the victim's address with their own account and authenticate as the victim);
* each signature must verify with its key's own curve and hash algorithm (ECDSA P-256 or secp256k1;
  SHA3-256 or SHA2-256) over ``"FLOW-V0.0-user"`` padded to 32 bytes followed by ``utf8(address)``;
* revoked keys do not count, each key counts once, and the keys' weights must add up to 1000.

Identity: ``("flow", "0x" + 16 lower-case hex digits)``.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from coincurve import PublicKey as Secp256k1PublicKey
from Crypto.Hash import SHA3_256, SHA256
from Crypto.PublicKey import ECC
from Crypto.Signature import DSS
from Crypto.Util.asn1 import DerSequence

from w3gate.hookspecs import Credentials, Identity, InvalidSignature, hookimpl
from w3gate.w3auth.nodecodec import node_ascii, node_base64

__version__ = "0.1.0"
NAME = "flow"
ALIASES = ("flow", "flo")
USER_DOMAIN_TAG = b"FLOW-V0.0-user".ljust(32, b"\0")
FULL_WEIGHT = 1000
DEFAULT_TIMEOUT = 10.0
MAX_SIGNATURES = 16
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

log = logging.getLogger(__name__)


def normalize_address(text: str) -> str:
    """``0x`` + 16 lower-case hex digits (Flow addresses are 8 bytes); ValueError otherwise."""
    digits = text.strip().lower().removeprefix("0x")
    if not digits or len(digits) > 16 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError("not a Flow address")
    return "0x" + digits.rjust(16, "0")


@dataclass(frozen=True)
class AccountKey:
    index: int
    public_key: bytes  # 64 bytes, x‖y
    signing_algorithm: str
    hashing_algorithm: str
    weight: int
    revoked: bool


def _hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


def parse_account_keys(document: Mapping[str, Any]) -> dict[int, AccountKey]:
    """The ``keys`` of a Flow REST ``Account`` (uint64 fields arrive as decimal strings)."""
    keys = {}
    for item in document.get("keys") or []:
        key = AccountKey(
            index=int(item["index"]),
            public_key=_hex_bytes(item["public_key"]),
            signing_algorithm=str(item["signing_algorithm"]),
            hashing_algorithm=str(item["hashing_algorithm"]),
            weight=int(item["weight"]),
            revoked=bool(item.get("revoked", False)),
        )
        keys[key.index] = key
    return keys


def _digest(hashing_algorithm: str, data: bytes) -> Any:
    if hashing_algorithm == "SHA3_256":
        return SHA3_256.new(data)
    if hashing_algorithm == "SHA2_256":
        return SHA256.new(data)
    raise InvalidSignature(f"flow: unsupported hashing algorithm {hashing_algorithm}")


def signature_ok(key: AccountKey, data: bytes, signature: bytes) -> bool:
    """ECDSA over ``data`` hashed with the key's algorithm; ``signature`` is r‖s, 32 bytes each."""
    if len(signature) != 64 or len(key.public_key) != 64:
        return False
    digest = _digest(key.hashing_algorithm, data)
    if key.signing_algorithm == "ECDSA_P256":
        try:
            point = ECC.construct(
                curve="P-256",
                point_x=int.from_bytes(key.public_key[:32], "big"),
                point_y=int.from_bytes(key.public_key[32:], "big"),
            )
            DSS.new(point, "fips-186-3").verify(digest, signature)
        except ValueError:
            return False
        return True
    if key.signing_algorithm == "ECDSA_secp256k1":
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        s = min(s, SECP256K1_ORDER - s)  # libsecp256k1 only verifies low-s; Flow accepts both
        try:
            public_key = Secp256k1PublicKey(b"\x04" + key.public_key)
            return public_key.verify(DerSequence([r, s]).encode(), digest.digest(), hasher=None)
        except ValueError:
            return False
    return False


@dataclass
class FlowChain:
    """The Flow verifier; ``access_node`` is the base URL of a Flow Access REST API, or None."""

    access_node: str | None
    timeout: float = DEFAULT_TIMEOUT
    name: str = NAME
    aliases: tuple[str, ...] = field(default=ALIASES)

    def fetch_keys(self, address: str) -> dict[int, AccountKey]:
        assert self.access_node is not None
        url = f"{self.access_node.rstrip('/')}/v1/accounts/{address.removeprefix('0x')}?expand=keys"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                document = json.load(response)
        except urllib.error.HTTPError as exc:
            raise InvalidSignature(f"flow: access node answered {exc.code} for the account") from exc
        except (OSError, ValueError) as exc:
            log.warning("flow: access node %s unreachable or invalid answer: %s", self.access_node, exc)
            raise InvalidSignature("flow: access node unavailable") from exc
        try:
            return parse_account_keys(document)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSignature("flow: access node sent a malformed account") from exc

    def verify(self, credentials: Credentials) -> Identity:
        try:
            address = normalize_address(credentials.address)
        except ValueError as exc:
            raise InvalidSignature("flow: address is not a Flow address") from exc
        try:
            composite = json.loads(node_ascii(node_base64(credentials.signature)))
        except ValueError as exc:
            raise InvalidSignature("flow: signature is not base64 JSON") from exc
        if not isinstance(composite, list) or not composite or len(composite) > MAX_SIGNATURES:
            raise InvalidSignature("flow: signature is not a list of composite signatures")
        signatures: dict[int, bytes] = {}
        try:
            for item in composite:
                if normalize_address(str(item["addr"])) != address:
                    raise InvalidSignature("flow: a composite signature is by another account")
                key_id = int(item["keyId"])
                if key_id in signatures:
                    raise InvalidSignature("flow: one key signed twice")
                signatures[key_id] = _hex_bytes(str(item["signature"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidSignature("flow: malformed composite signature") from exc
        if self.access_node is None:
            raise InvalidSignature("flow: no access node configured")
        keys = self.fetch_keys(address)
        data = USER_DOMAIN_TAG + credentials.address.encode()
        weight = 0
        for key_id, signature in signatures.items():
            key = keys.get(key_id)
            if key is None or key.revoked:
                raise InvalidSignature(f"flow: key {key_id} is unknown or revoked")
            if not signature_ok(key, data, signature):
                raise InvalidSignature(f"flow: signature of key {key_id} does not verify")
            weight += key.weight
        if weight < FULL_WEIGHT:
            raise InvalidSignature("flow: the signing keys' weights add up to less than 1000")
        return Identity(NAME, address, credentials.address)


@hookimpl
def w3gate_chains(settings: Mapping[str, Any]) -> list[FlowChain]:
    options = settings.get(NAME) or {}
    access_node = options.get("access_node") or None
    if access_node is None:
        log.warning("flow: no [chains.flow] access_node configured: every flow token will be refused")
    elif urllib.parse.urlsplit(access_node).scheme not in ("http", "https"):
        raise ValueError(f"flow: access_node must be an http(s) URL, got {access_node!r}")
    return [FlowChain(access_node, float(options.get("timeout", DEFAULT_TIMEOUT)))]
