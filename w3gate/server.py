"""The one process: Hypercorn serving the API and the Crust tasks, siblings in one trio nursery.

Life cycle: settings are validated before anything starts; the database is opened and upgraded; then
Hypercorn and the background tasks run in one nursery. SIGTERM/SIGINT stops accepting connections,
lets requests in flight finish, cancels the background tasks, closes the database and returns 0. Any
task that crashes takes the whole nursery down: the reason is logged and the exit status is non-zero,
never a half-alive server.
"""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from quart_trio import QuartTrio

from w3gate import __version__
from w3gate.admission.service import Admission, resolve_access
from w3gate.clientaddr import AddressCounts, Network, parse_networks
from w3gate.config import Settings
from w3gate.crust.settings import counted_size
from w3gate.http import edge
from w3gate.http.app import Services, create_app
from w3gate.http.upload import UploadGateway
from w3gate.invocation import own_command
from w3gate.ipfs.upload import Uploader
from w3gate.metrics import Metrics
from w3gate.ordering.fetcher import IpfsStatus, ipfs_tasks
from w3gate.ordering.leader import Leadership
from w3gate.ordering.pipeline import Ordering
from w3gate.plugins import ChainRegistry, PluginError, load_chains
from w3gate.redact import redact_url
from w3gate.services.aliases import AliasAdopter
from w3gate.services.health import Health
from w3gate.services.pins import PinService
from w3gate.services.stats import ServiceStats
from w3gate.services.tokens import TokenService, policy_for
from w3gate.store.db import Database
from w3gate.store.single_instance import InstanceLock
from w3gate.w3auth.authenticator import Authenticator

log = logging.getLogger("w3gate")


def _hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"[{settings.host}]:{settings.port}" if ":" in settings.host else f"{settings.host}:{settings.port}"]
    config.graceful_timeout = settings.shutdown_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.include_server_header = False
    return config


async def _wait_for_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            stop.set()
            return


@dataclass
class Service:
    """The service's parts, composed from settings and not yet started: the app, and what runs beside it."""

    db: Database
    app: QuartTrio
    admission: Admission
    instance: InstanceLock
    registry: ChainRegistry
    proxies: tuple[Network, ...]  # trusted proxies (empty unless a proxy header is trusted)
    per_address: AddressCounts
    tasks: list[Callable[[], Awaitable[None]]]  # the background tasks, besides the store's and admission's

    async def open(self) -> None:
        """Open (and upgrade) the database and load the operator's limits: before the first request."""
        await self.db.open()
        await self.admission.refresh()  # blocks and users' own limits hold from the first request

    def background(self) -> list[Callable[[], Awaitable[None]]]:
        """Every task that runs, each forever, beside the app."""
        return [self.db.maintain, self.admission.run, *self.tasks]


def compose(settings: Settings) -> Service:
    """Build the app and its services from ``settings``, as ``w3gate serve`` runs them (the tests' in-process
    client runs the same composition); nothing is opened or started. Raises PluginError."""
    registry = load_chains(
        plugin_dir=settings.plugin_dir,
        strict=settings.plugins_strict,
        settings=settings.chains,
        allowed=settings.allowed_chains,
    )
    db = Database(settings.db_url, statement_timeout=settings.statement_timeout)
    token_service = TokenService(db, policy_for(settings.public_base, settings.tokens.max_ttl),
                                 settings.tokens.default_ttl, settings.tokens.w3auth)
    authenticator = Authenticator(registry, cache_size=settings.token_cache_size,
                                  max_threads=settings.auth_check_threads or None,
                                  queue_per_client=settings.auth_queue_per_client,
                                  bound_policy=token_service.policy, w3auth=settings.tokens.w3auth,
                                  revoked_before=token_service.revoked_before,
                                  adopt=AliasAdopter(db, token_service.forget))
    try:
        access = resolve_access(settings.access, registry)
    except ValueError as exc:
        raise PluginError(f"[access]: {exc}") from exc
    metrics = Metrics()
    leadership = Leadership(db, settings.leader_timeout)
    # builds the chain client (imports done here); on PostgreSQL its tasks, and the IPFS node's fetcher (one
    # instance fetches each content), run only while this instance leads
    ordering = Ordering(db, settings.crust, cru_per_day=settings.limits.cru_per_day, guard=leadership.check,
                        role=lambda: leadership.role, metrics=metrics, fetched_only=settings.ipfs.enabled)
    admission = Admission(
        db, settings.limits, access, admitters=registry.admitters, settings=settings.admission,
        order_size=lambda known: counted_size(known, settings.crust.default_file_size, ordering.max_file_size()),
        on_refusal=lambda limit: metrics.limits_hit.labels(limit).inc(),
    )
    pins = PinService(db, settings.delegates, admission, replicas=settings.crust.replicas,
                      node=settings.ipfs.enabled)
    proxies = parse_networks(settings.trusted_proxies) if settings.trusted_proxy_header else ()
    per_address = AddressCounts(settings.max_connections_per_address)  # direct peers and proxied clients
    fetcher, everywhere = ipfs_tasks(db, settings.ipfs, ordering.max_file_size, pins.delegates, metrics)
    app = create_app(
        Services(
            pins=pins,
            authenticator=authenticator,
            health=Health(db, registry.chain_names, ordering.status,
                          ipfs=(lambda: fetcher.status) if fetcher is not None else IpfsStatus),
            cors_origins=settings.cors_origins,
            max_body_bytes=settings.max_body_bytes,
            health_token=settings.health_token or None,
            admission=admission,
            trusted_proxy_header=settings.trusted_proxy_header,
            trusted_proxies=proxies,
            tokens=token_service,
            metrics=metrics,
            stats=ServiceStats(db, ordering.status, authenticator),
            metrics_token=settings.metrics_token or None,
            body_first_byte_timeout=settings.body_first_byte_timeout,
            per_client=per_address,
            upload=UploadGateway(Uploader(settings.ipfs.rpc_url) if settings.ipfs.enabled else None,
                                 settings.ipfs.max_upload_bytes),
        )
    )
    app.config["BODY_TIMEOUT"] = settings.body_timeout
    leader_work = ordering.tasks() + ([fetcher.run] if fetcher is not None else [])
    tasks = leadership.run_when_leader(leader_work, ordering.account or "") + everywhere
    return Service(db, app, admission, InstanceLock.of(settings.db_url), registry, proxies, per_address, tasks)


async def run(settings: Settings) -> None:
    """Run the service until a signal arrives (returns) or a task fails (raises)."""
    http_config = _hypercorn_config(settings)
    sockets = edge.bind(http_config)  # first: a port in use is one error line, before anything starts
    max_connections = edge.connection_limit(settings.max_connections)
    service = compose(settings)
    service.instance.acquire()  # SQLite: AlreadyRunning (exit status 2) when another w3gate serves the file
    stop = trio.Event()
    try:
        await service.open()
        _freeze_heap()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_wait_for_signal, stop)
            bound = await nursery.start(
                lambda task_status: edge.serve(
                    service.app, http_config, sockets, max_connections, settings.body_timeout,
                    per_address=service.per_address, trusted_proxies=service.proxies,
                    shutdown_trigger=stop.wait, task_status=task_status,
                )
            )
            log.info(
                "w3gate %s listening on %s (API under /psa), database %s, chains: %s",
                __version__, ", ".join(bound), redact_url(settings.db_url), ", ".join(service.registry.chain_names),
            )
            log_start_hints(settings)
            for task in service.background():
                nursery.start_soon(_until_stopped, task, stop)
            await stop.wait()
            # Hypercorn drains in-flight requests on its own; the background tasks are cancelled.
            nursery.cancel_scope.deadline = trio.current_time() + settings.shutdown_timeout
    finally:
        with trio.CancelScope(shield=True):
            await service.db.close()
        service.instance.release()
        log.info("w3gate stopped")


def log_start_hints(settings: Settings) -> None:
    """The start-up log's advice to the operator: how to make a token, and whether /metrics is open."""
    log.info(
        "make a token at %s/ or with `%s token --chain substrate|ethereum|solana --secret-file FILE`, "
        "then: ipfs pin remote service add w3gate %s/psa TOKEN",
        settings.public_base, own_command(), settings.public_base,
    )
    if not settings.metrics_token:
        log.info("/metrics is open to anyone who can reach this port: set metrics_token "
                 "(W3GATE_METRICS_TOKEN) to require it as a Bearer token, or keep the port private")


def _freeze_heap() -> None:
    """Take what start-up built (modules, plugins, the chain client) out of the garbage collector's sight.

    Those 100,000-odd objects live as long as the process, yet every full collection walked them all:
    50-80 ms pauses, several a minute under load. Frozen, a full collection walks only what requests
    made since (bench/bench_api.py, 10k pins: GET p99 78 -> 20-27 ms, 12% less CPU a request). No
    collection first: it would add 70 ms to every start, to free a bounded bit of start-up garbage.
    Collection is turned (back) on here: ``w3gate serve`` starts with it off (cli._serve).
    """
    gc.freeze()
    gc.enable()


async def _until_stopped(task: Any, stop: trio.Event) -> None:
    """Run a background task until the stop event; an exception propagates and stops the process."""
    async with trio.open_nursery() as nursery:
        async def watch() -> None:
            await stop.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        await task()
        nursery.cancel_scope.cancel()
