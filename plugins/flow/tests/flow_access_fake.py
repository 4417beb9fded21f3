"""A loopback stand-in for a Flow access node, speaking the Flow Access REST API's wire format for the one
call the plugin makes: ``GET /v1/accounts/{address}?expand=keys``, uint64 fields as decimal strings, 404
with ``{"code", "message"}`` for an unknown account. Keys are real ones made by :class:`FlowKey`."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from coincurve import PrivateKey
from Crypto.Hash import SHA3_256, SHA256
from Crypto.PublicKey import ECC
from Crypto.Signature import DSS
from Crypto.Util.asn1 import DerSequence

USER_DOMAIN_TAG = b"FLOW-V0.0-user".ljust(32, b"\0")


@dataclass
class FlowKey:
    """A real account key: ECDSA_P256 (pycryptodome) or ECDSA_secp256k1 (coincurve)."""

    signing_algorithm: str = "ECDSA_P256"
    hashing_algorithm: str = "SHA3_256"
    weight: int = 1000
    revoked: bool = False
    _p256: object = field(default=None, repr=False)
    _k1: PrivateKey | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.signing_algorithm == "ECDSA_P256":
            self._p256 = ECC.generate(curve="P-256")
        else:
            self._k1 = PrivateKey()

    @property
    def public_key(self) -> bytes:
        if self._p256 is not None:
            q = self._p256.pointQ
            return int(q.x).to_bytes(32, "big") + int(q.y).to_bytes(32, "big")
        return self._k1.public_key.format(compressed=False)[1:]

    def sign(self, data: bytes, hashing_algorithm: str | None = None) -> bytes:
        """r‖s over ``data`` hashed with the key's algorithm (or another, to test mismatches)."""
        algorithm = hashing_algorithm or self.hashing_algorithm
        if self._p256 is not None:
            digest = SHA3_256.new(data) if algorithm == "SHA3_256" else SHA256.new(data)
            return DSS.new(self._p256, "fips-186-3").sign(digest)
        hasher = (lambda m: hashlib.sha3_256(m).digest()) if algorithm == "SHA3_256" else (
            lambda m: hashlib.sha256(m).digest())
        r, s = DerSequence().decode(self._k1.sign(data, hasher=hasher))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def sign_user_message(self, address: str) -> bytes:
        """What FCL's ``currentUser.signUserMessage(hex(utf8(address)))`` has the wallet sign."""
        return self.sign(USER_DOMAIN_TAG + address.encode())


def composite(addr: str, key_id: int, signature: bytes) -> dict:
    return {"f_type": "CompositeSignature", "f_vsn": "1.0.0", "addr": addr, "keyId": key_id,
            "signature": signature.hex()}


class FlowAccessNode:
    """``with FlowAccessNode() as node: node.accounts["0x..."] = [FlowKey(), ...]; node.url``."""

    def __init__(self) -> None:
        self.accounts: dict[str, list[FlowKey]] = {}
        self.requests: list[str] = []
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                node.requests.append(self.path)
                parts = urlsplit(self.path)
                segments = parts.path.strip("/").split("/")
                if len(segments) != 3 or segments[:2] != ["v1", "accounts"]:
                    return self._send(404, {"code": 404, "message": "Not Found"})
                address = "0x" + segments[2].lower().removeprefix("0x").rjust(16, "0")
                keys = node.accounts.get(address)
                if keys is None:
                    return self._send(404, {"code": 404, "message": f"account {address} not found"})
                body = {"address": address, "balance": "100000",
                        "_expandable": {"contracts": "contracts"},
                        "_links": {"_self": f"/v1/accounts/{address}"}}
                if "keys" in parse_qs(parts.query).get("expand", [""])[0].split(","):
                    body["keys"] = [
                        {"index": str(i), "public_key": "0x" + k.public_key.hex(),
                         "signing_algorithm": k.signing_algorithm, "hashing_algorithm": k.hashing_algorithm,
                         "sequence_number": "0", "weight": str(k.weight), "revoked": k.revoked}
                        for i, k in enumerate(keys)
                    ]
                else:
                    body["_expandable"]["keys"] = "keys"
                self._send(200, body)

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FlowAccessNode:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
