"""The service in the test process: the app and its services composed as ``w3gate serve`` composes them
(:func:`w3gate.server.compose`), on a trio loop in a background thread, reached through an httpx transport
that hands each request to the ASGI app. No socket and no process start: the fast tier's HTTP tests.

What is left out is the layer between the socket and the app (Hypercorn, :mod:`w3gate.http.edge`): the
tests of that layer, of signals, restarts, logs and the binary keep a real process (:mod:`helpers`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from w3gate.cli import _parser
from w3gate.config import load_settings
from w3gate.logs import TEXT_FORMAT, TextFormatter
from w3gate.server import Service, compose, log_start_hints
from w3gate.store.db import configure_sql_log

# Tortoise ORM keeps one database context per process: one in-process service at a time (start_app starts
# a process for a second one), and no store of the test's own may be open while it runs
_one_at_a_time = threading.Lock()
CLIENT = ("127.0.0.1", 50000)  # the peer address the app sees (a direct client on loopback, as in the process)


class AppTransport(httpx.BaseTransport):
    """Sends each request through the ASGI app on the server's trio loop (httpx's ASGITransport, run there)."""

    def __init__(self, server: InProcessServer, client: tuple[str, int] = CLIENT) -> None:
        self.server = server
        self.asgi = httpx.ASGITransport(app=server.service.app, client=client)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def send() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            inner = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            response = await self.asgi.handle_async_request(inner)
            content = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
            return response.status_code, response.headers.raw, content

        status, headers, content = self.server.call(send)
        return httpx.Response(status, headers=headers, content=content, request=request)


@dataclass
class InProcessServer:
    """A running service in this process, with the attributes and methods of :class:`helpers.Server` that
    tests of the app use (``base_url``, ``client()``, ``get()``, ``health()``, ``stop()``...)."""

    settings_env: dict[str, str]
    data_dir: Path
    port: int
    args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base_url = f"http://127.0.0.1:{self.port}"  # the address the settings name: tokens are bound to it
        self.log_path = self.data_dir / f"server-{self.port}.log"
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stopped = False
        self._trio_token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self.service: Service

    # --- life cycle -----------------------------------------------------------------------------------
    def start(self, ready_timeout: float = 60) -> InProcessServer:
        try:
            return self._start(ready_timeout)
        except BaseException:
            self.stop_quietly()
            raise

    def stop_quietly(self) -> None:
        try:
            self.stop()
        except BaseException:  # noqa: BLE001 - the start's own error is the one to see
            pass

    def _start(self, ready_timeout: float) -> InProcessServer:
        args = _parser().parse_args(["serve", "--host", "127.0.0.1", "--port", str(self.port),
                                     "--data-dir", str(self.data_dir), *self.args])
        settings = load_settings(args.config, env=self.settings_env,
                                 overrides={"host": args.host, "port": args.port, "data_dir": args.data_dir,
                                            "log_level": args.log_level, "plugin_dir": args.plugin_dir})
        configure_sql_log(settings.log_sql)
        self._handler = logging.FileHandler(self.log_path)
        self._handler.setFormatter(TextFormatter(TEXT_FORMAT))
        root = logging.getLogger()
        self._level = root.level
        root.setLevel(getattr(logging, settings.log_level.upper()))
        root.addHandler(self._handler)
        self.service = compose(settings)
        self.settings = settings
        self._thread = threading.Thread(target=self._run, name=f"w3gate-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(ready_timeout) or self._failure is not None:
            raise RuntimeError(f"the in-process w3gate did not start: {self._failure!r}\n{self.log_text()[-4000:]}")
        return self

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # noqa: BLE001 - told to the test by start() or stop()
            self._failure = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._trio_token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        service = self.service
        service.instance.acquire()
        try:
            await service.open()
            async with trio.open_nursery() as nursery:
                await nursery.start(self._lifespan)
                for task in service.background():
                    nursery.start_soon(task)
                log_start_hints(self.settings)
                self._ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await service.db.close()
            service.instance.release()

    async def _lifespan(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The ASGI lifespan protocol, as Hypercorn speaks it: startup, then (when cancelled) nothing more:
        the app's lifespan nursery is the app's background-task nursery, cancelled with the server."""
        to_app, app_receives = trio.open_memory_channel[dict[str, Any]](1)
        app_sends, from_app = trio.open_memory_channel[dict[str, Any]](1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.service.app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                               app_receives.receive, app_sends.send)
            await to_app.send({"type": "lifespan.startup"})
            answer = await from_app.receive()
            if answer["type"] != "lifespan.startup.complete":
                raise RuntimeError(f"app start-up failed: {answer}")
            task_status.started()

    def call(self, fn: Any) -> Any:
        """``await fn()`` on the server's trio loop, from the test's thread."""
        if self._trio_token is None or self._stopped:
            raise httpx.ConnectError("the in-process server is not running")
        return trio.from_thread.run(fn, trio_token=self._trio_token)

    @property
    def proc(self) -> InProcessServer:  # the process's place in helpers.Server: poll() and the exit status
        return self

    def poll(self) -> int | None:
        return 0 if self._stopped else None

    def stop(self, sig: int = 0, timeout: float = 15) -> int:
        """Stop the background tasks, close the database; 0, or raise what made the service fail."""
        if not self._stopped:
            self._stopped = True
            if self._trio_token is not None and self._stop is not None:
                stop = self._stop
                try:
                    trio.from_thread.run_sync(stop.set, trio_token=self._trio_token)
                except trio.RunFinishedError:
                    pass
            if hasattr(self, "_thread"):
                self._thread.join(timeout)
            if hasattr(self, "_handler"):
                root = logging.getLogger()
                root.removeHandler(self._handler)
                root.setLevel(self._level)
                self._handler.close()
            _one_at_a_time.release()  # the database is closed: another may start
        if self._failure is not None:
            raise self._failure
        return 0

    kill = stop

    # --- what tests reach the app through -----------------------------------------------------------------
    @property
    def psa_url(self) -> str:
        return self.base_url + "/psa"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def transport(self, client: tuple[str, int] = CLIENT) -> httpx.BaseTransport:
        return AppTransport(self, client)

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": token} if token else {}
        return httpx.Client(base_url=self.psa_url, headers=headers, timeout=30, transport=self.transport(), **kw)

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        with httpx.Client(transport=self.transport()) as c:
            return c.request(method, url, **kw)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def options(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kw)

    def health(self, timeout: float = 10) -> httpx.Response:
        from helpers import HEALTH_TOKEN

        return self.get(self.base_url + "/healthz", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"},
                        timeout=timeout)


def start_in_process(*, env: Mapping[str, str | None], data_dir: Path, port: int, args: Sequence[str] = ()
                     ) -> InProcessServer | None:
    """Start the service in this process with ``env`` as its whole environment (see
    :func:`helpers.server_environment`); None while another one runs here."""
    if not _one_at_a_time.acquire(blocking=False):
        return None
    full = {k: v for k, v in env.items() if v is not None}
    server = InProcessServer(full, data_dir, port, args, env=full)
    return server.start()


def running() -> bool:
    """Whether an in-process service runs (the process's database context is then its)."""
    if _one_at_a_time.acquire(blocking=False):
        _one_at_a_time.release()
        return False
    return True
