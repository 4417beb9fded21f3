"""The HTTP face: the Pinning Service API under ``/psa``, ``/healthz``, the web page, CORS and spec-shaped errors,
and the upload gateway ``POST /api/v0/add`` (:mod:`w3gate.http.upload`) behind the same tokens and limits.

Every response that is not a success is the spec's Failure body, whatever raised it: validation, the
framework (unknown route, wrong method, oversized body) or an internal fault, so no framework error page
ever reaches a client.

The operator's endpoints (``/healthz``, ``/metrics``) answer no CORS headers, not even to a preflight: no web
page of another origin is to read them. A wrong ``health_token`` or ``metrics_token`` counts as a failed
sign-in of its client address (``auth_failures_per_minute``), and an address with none left gets 429 for any
operator token it sends, right or wrong, so that guessing has no oracle.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import orjson
import trio
from quart import Response, g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from w3gate.errors import ApiError, unauthorized
from w3gate.hookspecs import Identity
from w3gate.http.connection import Edge, install
from w3gate.http.gate import PREFIX, Gate, Services, failure_body, failure_headers, pin_body
from w3gate.http.hot import HotRoutes
from w3gate.http.queries import parse_list_query
from w3gate.http.upload import install_upload
from w3gate.http.webpage import install_webpage
from w3gate.metrics import CONTENT_TYPE
from w3gate.w3auth.bound import BoundClaims

log = logging.getLogger(__name__)
REASONS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    409: "INSUFFICIENT_FUNDS",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
OPERATOR_PATHS = frozenset({"/healthz", "/metrics"})  # no CORS here (see the module docstring)
__all__ = ["REASONS", "Services", "create_app", "failure"]


def _json(data: Any, status: int) -> Response:
    # orjson: encoding a page of pins was a twentieth of a GET's cost with the standard library
    return Response(orjson.dumps(data), status=status, content_type="application/json")


def failure(err: ApiError) -> Response:
    response = Response(failure_body(err), status=err.status, content_type="application/json")
    for name, value in failure_headers(err):
        response.headers[name] = value
    return response


def create_app(services: Services) -> QuartTrio:
    app = QuartTrio("w3gate", static_folder=None, template_folder=None)
    gate = Gate(services)
    edge = Edge(services.body_first_byte_timeout, services.per_client, services.trusted_proxy_header,
                services.trusted_proxies)
    # connection handling, the access log, request metrics (http/connection.py); GET and POST /psa/pins on
    # their direct path (http/hot.py)
    install(app, services.metrics, edge, HotRoutes(services, gate, edge, app.config))
    app.config["MAX_CONTENT_LENGTH"] = services.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.strict_slashes = False

    async def _cors(response: Response) -> Response:  # async: Quart runs sync hooks in threads
        if not services.cors_origins or _operator_path():
            return response
        # always, whether this origin matched or not: a cache must not serve one origin's answer to another
        # (werkzeug's Headers.get raises and catches a KeyError for an absent header: ~3 us; getlist does not)
        if response.headers.getlist("Vary"):
            response.vary.add("Origin")
        else:
            response.headers["Vary"] = "Origin"
        for name, value in gate.cors(next(iter(request.headers.getlist("Origin")), None),
                                     request.method == "OPTIONS"):
            response.headers[name] = value
        return response

    def _client() -> str | None:
        """The request's client address (:mod:`w3gate.clientaddr`)."""
        header = services.trusted_proxy_header
        return gate.client(request.remote_addr, request.headers.get(header) if header else None)

    async def _identify() -> tuple[Identity, BoundClaims | None]:
        """The request's user (:meth:`Gate.identify`); ``g.client`` is its client address."""
        client = g.client = _client()
        return await gate.identify(request.headers.getlist("Authorization"), client)

    async def _authorize() -> Identity:
        """Authenticate the request, counted against its rates (:func:`_identify`); a Failure if refused."""
        identity, _claims = await _identify()
        g.owner = identity.user_key
        g.identity = identity
        return identity

    @app.before_request
    async def _authenticate() -> Response | None:
        if request.method == "OPTIONS" and not _operator_path():  # CORS preflight needs no token, as in Crust's
            return Response("", status=204)  # gateway; the operator's endpoints have none (405)
        if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
            await _authorize()
        return None

    app.after_request(_cors)

    async def _body() -> Any:
        return pin_body(await request.get_data(cache=False))

    @app.get(f"{PREFIX}/pins")
    async def list_pins() -> Response:
        query = parse_list_query(request.args)
        return _json(await services.pins.list(g.owner, query), 200)

    @app.post(f"{PREFIX}/pins")
    async def add_pin() -> Response:
        return _json(await services.pins.add(g.owner, await _body(), g.identity, g.client), 202)

    @app.get(f"{PREFIX}/pins/<requestid>")
    async def get_pin(requestid: str) -> Response:
        return _json(await services.pins.get(g.owner, requestid), 200)

    @app.post(f"{PREFIX}/pins/<requestid>")
    async def replace_pin(requestid: str) -> Response:
        return _json(await services.pins.replace(g.owner, requestid, await _body(), g.identity,
                                                  g.client), 202)

    @app.delete(f"{PREFIX}/pins/<requestid>")
    async def delete_pin(requestid: str) -> Response:
        await services.pins.delete(g.owner, requestid)
        return Response("", status=202)

    install_webpage(app)  # the page at / (w3gate/http/webpage.py)
    install_upload(app, services.upload, services.pins, _authorize, failure)  # POST /api/v0/add

    @app.get("/auth/params")
    async def auth_params() -> Response:
        if services.tokens is None:
            raise ApiError(404, "NOT_FOUND", "bound tokens are not set up on this service")
        return _json(services.tokens.params(), 200)

    @app.post("/auth/revoke")
    async def auth_revoke() -> Response:
        if services.tokens is None:
            raise ApiError(404, "NOT_FOUND", "bound tokens are not set up on this service")
        identity, claims = await _identify()
        return _json(await services.tokens.revoke(identity.user_key, claims), 200)

    def _operator(secret: str | None) -> bool:
        """Whether the request carries the operator's ``secret``; a wrong one is a failed sign-in of its client
        address, and an address out of them gets 429 (raised) whatever it sends."""
        if not secret:
            return False
        values = request.headers.getlist("Authorization")
        if not values:
            return False  # no guess: the public answer
        admission = services.admission
        client = _client() if admission is not None else None
        if admission is not None:
            admission.check_client(client)
        if _is_operator(secret, values):
            return True
        if admission is not None:
            admission.auth_failed(client)
        return False

    @app.get("/healthz")
    async def healthz() -> Response:
        status, body = await services.health(_operator(services.health_token))
        return _json(body, status)

    @app.get("/metrics")
    async def metrics() -> Response:
        if services.metrics_token and not _operator(services.metrics_token):
            return failure(unauthorized("GET /metrics needs Authorization: Bearer <metrics_token>"))
        extra = await services.stats() if services.stats is not None else []
        # rendering takes a few ms of CPU (every histogram bucket of every label set): not in the event loop
        body = await trio.to_thread.run_sync(services.metrics.render, extra)
        return Response(body, status=200, content_type=CONTENT_TYPE)

    @app.errorhandler(ApiError)
    async def _api_error(err: ApiError) -> Response:
        return failure(err)

    @app.errorhandler(HTTPException)
    async def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        details = err.description or err.name or "request failed"
        if status == 404:
            details = f"no such resource: {request.method} {request.path[:200]}"
        elif status == 405:
            details = f"method {request.method} is not allowed on {request.path[:200]}"
        elif status == 413:
            details = f"the request body is larger than {services.max_body_bytes} bytes"
        reason = REASONS.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_SERVER_ERROR")
        response = failure(ApiError(status, reason, details))
        allowed = getattr(err, "valid_methods", None)  # werkzeug's MethodNotAllowed carries them
        if status == 405 and allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    async def _internal(err: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.path[:200])
        return failure(ApiError(500, "INTERNAL_SERVER_ERROR", "an unexpected error occurred; it was logged"))

    return app


def _operator_path() -> bool:
    return request.path.rstrip("/") in OPERATOR_PATHS


def _is_operator(secret: str, values: list[str]) -> bool:
    """Whether ``values`` (the request's ``Authorization`` headers) are exactly ``Bearer <secret>``, compared in
    constant time (digests of equal length: neither the secret's length nor a prefix is told)."""
    if len(values) != 1:
        return False
    scheme, _, credential = values[0].strip().partition(" ")
    same = hmac.compare_digest(hashlib.sha256(credential.strip().encode("utf-8", "surrogatepass")).digest(),
                               hashlib.sha256(secret.encode()).digest())
    return same and scheme.lower() == "bearer"
