"""Hypercorn's listening sockets and open connections: bound early, limited in number, closed without loss.

- The port is bound before anything else starts, so a port in use is one clear error (:class:`BindError`).
- At most ``max_connections`` connections are open (lowered to fit the open-file limit). When a new one arrives
  at the limit, one is closed to make room: the connection idle the longest (between requests, still before
  its first full request head, or lingering after its last answer), else the one waiting the longest for a
  request body it has not yet received in full; so a flood of idle, slow-header or slow-body connections
  cannot keep ``/healthz`` out. Only if every connection is busy with a request the app works on does the
  newcomer get a 503 at once rather than waiting.
- One client address (IPv6: its /64) may hold at most ``max_connections_per_address`` connections; more are
  answered 429 and closed. A trusted proxy's address is exempt: its clients are counted one by one once a
  request head names them (:mod:`w3gate.http.connection`), in the same :class:`~w3gate.clientaddr.AddressCounts`.
- When the server ends a connection while the client may still be sending (an answer given before the whole
  body arrived), it half-closes first and reads on for up to ``LINGER`` seconds: closing a socket with unread
  bytes resets the connection, and the client could lose the answer it was sent.
- An idle connection is closed after ``keep_alive_timeout``; one whose client has gone is closed at once; one
  whose client stops taking its answer (a send blocked for ``send_timeout``) is closed then. Hypercorn shielded
  that send from every cancellation, so such a client held its connection for ever.

Hypercorn has no setting for its connection class, so :func:`serve` puts :class:`BoundedTCPServer` in the place
of ``hypercorn.trio.run.TCPServer`` while it serves.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import orjson
import trio
from hypercorn.config import Config, Sockets
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.utils import wrap_app

from w3gate.clientaddr import AddressCounts, Network, client_key, is_trusted

log = logging.getLogger(__name__)
LINGER = 2.0  # seconds a closing connection still reads what its client sends
FD_RESERVE = 64  # open files kept for the database, logs, chain client and listening sockets
REFUSAL_LOG_EVERY = 10.0  # seconds between two "limit reached" warnings


class BindError(Exception):
    """The listening address cannot be bound (in use, not local, not permitted)."""


def bind(config: Config) -> Sockets:
    """Bind (but do not yet listen on) the configured addresses."""
    try:
        return config.create_sockets()
    except OSError as exc:
        reason = exc.strerror.lower() if exc.strerror else str(exc)
        raise BindError(f"cannot listen on {', '.join(config.bind)}: {reason}") from None


def connection_limit(wanted: int) -> int:
    """``wanted``, or less if the open-file limit cannot hold that many connections (raised towards it first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return wanted
    limit = max(1, soft - FD_RESERVE)
    log.warning("max_connections lowered from %d to %d to fit the open-file limit (%d)", wanted, limit, soft)
    return limit


class ConnectionPool:
    """The open connections; among them the evictable ones: idle (oldest first), then waiting for a body."""

    def __init__(self, limit: int, per_address: AddressCounts | None = None, exempt: tuple[Network, ...] = ()) -> None:
        self.limit = limit
        self.per_address = per_address if per_address is not None and per_address.limit else None
        self.exempt = exempt  # trusted proxies: not counted per address
        self.open: set[BoundedTCPServer] = set()
        self.idle: dict[BoundedTCPServer, None] = {}  # insertion order: idle the longest first
        self.busy: dict[BoundedTCPServer, None] = {}  # insertion order: busy the longest first
        self._warned: dict[int, float] = {}  # refusal status -> when it was last logged

    def address_key(self, peer: str | None) -> str | None:
        """The key ``peer`` is counted under, or None when it is not counted (no limit, a trusted proxy)."""
        if self.per_address is None or is_trusted(peer, self.exempt):
            return None
        return client_key(peer)

    def admit(self, conn: BoundedTCPServer) -> int:
        """Count ``conn`` in, closing an evictable connection if at the limit: 0, or the refusal's status (429:
        its address holds its share, 503: every connection is busy)."""
        if conn.address is not None and self.per_address is not None and not self.per_address.enter(conn.address):
            self._warn(429, "an address holds max_connections_per_address (%d): its new connections get 429",
                       self.per_address.limit)
            return 429
        if len(self.open) >= self.limit:
            victim = next(iter(self.idle), None) or next((c for c in self.busy if c.waiting_for_body()), None)
            if victim is None:
                if conn.address is not None and self.per_address is not None:
                    self.per_address.leave(conn.address)
                self._warn(503, "connection limit reached (%d open, none idle): new connections get 503", self.limit)
                return 503
            self.release(victim)
            victim.evict()
        self.open.add(conn)
        self.idle[conn] = None  # nothing asked yet
        return 0

    def _warn(self, status: int, message: str, *args: object) -> None:
        """Log a refusal's reason, once per ``REFUSAL_LOG_EVERY`` for each kind (no address: a flood is one line)."""
        now = time.monotonic()
        if now - self._warned.get(status, -REFUSAL_LOG_EVERY) >= REFUSAL_LOG_EVERY:
            self._warned[status] = now
            log.warning(message, *args)

    def mark(self, conn: BoundedTCPServer, idle: bool) -> None:
        if conn not in self.open:
            return
        if idle:
            self.busy.pop(conn, None)
            self.idle[conn] = None
        else:
            self.idle.pop(conn, None)
            self.busy[conn] = None

    def release(self, conn: BoundedTCPServer) -> None:
        if conn not in self.open:
            return
        self.open.discard(conn)
        self.idle.pop(conn, None)
        self.busy.pop(conn, None)
        if conn.address is not None and self.per_address is not None:
            self.per_address.leave(conn.address)


class BoundedTCPServer(TCPServer):
    """Hypercorn's TCP connection, counted in a pool, evictable while idle or waiting for a body, and closed
    with a linger."""

    pool: ConnectionPool  # these two are set on the class made by :func:`serve`
    send_timeout: float

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.address: str | None = None  # the key this connection is counted under per address (None: not)
        self._evicted = False
        self.idle_timer = IdleTimer(self)
        self.idle_task = self.idle_timer  # type: ignore[assignment]  # in the place of Hypercorn's TrioSingleTask
        self._reading: trio.CancelScope | None = None
        self._done_reading = False
        self._held = b""  # a response head not sent yet (see :meth:`_is_response_head`)

    async def run(self) -> None:
        try:
            self.address = self.pool.address_key(self.stream.socket.getpeername()[0])  # type: ignore[attr-defined]
        except (AttributeError, OSError, IndexError):  # not a socket stream, or the client has gone already
            pass
        refused = self.pool.admit(self)
        if refused:
            await self._refuse(refused)
            return
        try:
            await super().run()
        finally:
            self.pool.release(self)

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            data = event.data
            if self._held:  # a response head waits for what follows it: one send, one packet
                data, self._held = self._held + data, b""
            elif self._is_response_head(data):
                self._held = data
                return
            if data:  # the end of a response framed by its length is b"": nothing to send
                await self._send(data)
            return
        if isinstance(event, Closed):
            self._held = b""
        await super().protocol_send(event)
        if isinstance(event, Updated):
            self.pool.mark(self, event.idle)

    async def _send(self, data: bytes) -> None:
        """Send, untouched by the app's cancellation (as Hypercorn does) but not for longer than ``send_timeout``."""
        async with self.send_lock:
            try:
                with trio.CancelScope(shield=True), trio.fail_after(self.send_timeout):
                    await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self.protocol.handle(Closed())
            except trio.TooSlowError:  # the client does not read: a half-sent stream cannot be used again
                await self.stream.aclose()
                await self.protocol.handle(Closed())

    def _is_response_head(self, data: bytes) -> bool:
        """Whether ``data`` is an HTTP/1 response head (not an interim 100). Hypercorn sends a response as a head,
        its body and an (empty, for a length-framed body) end, each on its own; the head is held back until the
        next of them comes, which it always does (the end of the message follows even a response with no body),
        so that a response costs one send and reaches the client in one packet, not two."""
        if not data.startswith(b"HTTP/1."):
            return False
        connection = getattr(getattr(self, "protocol", None), "protocol", None)
        connection = getattr(connection, "connection", None)
        return isinstance(connection, h11.Connection) and connection.our_state is h11.SEND_BODY

    def waiting_for_body(self) -> bool:
        """Whether no answer has begun while the request's body has not arrived in full, or the client broke
        off its request (HTTP/1.1): nothing the app works on is lost when this connection is closed."""
        connection = getattr(getattr(self, "protocol", None), "protocol", None)
        connection = getattr(connection, "connection", None)
        return (isinstance(connection, h11.Connection) and connection.their_state in (h11.SEND_BODY, h11.ERROR)
                and connection.our_state is h11.SEND_RESPONSE)

    def evict(self) -> None:
        """Close this connection now: its idle wait ends early, or its reading (a body, or a linger) stops."""
        self._evicted = True
        if self.idle_timer.idle:
            self.idle_timer.wake()
        elif self._reading is not None:
            self._reading.cancel()

    async def _read_data(self) -> None:
        with trio.CancelScope() as self._reading:
            await super()._read_data()
        self._done_reading = True
        if self._reading.cancelled_caught:  # the linger ran out: the connection ends here
            await self.protocol.handle(Closed())
        self.idle_timer.end()  # nothing left to wait for: without this the idle wait kept the socket open

    async def _close(self) -> None:
        reading = self._reading
        if reading is None or self._done_reading:
            await super()._close()
            return
        if reading.deadline != math.inf:
            return  # already closing
        try:  # the client may still be sending: half-close, read on for a while (see the module docstring)
            await self.stream.send_eof()  # type: ignore[attr-defined]  # a plain socket stream here
        except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError, AttributeError):
            pass
        reading.deadline = trio.current_time() + LINGER
        self.pool.mark(self, idle=True)  # its answer is sent: the linger is a courtesy, first to go for a newcomer

    async def _refuse(self, status: int) -> None:
        if status == 429:
            limit = self.pool.per_address.limit if self.pool.per_address is not None else 0
            line, error = "429 Too Many Requests", {"reason": "TOO_MANY_CONNECTIONS", "details":
                f"{limit} connections are already open from this address (max_connections_per_address)"}
        else:
            line, error = "503 Service Unavailable", {"reason": "SERVICE_UNAVAILABLE",
                                                      "details": "too many open connections"}
        body = orjson.dumps({"error": error})
        head = (
            f"HTTP/1.1 {line}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\nretry-after: 1\r\n\r\n"
        )
        with trio.move_on_after(LINGER):
            try:
                await self.stream.send_all(head.encode() + body)
                await self.stream.send_eof()  # type: ignore[attr-defined]
                while await self.stream.receive_some(MAX_RECV):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, AttributeError):
                pass
        await self.stream.aclose()


class IdleTimer:
    """A connection's idle timeout (``keep_alive_timeout``), kept by one task for the connection's life.

    Hypercorn starts a task each time a connection goes idle (after every answer) and cancels it when the next
    request comes: two task switches and a nursery start, ~50 us of every request. Here going idle or busy only
    notes the time; the one task sleeps until the idle deadline it last read, re-reads it then, and closes the
    connection once it has been idle ``keep_alive_timeout``, at once when the server shuts down while it is
    idle, or when the pool evicts it (:meth:`wake`)."""

    def __init__(self, server: BoundedTCPServer) -> None:
        self.server = server
        self.idle_since: float | None = None  # None: busy with a request (or done)
        self._task: trio.CancelScope | None = None  # the task's, cancelled by :meth:`end`
        self._sleep: trio.CancelScope | None = None  # the task's current wait
        self._ended = False

    @property
    def idle(self) -> bool:
        return self.idle_since is not None

    async def restart(self, task_group: Any, action: Any) -> None:
        """Hypercorn's call when the connection goes idle (``action``, its idle wait, is what this replaces)."""
        self.idle_since = trio.current_time()
        if self._task is None and not self._ended:
            self._task = trio.CancelScope()
            task_group._nursery.start_soon(self._run)

    async def stop(self) -> None:
        """Hypercorn's call when a request begins."""
        self.idle_since = None

    def wake(self) -> None:
        if self._sleep is not None:
            self._sleep.cancel()

    def end(self) -> None:
        """The connection is done: the task ends, closing nothing."""
        self._ended = True
        self.idle_since = None
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        assert self._task is not None
        server, timeout = self.server, self.server.config.keep_alive_timeout
        with self._task:
            while not self._due(timeout):
                idle_since = self.idle_since
                # busy: look again one timeout from now (it cannot be due before then); idle: at its deadline
                deadline = trio.current_time() + timeout if idle_since is None else idle_since + timeout
                with trio.CancelScope(deadline=deadline) as self._sleep:
                    if server.context.terminated.is_set():  # shutting down while busy: soon idle or closed
                        await trio.sleep(0.05)
                    else:
                        await server.context.terminated.wait()
                self._sleep = None
        if not self._task.cancelled_caught:
            with trio.CancelScope(shield=True):
                await server._initiate_server_close()

    def _due(self, timeout: float) -> bool:
        """Whether the idle connection is to be closed now: idle long enough, the server stopping, or evicted."""
        if self.idle_since is None:
            return False
        server = self.server
        return (server._evicted or server.context.terminated.is_set()
                or trio.current_time() >= self.idle_since + timeout)


async def serve(
    app: Any,
    config: Config,
    sockets: Sockets,
    max_connections: int,
    send_timeout: float,
    *,
    per_address: AddressCounts | None = None,
    trusted_proxies: tuple[Network, ...] = (),
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on the bound ``sockets`` with Hypercorn, through :class:`BoundedTCPServer`: at most
    ``max_connections``, and ``per_address`` connections from one client address (``trusted_proxies`` exempt)."""
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    class Server(BoundedTCPServer):
        pool = ConnectionPool(max_connections, per_address, trusted_proxies)

    Server.send_timeout = send_timeout

    original = hypercorn_run.TCPServer
    hypercorn_run.TCPServer = Server  # type: ignore[misc, assignment]
    try:
        await hypercorn_run.worker_serve(
            wrap_app(app, config.wsgi_max_body_size, None), config, sockets=sockets,
            shutdown_trigger=shutdown_trigger, task_status=task_status,
        )
    finally:
        hypercorn_run.TCPServer = original  # type: ignore[misc]
