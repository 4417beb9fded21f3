"""The operator's IPFS node over the Kubo RPC API (every call a POST to ``/api/v0/<cmd>``), from trio.

httpx's AsyncClient runs under trio. Every call has two bounds: the node's own ``timeout=`` argument where the
command takes one (it stops the node's work too: a ``pin/add`` of a CID nobody serves never returns otherwise) and
an httpx timeout a little longer. Credentials in ``rpc_url`` (``http://user:pass@host:5001``) become the
``Authorization`` header Kubo's ``API.Authorizations`` checks: ``Basic`` for ``user:pass``, ``Bearer <token>`` when
only a password (``http://:token@host``) or only a user (``http://token@host``) is given. They never appear in a
log or an error: errors name the node by :func:`w3gate.redact.redact_url`.

Calls some nodes lack (``dag/stat``, ``routing/provide``/``provide/once``; js-ipfs answers 404) come back as
None / False, not as errors. ``pin/add`` asks for ``progress=true``: Kubo then sends a progress line every
half second and a stall (no new blocks for ``stall`` seconds) is seen at once; a node that sends none (js-ipfs)
is given ``stall`` seconds per request and the caller looks at the repository's growth instead.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import trio

from w3gate.redact import redact_url

log = logging.getLogger(__name__)

CALL_TIMEOUT = 30.0  # seconds for a call that does no fetching (id, pin/ls, pin/rm, repo/stat, ...)
SLACK = 5.0  # seconds the HTTP timeout allows beyond the node's own ``timeout=``


class NodeUnavailable(Exception):
    """The node did not answer (down, refused, timed out, 5xx): try again later, nothing is wrong with the CID."""


class NodeError(Exception):
    """The node answered with an error about the request (Kubo's ``{"Message", "Code"}``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PinAdd:
    """How a ``pin/add`` ended: ``done`` (pinned), else stalled (no progress for ``stall`` s) or out of time."""

    done: bool
    progress: int | None = None  # blocks fetched, when the node reports progress
    saw_progress: bool = False  # the node sent progress lines


def auth_header(rpc_url: str) -> tuple[str, str | None]:
    """``rpc_url`` without its userinfo, and the Authorization header the userinfo stands for (or None)."""
    parts = urlsplit(rpc_url)
    if "@" not in parts.netloc:
        return rpc_url.rstrip("/"), None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    user, password = unquote(user), unquote(password)
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, "")).rstrip("/")
    if user and colon:
        return bare, "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    token = password or user
    return bare, f"Bearer {token}" if token else None


def _seconds(value: float) -> str:
    return f"{max(1, int(value))}s"


class Kubo:
    """One node's RPC API. ``transport``: the httpx transport (tests hand a fake one; default: the network)."""

    def __init__(self, rpc_url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.shown = redact_url(rpc_url)
        base, auth = auth_header(rpc_url)
        headers = {"Authorization": auth} if auth else {}
        self.http = httpx.AsyncClient(base_url=base + "/api/v0/", headers=headers, transport=transport,
                                      timeout=CALL_TIMEOUT)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _fail(self, cmd: str, exc: Exception) -> NodeUnavailable:
        # never the exception's own text alone: httpx puts the request URL (no userinfo, but query values) in it
        return NodeUnavailable(f"IPFS node {self.shown}: {cmd}: {type(exc).__name__}")

    @staticmethod
    def _error(cmd: str, resp: httpx.Response) -> Exception:
        try:
            message = str(json.loads(resp.content).get("Message", ""))
        except (ValueError, AttributeError):
            message = resp.text[:200]
        if resp.status_code in (401, 403):  # API.Authorizations: not the CID's fault; pins wait, /healthz says why
            return NodeUnavailable(f"{cmd}: the node refused w3gate's credentials (HTTP {resp.status_code}); "
                                   "check the userinfo of [ipfs] rpc_url")
        if resp.status_code >= 500 and not message:
            return NodeUnavailable(f"{cmd}: HTTP {resp.status_code}")
        return NodeError(f"{cmd}: {message or f'HTTP {resp.status_code}'}", resp.status_code)

    async def call(self, cmd: str, params: dict[str, str] | None = None,
                   timeout: float = CALL_TIMEOUT, missing_ok: bool = False) -> Any:
        """One RPC's JSON answer (the last JSON line of a streamed one); None for a 404 when ``missing_ok``."""
        try:
            resp = await self.http.post(cmd, params=params, timeout=timeout)
        except httpx.HTTPError as exc:
            raise self._fail(cmd, exc) from None
        if resp.status_code == 404 and missing_ok:
            return None
        if resp.status_code != 200:
            raise self._error(cmd, resp)
        lines = [line for line in resp.text.splitlines() if line.strip()]
        try:
            return json.loads(lines[-1]) if lines else {}
        except ValueError:
            raise NodeError(f"{cmd}: not JSON", resp.status_code) from None

    # the calls ---------------------------------------------------------------------------------------
    async def id(self) -> dict[str, Any]:
        return dict(await self.call("id"))

    async def swarm_connect(self, addr: str, timeout: float = 10.0) -> bool:
        """Connect to a peer; False (not an error) when it cannot be reached."""
        try:
            await self.call("swarm/connect", {"arg": addr, "timeout": _seconds(timeout)}, timeout + SLACK)
        except NodeError as exc:
            log.info("IPFS node: swarm/connect %s failed: %s", addr, exc)
            return False
        return True

    async def pin_add(self, cid: str, total: float, stall: float) -> PinAdd:
        """Recursively pin ``cid`` (fetching what is missing), for at most ``total`` seconds, given up when the
        node reports no new blocks for ``stall`` seconds (or sends no progress at all for ``stall`` seconds)."""
        params = {"arg": cid, "recursive": "true", "progress": "true", "timeout": _seconds(total)}
        last: int | None = None
        saw = False
        # moved on by every progress line that counts more blocks; it also bounds the wait for the answer's
        # headers, which a node without progress lines (js-ipfs) sends only once the pin is done
        stall_scope = trio.CancelScope(deadline=trio.current_time() + stall)
        with trio.move_on_after(total + SLACK), stall_scope:
            try:
                async with self.http.stream("POST", "pin/add", params=params,
                                            timeout=httpx.Timeout(CALL_TIMEOUT, read=total + SLACK)) as resp:
                    if resp.status_code != 200:
                        await resp.aread()
                        err = self._error("pin/add", resp)
                        if isinstance(err, NodeError) and "timed out" in str(err).lower():
                            return PinAdd(False, last, saw)  # the node's own timeout= ended it
                        raise err
                    lines = resp.aiter_lines()
                    while True:
                        item = await _next_item(lines)
                        if item is _END or item.get("Pins"):
                            return PinAdd(True, last, saw)  # the caller checks pin/ls when there was no Pins line
                        if "Message" in item:  # an error trailer after the stream began
                            if "timed out" in str(item["Message"]).lower():
                                return PinAdd(False, last, saw)
                            raise NodeError(f"pin/add: {item['Message']}", 500)
                        if "Progress" in item:
                            saw = True
                            value = int(item["Progress"])
                            if last is None or value > last:
                                last = value
                                stall_scope.deadline = trio.current_time() + stall
            except httpx.HTTPError as exc:
                raise self._fail("pin/add", exc) from None
        return PinAdd(False, last, saw)  # stalled, or out of time

    async def cumulative_size(self, cid: str, timeout: float) -> int:
        """``files/stat``'s CumulativeSize: the DAG's bytes as Crust counts them (blocks with their links)."""
        out = await self.call("files/stat", {"arg": f"/ipfs/{cid}", "timeout": _seconds(timeout)}, timeout + SLACK)
        return int(out["CumulativeSize"])

    async def dag_size(self, cid: str, timeout: float) -> int | None:
        """``dag/stat``'s total size where the node has the command (Kubo), else None."""
        out = await self.call("dag/stat", {"arg": cid, "progress": "false", "timeout": _seconds(timeout)},
                              timeout + SLACK, missing_ok=True)
        if out is None:
            return None
        size = out.get("TotalSize", out.get("Size"))
        return None if size is None else int(size)

    async def provide(self, cid: str, timeout: float = 60.0) -> bool:
        """Announce ``cid`` to the DHT (``routing/provide``, older Kubo ``dht/provide``); False where unsupported."""
        for cmd in ("routing/provide", "provide/once"):
            out = await self.call(cmd, {"arg": cid, "recursive": "false", "timeout": _seconds(timeout)},
                                  timeout + SLACK, missing_ok=True)
            if out is not None:
                return True
        return False

    async def pin_rm(self, cid: str) -> bool:
        """Unpin ``cid``; False when it was not pinned."""
        try:
            await self.call("pin/rm", {"arg": cid, "recursive": "true"})
        except NodeError as exc:
            if "not pinned" in str(exc).lower():
                return False
            raise
        return True

    async def pin_ls(self, cid: str | None = None) -> set[str]:
        """The node's recursive pins (CID texts as the node writes them), or whether ``cid`` is one (a set of
        it or empty)."""
        params: dict[str, str] = {"type": "recursive"}
        if cid is not None:
            params["arg"] = cid
        try:
            out = await self.call("pin/ls", params, CALL_TIMEOUT * 4)
        except NodeError as exc:
            if cid is not None and "not pinned" in str(exc).lower():
                return set()
            raise
        return set((out.get("Keys") or {}).keys())

    async def repo_size(self) -> int:
        out = await self.call("repo/stat", {"size-only": "true"})
        return int(out.get("RepoSize", 0))


_END: dict[str, Any] = {}


async def _next_item(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The next JSON object of a streamed answer, or :data:`_END`."""
    async for line in lines:
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            return item
    return _END
