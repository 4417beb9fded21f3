"""``POST /api/v0/add``: the upload gateway. Kubo's request and answer, behind w3gate's tokens and limits.

The one Kubo RPC path w3gate serves (no other ``/api/v0/...`` path reaches the node). In order, before any
of the body is taken: the token (401/429, as for ``/psa``), the parameters (:mod:`w3gate.ipfs.upload`), the
``Content-Type``, the declared ``Content-Length`` against ``max_upload_bytes`` (413) and whether the user
could add a pin now (:meth:`w3gate.admission.service.Admission.precheck`). Then the body is streamed to the
node (413 past ``max_upload_bytes`` as it arrives; 408 when no byte arrives for ``body_timeout``), the root
the node reports becomes the user's pin through :class:`w3gate.services.pins.PinService` (every limit, the
plugins' included), and the node's JSON lines are the answer, with the pin's requestid in ``X-Pin-Requestid``.

An upload refused once added (a quota reached meanwhile, a plugin, several top-level files without
``wrap-with-directory``) leaves no pin: the node's pin of it is taken away again unless a pin on w3gate
holds the same content. An upload taken is the node's pin on w3gate's behalf: the hold mode releases it like
any content w3gate fetched (even when its pin is deleted before the fetcher measured it). Errors are the
Pinning Service API's Failure body plus Kubo's error fields (``Message``, ``Code``, ``Type``), so that Kubo's
own client shows the reason too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import orjson
import trio
from quart import Response, g, request
from quart_trio import QuartTrio

from w3gate.cids import CidError, parse
from w3gate.errors import ApiError, bad_request
from w3gate.hookspecs import Identity
from w3gate.http.connection import STREAMED_BODIES, BodyStream, body_stream
from w3gate.ipfs.upload import BodyTooLarge, Uploader, check_content_type, upload_params
from w3gate.services.pins import MAX_NAME, PinService
from w3gate.store.interface import Store
from w3gate.timestamps import now_ms

PATH = "/api/v0/add"


@dataclass
class UploadGateway:
    """What the route needs: the node (None: no ``[ipfs] rpc_url``, the route answers 501) and its limits."""

    uploader: Uploader | None
    max_upload_bytes: int = 1024**3


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "PAYLOAD_TOO_LARGE", f"the upload is larger than this service takes ({limit} bytes, "
                                              "max_upload_bytes)")


async def _capped(stream: BodyStream, limit: int, timeout: float) -> AsyncIterator[bytes]:
    """The body's chunks, stopped past ``limit`` bytes (:class:`BodyTooLarge`) or after ``timeout`` seconds
    without one (a 408: the time a body may take is per chunk here, since an upload may rightly take long)."""
    received = 0
    while True:
        with trio.move_on_after(timeout) as waited:
            chunk = await stream.receive()
        if waited.cancelled_caught:
            raise ApiError(408, "REQUEST_TIMEOUT", f"no part of the upload arrived for {timeout:g} seconds")
        if not chunk:
            return
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge()
        yield chunk


async def _held(db: Store, cids: list[str]) -> set[str]:
    """Which of ``cids`` some pin on w3gate holds (by content, whatever the CID's form)."""
    keys = {}
    for cid in cids:
        try:
            keys[parse(cid).key] = cid
        except CidError:
            continue

    return {keys[k] for k in await db.held_keys(list(keys))} if keys else set()


def kubo_failure(response: Response, err: ApiError) -> Response:
    """``response`` (the Failure body of ``err``) with Kubo's error fields added."""
    body = {**err.body(), "Message": err.details, "Code": 0 if err.status >= 500 else 1, "Type": "error"}
    response.set_data(orjson.dumps(body))
    return response


def install_upload(app: QuartTrio, gateway: UploadGateway, pins: PinService,
                   authorize: Callable[[], Awaitable[Identity]], failure: Callable[[ApiError], Response]) -> None:
    """Add ``POST /api/v0/add`` to ``app``; ``authorize`` is how ``/psa`` requests are authenticated and
    counted, ``failure`` how the app answers an ApiError."""
    if gateway.uploader is not None:
        app.config[STREAMED_BODIES] = frozenset({("POST", PATH)})

    @app.post(PATH)
    async def add() -> Response:
        try:
            return await _add()
        except ApiError as err:
            return kubo_failure(failure(err), err)

    async def _add() -> Response:
        uploader = gateway.uploader
        if uploader is None:
            raise ApiError(501, "NOT_IMPLEMENTED", "this service takes no uploads: its operator has set up no IPFS "
                                                   "node ([ipfs] rpc_url); pin content you host with POST /psa/pins")
        identity = await authorize()
        params = upload_params(request.args, [k for k, values in request.args.lists() for _ in values])
        content_type = check_content_type(request.headers.get("Content-Type"))
        limit = gateway.max_upload_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(limit)
        if pins.admission is not None:
            await pins.admission.precheck(identity)
        body = _capped(body_stream(request), limit, app.config["BODY_TIMEOUT"] or float("inf"))
        try:
            added = await uploader.add(body, content_type, params)
        except BodyTooLarge:
            raise _too_large(limit) from None
        pinned_on_node = params.get("pin", "true") == "true"
        try:
            if len(set(added.tops)) > 1 and params.get("wrap-with-directory") != "true":
                raise bad_request("the upload has several top-level files; add them with wrap-with-directory=true "
                                  "(or as one directory) to pin them as one")
            pin = {"cid": added.root, "name": added.name and added.name[:MAX_NAME]}
            status = await pins.add(identity.user_key, pin, identity, g.get("client"))  # per-address limits too
            if pinned_on_node:  # the node's pin is w3gate's: released by the hold mode, whenever the pin goes
                await pins.db.ipfs_uploaded(parse(added.root).key, added.root, now_ms())
        except ApiError:
            if pinned_on_node:
                added_cids = list(dict.fromkeys([*added.tops, added.root]))
                held = await _held(pins.db, added_cids)
                await uploader.unpin([c for c in added_cids if c not in held])
            raise
        return Response(b"\n".join(added.lines) + b"\n", status=200, content_type="application/json",
                        headers={"X-Chunked-Output": "1", "X-Pin-Requestid": status["requestid"],
                                 "Access-Control-Expose-Headers": "X-Pin-Requestid"})  # a page may read it
