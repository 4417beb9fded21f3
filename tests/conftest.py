"""Shared fixtures. The whole suite runs on SQLite, and again on PostgreSQL when
W3GATE_TEST_POSTGRES_URL names a server (``.ci/run`` starts one): each server then gets a fresh database."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Server, new_postgres_database, start_app, start_server_process, substrate_token

from w3gate.store.db import Database

try:  # the Crust devchain fixtures (session-scoped chain process)
    from devchain_fixtures import *  # noqa: F401,F403
except ImportError:  # pragma: no cover - only while that module is being written
    pass

POSTGRES = os.environ.get("W3GATE_TEST_POSTGRES_URL")


def database_url_for_test() -> str | None:
    """A fresh PostgreSQL database when testing on PostgreSQL, else None (SQLite in the data dir)."""
    return new_postgres_database(POSTGRES) if POSTGRES else None


async def open_store(tmp_path: Path) -> Database:
    """The store, open, on the database under test: a fresh PostgreSQL database, or SQLite in ``tmp_path``."""
    db = Database(database_url_for_test() or f"sqlite://{tmp_path / 'db.sqlite3'}")
    await db.open()
    return db


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """The store, open on the database under test (:func:`open_store`), closed after the test."""
    database = await open_store(tmp_path)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``start_server(env=..., args=...)`` starts ``w3gate serve`` on a free loopback port."""
    yield from _servers(tmp_path, start_server_process)


@pytest.fixture
def start_app_server(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``start_app_server(env=..., args=...)`` starts the service for a test of the app alone: in this
    process (no socket, no process start), or as ``w3gate serve`` when W3GATE_TEST_COMMAND names a build."""
    yield from _servers(tmp_path, start_app)


def _servers(tmp_path: Path, start_one: Any) -> Iterator[Any]:
    servers: list[Any] = []
    db_of_dir: dict[Path, str | None] = {}

    def start(*, env: dict[str, str] | None = None, args: list[str] | tuple[str, ...] = (),
              data_dir: Path | None = None, **kw: Any) -> Server:
        if data_dir is None:
            data_dir = tmp_path / f"data{len(servers)}"
            data_dir.mkdir()
        if "database_url" not in kw:  # a restart on the same data dir keeps its database
            if data_dir not in db_of_dir:
                db_of_dir[data_dir] = database_url_for_test()
            kw["database_url"] = db_of_dir[data_dir]
        server = start_one(env=env, args=args, data_dir=data_dir, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:  # SIGTERM first: a frozen binary then removes its unpacked files
        if server.proc.poll() is None:
            try:
                server.stop(timeout=10)
            except Exception:  # noqa: BLE001 - a stuck server is killed
                server.kill()


@pytest.fixture
def server(start_app_server: Any) -> Server:
    """The service with the test settings, for a test of the app (see ``start_app_server``)."""
    return start_app_server()


@pytest.fixture
def token() -> str:
    return substrate_token("//Alice")


@pytest.fixture
def other_token() -> str:
    return substrate_token("//Bob")


# the slow tier (``tests/run --fast`` leaves it out): tests that start w3gate or other processes (the Crust
# devchain, IPFS nodes, the conformance suite, a browser, deploy tools), found by the fixtures and marks that
# start them, or by module for modules whose own fixtures do
SLOW_FIXTURES = {"start_server", "devchain", "relay", "ordering_account", "crust_db", "devnode", "two_nodes", "node"}
SLOW_MARKS = ("devchain", "compliance", "binary")
SLOW_MODULES = {
    "test_auth_fairness", "test_binary", "test_cli", "test_compliance", "test_database_faults", "test_deploy_backup",
    "test_deploy_proxy", "test_deploy_rolling", "test_deploy_systemd", "test_edge_open_internet", "test_http_edge",
    "test_leader_failover", "test_metrics", "test_plugins_example",
    "test_plugins_http", "test_webpage",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow tier (above); then, on the PostgreSQL pass, leave out the service-level Crust tests: their
    store is SQLite whatever the pass (``crust_db``), so they would repeat the SQLite pass's run on the same
    runtime exactly; and the modules marked ``no_database``, whose outcome does not depend on the database."""
    for item in items:
        if (SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
                or any(item.get_closest_marker(mark) for mark in SLOW_MARKS)
                or item.module is not None and item.module.__name__ in SLOW_MODULES):
            item.add_marker(pytest.mark.slow)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _longest_files_first(items)
    if not POSTGRES:
        return
    repeats = [item for item in items if "crust_db" in getattr(item, "fixturenames", ())
               or item.get_closest_marker("no_database") is not None]
    if repeats:
        config.hook.pytest_deselected(items=repeats)
        items[:] = [item for item in items if item not in repeats]


def _weight(item: pytest.Item) -> float:
    """Roughly how long a test takes: the conformance suite (about 50 s of one request a second), a test on the
    Crust devchain or with IPFS nodes, another slow one, a fast one."""
    if item.get_closest_marker("compliance"):
        return 50
    fixtures = set(getattr(item, "fixturenames", ()))
    if item.get_closest_marker("devchain") or fixtures & {"devchain", "relay", "devnode", "two_nodes", "node"}:
        return 8
    return 2 if item.get_closest_marker("slow") else 0.05


def _longest_files_first(items: list[pytest.Item]) -> None:
    """Under tests/run's workers (pytest-xdist, one file to a worker at a time, handed out in this order): the
    files that take longest first, so that the run does not end with one long file on one worker while the others
    wait. Within a file the order stays as written."""
    files: dict[str, float] = {}
    for item in items:
        files[item.nodeid.split("::")[0]] = files.get(item.nodeid.split("::")[0], 0) + _weight(item)
    rank = {name: i for i, name in enumerate(sorted(files, key=lambda name: -files[name]))}
    items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])
