"""One HTTP request from Hypercorn to the app and back, so that every connection ends in a known state.

quart-trio runs a request as two tasks, a body reader and the handler, and cancels both as soon as the reader
sees ``http.disconnect``. Hypercorn sends that message from inside the app's last ``send`` (the one that ends
the response), and there, still in the app's task, it recycles or closes the connection. The cancellation
landed in the middle of that bookkeeping: the idle timer was never restarted (idle keep-alive connections lived
forever), a connection due to close (HTTP/1.0, ``Connection: close``, a body left unread) was never closed,
and one whose unread body arrived later stopped reading for good (the next request hung). Here a disconnect
cancels the handler only while it works on an answer, never while the answer is being sent.

An answer given before the body was read (401, 404, 405, 413) waits for the rest of a body that is no larger
than ``MAX_CONTENT_LENGTH`` and arrives within ``BODY_TIMEOUT`` of the request, discarding it, so the
connection stays usable; otherwise it says ``Connection: close`` and the connection is closed after it
(RFC 9112 section 9.6). Each request ends with one line on the ``w3gate.access`` logger (its fields also as
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
from typing import Any, cast

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable
from quart import Request, Response, g, request
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection

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


class Connection(TrioASGIHTTPConnection):
    """quart-trio's HTTP connection with the disconnect confined to the handler and early answers settled."""

    metrics: Metrics  # set on the class :func:`install` makes for an app

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:  # type: ignore[override]
        started = time.perf_counter()
        request = self._create_request_from_scope(send)
        self._body_complete = False
        self._received = 0
        self._settled = trio.Event()  # the body is complete, over the size limit, or the client is gone
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
                await self._settle_body(request, response, started)
                status = response.status_code
                with trio.move_on_after(_timeout(response, self.app.config["RESPONSE_TIMEOUT"])):
                    await self._send_response(send, response)  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()
        elapsed = time.perf_counter() - started
        rule = request.url_rule
        self.metrics.observe_request(UNMATCHED if rule is None else rule.rule, request.method, status, elapsed)
        _log(request, status, elapsed)

    async def _read_body(self, request: Request, receive: ASGIReceiveCallable, handler: trio.CancelScope) -> None:
        limit = self.app.config["MAX_CONTENT_LENGTH"]
        while True:
            message = await receive()
            if message["type"] == "http.request" and self._stream is not None:
                await self._forward(message)
            elif message["type"] == "http.request":
                chunk = message.get("body", b"")
                self._received += len(chunk)
                request.body.append(chunk)  # the body keeps no more than MAX_CONTENT_LENGTH
                if not message.get("more_body", False):
                    request.body.set_complete()
                    self._body_complete = True
                    self._settled.set()
                elif limit is not None and self._received > limit:
                    self._settled.set()
            elif message["type"] == "http.disconnect":
                handler.cancel()  # the client is gone: stop working on its answer (a no-op once it is sent)
                self._settled.set()
                return

    async def _forward(self, message: Any) -> None:
        """Hand a streamed route's chunk over, waiting while its reader is :data:`STREAM_WINDOW` chunks behind."""
        assert self._stream is not None
        chunk = message.get("body", b"")
        if chunk:
            await self._stream.put(chunk)
        if not message.get("more_body", False):
            self._stream.end()
            self._body_complete = True
            self._settled.set()

    async def _settle_body(self, request: Request, response: Any, started: float) -> None:
        """Read and discard what is left of an acceptable body, else mark the answer as the connection's last."""
        if self._body_complete:
            return
        if self._stream is not None:  # a streamed body may be as large as an upload: never read to discard it
            response.headers["Connection"] = "close"
            return
        limit = self.app.config["MAX_CONTENT_LENGTH"]
        declared = request.content_length
        if limit is None or declared is None or declared <= limit:
            wait = started + (self.app.config["BODY_TIMEOUT"] or math.inf) - time.perf_counter()
            with trio.move_on_after(max(wait, 0)):
                await self._settled.wait()
        if not self._body_complete:
            response.headers["Connection"] = "close"


def _timeout(response: Any, default: float | None) -> float:
    timeout = response.timeout if isinstance(response, Response) and response.timeout is not Ellipsis else default
    return math.inf if timeout is None else timeout


def _log(req: Request, status: int | str, elapsed: float) -> None:
    """``METHOD /path STATUS 1.2ms user``: no query string (it can carry anything), never a header.
    A request the client left before its answer shows status ``-``."""
    if access_log.isEnabledFor(logging.INFO):
        user = cast(dict[str, Any], req.scope).get(USER_KEY) or "-"
        ms = round(elapsed * 1000, 1)
        fields = {"method": req.method, "path": req.path[:200], "status": status if status != "closed" else "-",
                  "duration_ms": ms, "user": user}
        access_log.info("%s %s %s %.1fms %s", fields["method"], fields["path"], fields["status"], ms, user,
                        extra=fields)


async def _note_user(response: Response) -> Response:
    """Hand the authenticated user (``g.owner``) to the access log, shortened: chain and account prefix."""
    owner = g.get("owner")
    if owner:
        chain, _, account = owner.partition(":")
        cast(dict[str, Any], request.scope)[USER_KEY] = f"{chain}:{account[:12]}"
    return response


def install(app: QuartTrio, metrics: Metrics) -> None:
    """Serve ``app``'s requests through :class:`Connection`, counted in ``metrics``, and note each request's
    user for the access log."""
    app.asgi_http_class = type("Connection", (Connection,), {"metrics": metrics})  # type: ignore[assignment]
    app.after_request(_note_user)
