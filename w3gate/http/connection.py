"""One HTTP request from Hypercorn to the app and back, so that every connection ends in a known state.

quart-trio runs a request as two tasks, a body reader and the handler, and cancels both as soon as the reader
sees ``http.disconnect``. Hypercorn sends that message from inside the app's last ``send`` (the one that ends
the response), and there, still in the app's task, it recycles or closes the connection. The cancellation
landed in the middle of that bookkeeping: the idle timer was never restarted (idle keep-alive connections lived
forever), a connection due to close (HTTP/1.0, ``Connection: close``, a body left unread) was never closed,
and one whose unread body arrived later stopped reading for good (the next request hung). Here a disconnect
cancels the handler only while it works on an answer, never while the answer is being sent.

An answer decided from the request head alone (401, 404, 405, 413, 429: route and token are checked before
any body is read) is sent at once, and if the body has not arrived in full by then it says ``Connection:
close`` and the connection is closed after it without waiting for the body (RFC 9112 section 9.6; the server
still reads what comes for a short linger, :mod:`w3gate.http.edge`): a client that declares a body and
sends it slowly holds a connection for no longer than the answer takes. A body whose first byte has not come
``BODY_FIRST_BYTE_TIMEOUT`` seconds after the head is answered 408 (a handler waiting for it sees the
timeout), a body still incomplete at ``BODY_TIMEOUT`` too (quart's own timeout).

Behind a trusted proxy, every request counts against the client address its head names, at most
``max_connections_per_address`` in flight (more: 429 and the connection closed), as a direct client's
connections are counted by :mod:`w3gate.http.edge`.

Each request ends with one line on the ``w3gate.access`` logger (its fields also as
the record's ``method``, ``path``, ``status``, ``duration_ms`` and ``user``: JSON logs show them as keys) and
is counted in the app's :class:`w3gate.metrics.Metrics` by route template, method and status.

A route named in the app's ``STREAMED_BODIES`` config (a set of ``(method, path)``: ``POST /api/v0/add``)
reads its body as a :class:`BodyStream` instead: at most ``STREAM_WINDOW`` chunks are read ahead of it, so a
client sends only as fast as the route forwards (Hypercorn stops reading the socket while the app does not
take its messages), and the route enforces the limit and the time itself. An answer it gives before the
body is complete closes the connection at once: such a body can be up to that limit, too much to discard.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import orjson
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart import Request, Response, g, request
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.exceptions import RequestTimeout

from w3gate.clientaddr import AddressCounts, Network, client_address, client_key, is_trusted
from w3gate.metrics import UNMATCHED, Metrics

access_log = logging.getLogger("w3gate.access")
USER_KEY = "w3gate.user"  # request scope key: the authenticated user, for the access log
STREAMED_BODIES = "W3GATE_STREAMED_BODIES"  # app config key: the (method, path) of routes that stream their body
BODY_STREAM = "w3gate.body_stream"  # request scope key: the BodyStream of a streamed route's request
STREAM_WINDOW = 16  # chunks (Hypercorn hands at most 64 KiB each) read ahead of a streamed route


class BodyStream:
    """A request body as it arrives, chunk by chunk (``async for chunk in stream``; ``receive()`` returns
    ``b""`` at the end), at most :data:`STREAM_WINDOW` chunks ahead of its reader."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[bytes](STREAM_WINDOW)

    async def put(self, chunk: bytes) -> None:
        """Hand ``chunk`` to the reader, waiting while it is behind; dropped once the reader is gone."""
        try:
            await self._send.send(chunk)
        except trio.BrokenResourceError:
            pass

    def end(self) -> None:
        self._send.close()

    def abandon(self) -> None:
        """The route has answered: what else arrives is discarded, so Hypercorn's messages keep flowing (its
        last one, the disconnect, is put from inside the answer's last send and would wait for ever)."""
        self._receive.close()

    async def receive(self) -> bytes:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            return b""

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.receive()
        if not chunk:
            raise StopAsyncIteration
        return chunk


def body_stream(request: Request) -> BodyStream:
    """The streamed body of a request to a route named in ``STREAMED_BODIES``."""
    return cast(BodyStream, cast(dict[str, Any], request.scope)[BODY_STREAM])


class HotPath(Protocol):
    """Requests served without the app's request machinery (:mod:`w3gate.http.hot`)."""

    def match(self, scope: MutableMapping[str, Any]) -> tuple[Any, Any] | None: ...

    async def serve(self, route: Any, head: Any, receive: ASGIReceiveCallable, send: ASGISendCallable,
                    started: float) -> None: ...


@dataclass(frozen=True)
class Edge:
    """What a request is held to at the edge: how soon its body must start, and per-client counting of
    requests that come through a trusted proxy."""

    first_byte_timeout: float = math.inf  # seconds from the head to the body's first byte
    per_client: AddressCounts | None = None  # None (or limit 0): no per-client count
    trusted_proxy_header: str = ""
    trusted_proxies: tuple[Network, ...] = ()

    def proxied_client(self, peer: str | None, named: str | None) -> str | None:
        """The key of the client a trusted proxy (``peer``) names (``named``: the first value of
        ``trusted_proxy_header``), when such requests are counted; else None."""
        if self.per_client is None or not self.per_client.limit or not self.trusted_proxy_header:
            return None
        if not named or not is_trusted(peer, self.trusted_proxies):
            return None  # a direct client (counted by its connections), or the proxy's own request
        return client_key(client_address(peer, named, self.trusted_proxies))


class RequestConnection(TrioASGIHTTPConnection):
    """quart-trio's HTTP connection with the disconnect confined to the handler and early answers settled."""

    metrics: Metrics  # set on the class :func:`install` makes for an app
    edge: Edge
    hot: HotPath | None

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:  # type: ignore[override]
        started = time.perf_counter()
        if self.hot is not None and (found := self.hot.match(cast(dict[str, Any], self.scope))) is not None:
            await self.hot.serve(*found, receive, send, started)
            return
        request = self._create_request_from_scope(send)
        header = self.edge.trusted_proxy_header
        client = self.edge.proxied_client(request.remote_addr, request.headers.get(header) if header else None)
        if client is not None and self.edge.per_client is not None:
            if not self.edge.per_client.enter(client):
                await self._too_many(request, send, started)
                return
            try:
                await self._serve(request, receive, send, started)
            finally:
                self.edge.per_client.leave(client)
        else:
            await self._serve(request, receive, send, started)

    async def _serve(self, request: Request, receive: ASGIReceiveCallable, send: ASGISendCallable,
                     started: float) -> None:
        self._body_complete = False
        streamed = self.app.config.get(STREAMED_BODIES) or ()
        self._stream: BodyStream | None = None
        if (request.method, request.path.rstrip("/")) in streamed:  # the routes match with a trailing slash too
            self._stream = cast(dict[str, Any], request.scope)[BODY_STREAM] = BodyStream()
        status: int | str = "closed"  # no answer: the client went away first
        async with trio.open_nursery() as nursery:
            handler = trio.CancelScope()
            nursery.start_soon(self._read_body, request, receive, handler)
            with handler:
                response = await self.app.handle_request(request)
            if self._stream is not None:
                self._stream.abandon()
            if not handler.cancelled_caught:
                if not self._body_complete and _declares_body(request):
                    await trio.lowlevel.checkpoint()  # a body that came with its head: let the reader take it
                    if not self._body_complete:  # answered from the head: the body is not waited for
                        response.headers["Connection"] = "close"
                status = response.status_code
                with trio.move_on_after(_timeout(response, self.app.config["RESPONSE_TIMEOUT"])):
                    await self._send_response(send, response)  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()
        self._finished(request, status, started)

    def _finished(self, request: Request, status: int | str, started: float) -> None:
        elapsed = time.perf_counter() - started
        rule = request.url_rule
        self.metrics.observe_request(UNMATCHED if rule is None else rule.rule, request.method, status, elapsed)
        log_access(request.method, request.path, status, elapsed,
                   cast(dict[str, Any], request.scope).get(USER_KEY) or "-")

    async def _too_many(self, request: Request, send: ASGISendCallable, started: float) -> None:
        limit = self.edge.per_client.limit if self.edge.per_client is not None else 0
        response = Response(too_many_body(limit), status=429, content_type="application/json",
                            headers={"Retry-After": "1", "Connection": "close"})
        with trio.move_on_after(_timeout(response, self.app.config["RESPONSE_TIMEOUT"])):
            await self._send_response(send, response)  # type: ignore[arg-type]
        self._finished(request, 429, started)

    async def _read_body(self, request: Request, receive: ASGIReceiveCallable, handler: trio.CancelScope) -> None:
        with trio.move_on_after(self.edge.first_byte_timeout) as first:
            message = await receive()
        if first.cancelled_caught:  # the head came, the body never started: a handler waiting for it gets 408
            request.body._must_raise = RequestTimeout(  # quart's own way to fail a body
                no_first_byte(self.edge.first_byte_timeout))
            request.body.set_complete()
            message = await receive()
        while True:
            if message["type"] == "http.request" and self._stream is not None:
                await self._forward(message)
            elif message["type"] == "http.request":
                request.body.append(message.get("body", b""))  # the body keeps no more than MAX_CONTENT_LENGTH
                if not message.get("more_body", False):
                    request.body.set_complete()
                    self._body_complete = True
            elif message["type"] == "http.disconnect":
                handler.cancel()  # the client is gone: stop working on its answer (a no-op once it is sent)
                return
            message = await receive()

    async def _forward(self, message: Any) -> None:
        """Hand a streamed route's chunk over, waiting while its reader is :data:`STREAM_WINDOW` chunks behind."""
        assert self._stream is not None
        chunk = message.get("body", b"")
        if chunk:
            await self._stream.put(chunk)
        if not message.get("more_body", False):
            self._stream.end()
            self._body_complete = True


def _declares_body(request: Request) -> bool:
    return bool(request.content_length) or bool(request.headers.getlist("Transfer-Encoding"))  # getlist: no KeyError


def _timeout(response: Any, default: float | None) -> float:
    timeout = response.timeout if isinstance(response, Response) and response.timeout is not Ellipsis else default
    return math.inf if timeout is None else timeout


def no_first_byte(seconds: float) -> str:
    """The details of the 408 for a body whose first byte did not come in time."""
    return f"no byte of the request body arrived within {seconds:g} s of its head"


def too_many_body(limit: int) -> bytes:
    """The Failure body of a request over ``max_connections_per_address``."""
    return orjson.dumps({"error": {"reason": "TOO_MANY_CONNECTIONS", "details": f"{limit} requests from this "
                                   "address are already in progress (max_connections_per_address)"}})


def user_label(owner: str) -> str:
    """The access log's name for a user key: its chain and the start of its account."""
    chain, _, account = owner.partition(":")
    return f"{chain}:{account[:12]}"


def log_access(method: str, path: str, status: int | str, elapsed: float, user: str) -> None:
    """``METHOD /path STATUS 1.2ms user``: no query string (it can carry anything), never a header.
    A request the client left before its answer shows status ``-``."""
    if access_log.isEnabledFor(logging.INFO):
        ms = round(elapsed * 1000, 1)
        fields = {"method": method, "path": path[:200], "status": status if status != "closed" else "-",
                  "duration_ms": ms, "user": user}
        access_log.info("%s %s %s %.1fms %s", fields["method"], fields["path"], fields["status"], ms, user,
                        extra=fields)


async def _note_user(response: Response) -> Response:
    """Hand the authenticated user (``g.owner``) to the access log, shortened: chain and account prefix."""
    owner = g.get("owner")
    if owner:
        cast(dict[str, Any], request.scope)[USER_KEY] = user_label(owner)
    return response


def install(app: QuartTrio, metrics: Metrics, edge: Edge | None = None, hot: HotPath | None = None) -> None:
    """Serve ``app``'s requests through :class:`RequestConnection`, counted in ``metrics`` and held to ``edge``, and
    note each request's user for the access log; the requests ``hot`` matches are served by it instead."""
    app.asgi_http_class = type("RequestConnection", (RequestConnection,),  # type: ignore[assignment]
                               {"metrics": metrics, "edge": edge or Edge(), "hot": hot})
    app.after_request(_note_user)
