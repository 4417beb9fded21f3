"""What every API request goes through, whichever path serves it (the app's routes, :mod:`w3gate.http.app`, or
the direct path of the busiest routes, :mod:`w3gate.http.hot`): the token check with its limits, CORS, and the
spec's Failure answers. Written once here so that both paths answer alike, byte for byte."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from w3gate.admission.service import Admission
from w3gate.clientaddr import AddressCounts, Network, client_address
from w3gate.errors import ApiError, bad_request, unauthorized
from w3gate.hookspecs import Identity
from w3gate.http.upload import UploadGateway
from w3gate.metrics import Metrics
from w3gate.services.pins import PinService
from w3gate.services.tokens import TokenService
from w3gate.w3auth import bound
from w3gate.w3auth.authenticator import W3AUTH_OFF, Authenticator, AuthError
from w3gate.w3auth.bound import BoundClaims
from w3gate.w3auth.token import EMPTY_SIGNATURE, INVALID_SIGNATURE, UNSUPPORTED

PREFIX = "/psa"
REALM = "w3gate"
# an authentication failure's details -> its w3gate_auth_results label (a bounded set, never the text itself)
AUTH_RESULTS = {EMPTY_SIGNATURE: "missing", INVALID_SIGNATURE: "invalid_signature", UNSUPPORTED: "unsupported_chain",
                W3AUTH_OFF: "w3auth_off"}
# a bound token's refusal details start with one of these (w3gate.w3auth.bound)
BOUND_RESULTS = {bound.WRONG_DOMAIN: "wrong_domain", bound.EXPIRED: "expired", bound.REVOKED: "revoked",
                 bound.NOT_YET_VALID: "not_yet_valid", bound.BAD_SIGNATURE: "invalid_signature",
                 bound.MALFORMED: "malformed"}
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET,HEAD,POST,DELETE",  # the API's methods, no others
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "86400",
}


@dataclass
class Services:
    pins: PinService
    authenticator: Authenticator
    health: Callable[[bool], Awaitable[tuple[int, dict[str, Any]]]]  # (detailed) -> (status, body)
    cors_origins: tuple[str, ...] = ("*",)
    max_body_bytes: int = 256 * 1024
    health_token: str | None = None  # the operator's token for /healthz details; None: details to nobody
    admission: Admission | None = None  # limits and access (None: none)
    trusted_proxy_header: str = ""  # the header naming the client when the peer is a trusted proxy
    trusted_proxies: tuple[Network, ...] = ()
    tokens: TokenService | None = None  # bound tokens: GET /auth/params, POST /auth/revoke
    metrics: Metrics = field(default_factory=Metrics)
    stats: Callable[[], Awaitable[list[Any]]] | None = None  # families read at scrape time (services.stats)
    metrics_token: str | None = None  # None: /metrics is open to anyone who can reach it
    body_first_byte_timeout: float = 5.0  # seconds from a request head to its body's first byte (then 408)
    per_client: AddressCounts | None = None  # requests in flight per client named by a trusted proxy
    upload: UploadGateway = field(default_factory=lambda: UploadGateway(None))  # POST /api/v0/add (api/upload.py)


def auth_result(details: str) -> str:
    """The ``w3gate_auth_results`` label of a refusal's details."""
    if (label := AUTH_RESULTS.get(details)) is not None:
        return label
    return next((label for prefix, label in BOUND_RESULTS.items() if details.startswith(prefix)), "other")


def failure_headers(err: ApiError) -> list[tuple[str, str]]:
    """The headers a Failure answer carries besides its content type and length."""
    headers = []
    if err.retry_after is not None:
        headers.append(("Retry-After", str(err.retry_after)))
    if err.status == 401:  # RFC 9110 section 11.6.1: a 401 names the scheme it wants
        headers.append(("WWW-Authenticate", f'Bearer realm="{REALM}"'))
    return headers


def pin_body(raw: bytes | str) -> Any:
    """A request body's JSON (a Pin object, checked by the pin service), or the spec's 400."""
    if not raw:
        raise bad_request("the request body is empty; a JSON Pin object is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # also invalid UTF-8, lone surrogates, nesting over 1024
        raise bad_request(f"the request body is not valid JSON: {exc}") from None


def failure_body(err: ApiError) -> bytes:
    # orjson: encoding a page of pins was a twentieth of a GET's cost with the standard library
    return orjson.dumps(err.body())


class Gate:
    """The checks of :mod:`w3gate.http.gate` bound to the service's parts."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def client(self, peer: str | None, named: str | None) -> str | None:
        """The request's client address (:mod:`w3gate.clientaddr`): the peer, or the one a trusted proxy names
        in ``named`` (the value of ``trusted_proxy_header``)."""
        return client_address(peer, named if self.services.trusted_proxy_header else None,
                              self.services.trusted_proxies)

    async def identify(self, authorizations: list[str], client: str | None) -> tuple[Identity, BoundClaims | None]:
        """The user of a request carrying ``authorizations`` (its ``Authorization`` headers) from ``client``, with
        its address's auth-failure limit (raises the Failure), counted against its identity's and its address's
        request rates. Several headers are refused rather than one picked."""
        services = self.services
        admission = services.admission
        try:
            if len(authorizations) > 1:
                raise unauthorized(f"{len(authorizations)} Authorization headers were sent; send exactly one")
            found = await services.authenticator.authenticate_claims(
                authorizations[0] if authorizations else None, client,
                before_check=None if admission is None else lambda: admission.check_client(client))
        except AuthError as exc:
            services.metrics.auth_result(auth_result(exc.details))
            if admission is not None:
                admission.auth_failed(client)
            raise unauthorized(exc.details) from None
        except ApiError as exc:  # several Authorization headers (401), too many checks or failures (429)
            services.metrics.auth_result("several_headers" if exc.status == 401 else "throttled")
            raise
        services.metrics.auth_result("ok")
        if admission is not None:
            admission.check_request(found[0], client)
        return found

    def cors(self, origin: str | None, preflight: bool) -> list[tuple[str, str]]:
        """The CORS headers of an API answer to a request from ``origin`` (``Vary: Origin`` aside, which every
        such answer carries)."""
        origins = self.services.cors_origins
        if not origin or not ("*" in origins or origin in origins):
            return []
        headers = [("Access-Control-Allow-Origin", "*" if "*" in origins else origin)]
        if preflight:
            headers.extend(CORS_HEADERS.items())
        return headers
