"""Uploads streamed to the operator's node: a client's ``POST /api/v0/add`` body forwarded as it arrives.

The multipart body is never held whole: each chunk read from the client goes on to the node's
``/api/v0/add`` in one streaming httpx request, so memory does not grow with the upload. Only the
parameters that shape the DAG or the node's pin at add time are passed on (:data:`PASSED`); the output
options Kubo's own client sends are dropped (:data:`IGNORED`); any other parameter is refused, because
ignoring it (``only-hash``, ``hash``, ``trickle``, ``nocopy``...) would store something other than what the
client asked for. Credentials in ``rpc_url`` become the ``Authorization`` header Kubo's
``API.Authorizations`` checks and are never shown: errors name the node by :func:`w3gate.redact.redact_url`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from w3gate.errors import ApiError, bad_request
from w3gate.ipfs.kubo import auth_header
from w3gate.redact import redact_text, redact_url

log = logging.getLogger(__name__)

PASSED = ("cid-version", "raw-leaves", "chunker", "wrap-with-directory", "pin")
IGNORED = ("progress", "quiet", "quieter", "silent", "stream-channels", "encoding")  # output only
BOOLEANS = ("raw-leaves", "wrap-with-directory", "pin")
CHUNKER = re.compile(r"default|size-\d{1,9}|rabin(-\d{1,9}){0,3}|buzhash")
CONNECT_TIMEOUT = 10.0  # seconds to reach the node
NODE_TIMEOUT = 600.0  # seconds the node may go without answering once the whole body is sent
MAX_LINES = 100_000  # objects an add may report (one per file and directory)


class BodyTooLarge(Exception):
    """The client's body went past the upload limit while it was being forwarded."""


@dataclass(frozen=True)
class Added:
    """What the node reported: its JSON lines as sent, and the object w3gate pins."""

    lines: list[bytes]
    root: str  # the last object's Hash: the wrapping directory, the top directory, or the one file
    name: str | None  # its Name, when it has one
    tops: list[str]  # the Hash of every top-level object (a Name without "/")


def upload_params(args: Mapping[str, str], names: list[str]) -> dict[str, str]:
    """The query parameters to pass to the node, checked; ``names`` are every parameter given (refused: one
    not in :data:`PASSED` or :data:`IGNORED`, or given twice)."""
    for name in names:
        if name not in PASSED and name not in IGNORED:
            raise bad_request(f"parameter {name[:60]!r} is not taken here; POST /api/v0/add takes "
                              f"{', '.join(PASSED)} (and ignores {', '.join(IGNORED)})")
        if names.count(name) > 1:
            raise bad_request(f"parameter {name!r} is given more than once")
    params = {k: args[k].strip().lower() for k in PASSED if k in args}
    for name in BOOLEANS:
        if name in params and params[name] not in ("true", "false"):
            raise bad_request(f"{name} must be true or false")
    if params.get("cid-version", "0") not in ("0", "1"):
        raise bad_request("cid-version must be 0 or 1")
    if "chunker" in params and not CHUNKER.fullmatch(params["chunker"]):
        raise bad_request("chunker must be size-<bytes>, rabin[-<min>-<avg>-<max>] or buzhash")
    return params


def check_content_type(value: str | None) -> str:
    """The client's ``Content-Type``, if it is multipart/form-data with a boundary (what the node parses)."""
    if not value or value.split(";")[0].strip().lower() != "multipart/form-data" or "boundary=" not in value:
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       "POST /api/v0/add takes a multipart/form-data body (one or more 'file' parts), as Kubo does")
    return value


class Uploader:
    """Adds uploads to the node at ``rpc_url``."""

    def __init__(self, rpc_url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.rpc_url = rpc_url
        self.shown = redact_url(rpc_url)
        self.base, auth = auth_header(rpc_url)
        self.headers = {"Authorization": auth} if auth else {}
        self.transport = transport

    def _client(self) -> httpx.AsyncClient:
        timeout = httpx.Timeout(NODE_TIMEOUT, connect=CONNECT_TIMEOUT)
        return httpx.AsyncClient(base_url=self.base + "/api/v0/", headers=self.headers, timeout=timeout,
                                 transport=self.transport)

    def _unavailable(self, exc: Exception) -> ApiError:
        log.warning("IPFS node %s: upload failed: %s", self.shown, redact_text(str(exc), self.rpc_url))
        return ApiError(502, "NODE_UNAVAILABLE", "the service's IPFS node did not take the upload; try again later")

    async def add(self, body: AsyncIterable[bytes], content_type: str, params: Mapping[str, str]) -> Added:
        """Stream ``body`` to the node's ``add`` and read its report; :class:`BodyTooLarge` and the body's own
        errors propagate (the node's request is then abandoned), the node's refusals become ApiErrors."""
        lines: list[bytes] = []
        try:
            async with self._client() as client, client.stream(
                    "POST", "add", params=dict(params), content=body,
                    headers={"Content-Type": content_type}) as response:
                if response.status_code >= 400:
                    raise self._refused(response.status_code, await response.aread())
                async for line in response.aiter_lines():
                    if line.strip():
                        lines.append(line.encode())
                    if len(lines) > MAX_LINES:
                        raise bad_request(f"the upload holds more than {MAX_LINES} files and directories")
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from None
        return self._report(lines)

    def _refused(self, status: int, raw: bytes) -> ApiError:
        """The node's error answer as ours: its 4xx are the request's fault, anything else the node's."""
        message = _message(raw) or f"status {status}"
        message = redact_text(message, self.rpc_url)[:300]
        if 400 <= status < 500:
            return bad_request(f"the IPFS node refused the upload: {message}")
        log.warning("IPFS node %s answered an upload with %d: %s", self.shown, status, message)
        return ApiError(502, "NODE_ERROR", f"the service's IPFS node failed to add the upload: {message}")

    def _report(self, lines: list[bytes]) -> Added:
        objects: list[dict[str, Any]] = []
        for line in lines:
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise self._refused(502, line) from None
            if not isinstance(item, dict) or "Hash" not in item:
                raise self._refused(502, line)  # Kubo ends a failed stream with its error object
            objects.append(item)
        if not objects:
            raise bad_request("the upload held no file: send one or more multipart parts named 'file'")
        last = objects[-1]
        tops = [str(o["Hash"]) for o in objects if "/" not in str(o.get("Name", ""))]
        name = str(last.get("Name") or "") or None
        return Added(lines=lines, root=str(last["Hash"]), name=name, tops=tops)

    async def unpin(self, cids: list[str]) -> None:
        """Best effort: take the node's pins of ``cids`` away (an upload w3gate refused after the add)."""
        try:
            async with self._client() as client:
                for cid in cids:
                    await client.post("pin/rm", params={"arg": cid})
        except httpx.HTTPError as exc:
            log.warning("IPFS node %s: could not unpin a refused upload: %s", self.shown,
                        redact_text(str(exc), self.rpc_url))


def _message(raw: bytes) -> str:
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace").strip()
    return str(item.get("Message", "")) if isinstance(item, dict) else ""
