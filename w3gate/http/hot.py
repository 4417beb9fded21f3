"""``GET /psa/pins`` and ``POST /psa/pins``, answered straight from Hypercorn's ASGI messages.

These two are nearly all of a pinning client's traffic (Kubo's ``pin remote ls`` and ``add``, the JS client,
Helia). Through Quart a request also pays for a werkzeug request object, a request context, the hook and signal
machinery and a response object: a third of what the framework floor costs (bench/RESULTS.md). Here the same
parts run (:class:`~w3gate.http.gate.Gate` for the token, limits and CORS, :mod:`w3gate.http.queries`,
:class:`~w3gate.services.pins.PinService`), the answer is the same byte for byte, and so are the access log line
and the metrics (``tests/test_http_hot.py`` compares the two paths). The edge's rules of
:mod:`w3gate.http.connection` hold as well: the token is checked before the body is read, a body whose first byte
does not come within ``first_byte_timeout`` is answered 408 and one not complete within ``BODY_TIMEOUT`` too, an
answer given before the whole body came closes the connection, a client that leaves stops the work, and a client
a trusted proxy names is counted against ``max_connections_per_address``.

Anything out of the ordinary is left to the app's routes, which answer every case: another path or method (HEAD,
a trailing slash), a GET with a body, a chunked body, ``Expect: 100-continue``, or a body declared larger than
``max_body_bytes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import RequestTimeout

from w3gate.errors import ApiError
from w3gate.hookspecs import Identity
from w3gate.http.connection import Edge, log_access, no_first_byte, too_many_body, user_label
from w3gate.http.gate import PREFIX, Gate, Services, failure_body, failure_headers, pin_body
from w3gate.http.queries import parse_list_query

log = logging.getLogger("w3gate.http.app")  # the app's logger: an internal error is logged alike on both paths
PINS = f"{PREFIX}/pins"
JSON = [(b"content-type", b"application/json")]
VARY = (b"vary", b"Origin")
CLOSE = (b"connection", b"close")


@dataclass
class Head:
    """What the hot path reads of a request head, in one pass over its headers."""

    method: str
    query: bytes
    peer: str | None
    authorizations: list[str] = field(default_factory=list)
    origin: str | None = None
    named: str | None = None  # the trusted proxy header's first value
    length: int = 0  # the declared body length
    user: str = "-"  # for the access log, once the token is checked


class Body:
    """A request body as its chunks come, with quart's timeout rules."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.complete = False  # every byte has come
        self.arrived = trio.Event()  # complete, or failed
        self.error: ApiError | None = None

    def append(self, chunk: bytes, more: bool) -> None:
        if self.error is None and chunk:
            self.chunks.append(chunk)
        if not more:
            self.complete = True
            self.arrived.set()

    def fail(self, error: ApiError) -> None:
        self.error = error
        self.arrived.set()

    async def read(self, timeout: float | None) -> bytes:
        if not self.arrived.is_set():  # most bodies come with their head
            with trio.move_on_after(float("inf") if timeout is None else timeout) as scope:
                await self.arrived.wait()
            if scope.cancelled_caught:
                raise ApiError(408, "REQUEST_TIMEOUT", RequestTimeout.description)
        if self.error is not None:
            raise self.error
        return b"".join(self.chunks)


Route = Callable[[Head, "Body | None"], Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]]]


class HotRoutes:
    """The direct path of ``GET`` and ``POST /psa/pins`` (see the module docstring)."""

    def __init__(self, services: Services, gate: Gate, edge: Edge, config: MutableMapping[str, Any]) -> None:
        self.services = services
        self.gate = gate
        self.edge = edge
        self.config = config  # the app's: BODY_TIMEOUT and RESPONSE_TIMEOUT are read at each request
        self.proxy_header = services.trusted_proxy_header.lower().encode("latin1")

    def match(self, scope: MutableMapping[str, Any]) -> tuple[Route, Head] | None:
        """The route and head of a request this path answers, else None (the app's routes answer it)."""
        if scope["path"] != PINS or scope.get("root_path"):
            return None
        method = scope["method"]
        if method != "GET" and method != "POST":
            return None
        client = scope.get("client")
        head = Head(method, scope["query_string"], client[0] if client else "<local>")
        lengths = 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                head.authorizations.append(value.decode("latin1"))
            elif name == b"origin":
                if head.origin is None:
                    head.origin = value.decode("latin1")
            elif name == b"content-length":
                lengths += 1
                if not value.isdigit():
                    return None
                head.length = int(value)
            elif name == b"transfer-encoding" or name == b"expect":
                return None
            elif name == self.proxy_header and head.named is None:
                head.named = value.decode("latin1")
        if lengths > 1:
            return None
        if method == "GET":
            return (self._list, head) if not head.length else None
        if not lengths or head.length > self.services.max_body_bytes:
            return None
        return self._add, head

    async def serve(self, route: Route, head: Head, receive: ASGIReceiveCallable, send: ASGISendCallable,
                    started: float) -> None:
        edge = self.edge
        proxied = edge.proxied_client(head.peer, head.named)
        if proxied is None or edge.per_client is None:
            await self._serve(route, head, receive, send, started)
            return
        if not edge.per_client.enter(proxied):
            payload = too_many_body(edge.per_client.limit)
            headers = [(b"retry-after", b"1"), CLOSE, *JSON, (b"content-length", str(len(payload)).encode())]
            await self._send(send, 429, payload, headers)
            self._finished(head, 429, started)
            return
        try:
            await self._serve(route, head, receive, send, started)
        finally:
            edge.per_client.leave(proxied)

    async def _serve(self, route: Route, head: Head, receive: ASGIReceiveCallable, send: ASGISendCallable,
                     started: float) -> None:
        body = Body() if head.method == "POST" else None
        status: int | str = "closed"  # no answer: the client went away first
        async with trio.open_nursery() as nursery:
            handler = trio.CancelScope()
            nursery.start_soon(self._read, receive, body, handler)
            with handler:
                answer = await route(head, body)
            if not handler.cancelled_caught:
                code, payload, headers = answer
                if body is not None and not body.complete:
                    await trio.lowlevel.checkpoint()  # a body that came with its head: let the reader take it
                    if not body.complete:  # answered from the head: the body is not waited for
                        headers.append(CLOSE)
                status = code
                await self._send(send, code, payload, headers)
            nursery.cancel_scope.cancel()
        self._finished(head, status, started)

    async def _send(self, send: ASGISendCallable, status: int, payload: bytes,
                    headers: list[tuple[bytes, bytes]]) -> None:
        timeout = self.config["RESPONSE_TIMEOUT"]
        with trio.move_on_after(float("inf") if timeout is None else timeout):
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload, "more_body": False})

    def _finished(self, head: Head, status: int | str, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.services.metrics.observe_request(PINS, head.method, status, elapsed)
        log_access(head.method, PINS, status, elapsed, head.user)

    async def _read(self, receive: ASGIReceiveCallable, body: Body | None, handler: trio.CancelScope) -> None:
        """Take the body's chunks as they come (the head came first); a disconnect cancels the handler."""
        if body is not None:
            with trio.move_on_after(self.edge.first_byte_timeout) as first:
                message = await receive()
            if first.cancelled_caught:  # the head came, the body never started: the handler gets 408
                body.fail(ApiError(408, "REQUEST_TIMEOUT", no_first_byte(self.edge.first_byte_timeout)))
                message = await receive()
        else:
            message = await receive()
        while True:
            if message["type"] == "http.request":
                if body is not None:
                    body.append(message.get("body", b""), message.get("more_body", False))
            elif message["type"] == "http.disconnect":
                handler.cancel()  # the client is gone: stop working on its answer (a no-op once it is sent)
                return
            message = await receive()

    # --- the routes: (status, body, headers) ----------------------------------------------------------------
    async def _list(self, head: Head, body: Body | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            identity, _client = await self._authorize(head)
            args = ImmutableMultiDict(parse_qsl(head.query.decode(), keep_blank_values=True,
                                                errors="werkzeug.url_quote"))
            page = await self.services.pins.list(identity.user_key, parse_list_query(args))
            return self._answer(head, 200, orjson.dumps(page))
        except ApiError as err:
            return self._failure(head, err)
        except Exception:
            return self._internal(head)

    async def _add(self, head: Head, body: Body | None) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        assert body is not None
        try:
            identity, client = await self._authorize(head)
            pin = pin_body(await body.read(self.config["BODY_TIMEOUT"]))
            status = await self.services.pins.add(identity.user_key, pin, identity, client)
            return self._answer(head, 202, orjson.dumps(status))
        except ApiError as err:
            return self._failure(head, err)
        except Exception:
            return self._internal(head)

    async def _authorize(self, head: Head) -> tuple[Identity, str | None]:
        """The request's user and client address (:meth:`Gate.identify`), noted for the access log."""
        client = self.gate.client(head.peer, head.named)
        identity, _claims = await self.gate.identify(head.authorizations, client)
        head.user = user_label(identity.user_key)
        return identity, client

    def _answer(self, head: Head, status: int, payload: bytes,
                extra: tuple[tuple[str, str], ...] | list[tuple[str, str]] = ()) -> tuple[int, bytes, list[Any]]:
        headers: list[tuple[bytes, bytes]] = [*JSON, (b"content-length", str(len(payload)).encode())]
        headers += [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in extra]
        if self.services.cors_origins:
            headers.append(VARY)
            headers += [(name.lower().encode("latin1"), value.encode("latin1"))
                        for name, value in self.gate.cors(head.origin, False)]
        return status, payload, headers

    def _failure(self, head: Head, err: ApiError) -> tuple[int, bytes, list[Any]]:
        return self._answer(head, err.status, failure_body(err), failure_headers(err))

    def _internal(self, head: Head) -> tuple[int, bytes, list[Any]]:
        log.exception("internal error on %s %s", head.method, PINS)
        return self._failure(head, ApiError(500, "INTERNAL_SERVER_ERROR",
                                            "an unexpected error occurred; it was logged"))
