"""Database faults reach clients as the spec's Failure body, and the service recovers by itself."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from conftest import POSTGRES

pytestmark = pytest.mark.skipif(not POSTGRES, reason="needs W3GATE_TEST_POSTGRES_URL (a server to cut off)")


def terminate_connections(database_url: str) -> int:
    """pg_terminate_backend every connection to the service's database, as a failover or restart would."""
    import asyncpg

    name = database_url.rsplit("/", 1)[1]

    async def run() -> int:
        conn = await asyncpg.connect(POSTGRES.replace("postgres://", "postgresql://", 1))
        try:
            rows = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            return len(rows)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_connections_cut_then_failure_bodies_then_recovery(start_server, token) -> None:
    server = start_server()
    cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
    with server.client(token) as c:
        assert c.post("/pins", json={"cid": cid}).status_code == 202
        assert terminate_connections(server.env["W3GATE_DATABASE_URL"]) >= 1
        statuses = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = c.get("/pins", params={"status": "queued"})
            statuses.append(r.status_code)
            if r.status_code == 200:
                break
            assert r.status_code in (500, 503), r.text
            body = r.json()
            assert body["error"]["reason"] and body["error"]["details"]
            time.sleep(0.2)
        assert statuses[-1] == 200, statuses
        assert c.get("/pins", params={"status": "queued"}).json()["count"] == 1
        assert c.post("/pins", json={"cid": cid}).status_code == 202
    assert server.proc.poll() is None
    assert httpx.get(server.base_url + "/healthz").status_code == 200


class FreezableRelay:
    """A TCP relay on loopback in front of PostgreSQL that can stop passing bytes while keeping every
    connection open: a server (or a network path) that has stopped answering, which no error reports."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import socket
        import threading

        self.target = (target_host, target_port)
        self.flowing = threading.Event()
        self.flowing.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: object, dst: object) -> None:
        while True:
            try:
                data = src.recv(65536)  # type: ignore[attr-defined]
                if not data:
                    break
                self.flowing.wait()  # frozen: hold the bytes, answer nothing
                dst.sendall(data)  # type: ignore[attr-defined]
            except OSError:
                break

    def close(self) -> None:
        self.flowing.set()
        self.listener.close()
        for s in self.sockets:
            s.close()


def test_healthz_answers_503_within_its_deadline_when_the_database_stops_answering(start_server) -> None:
    """/healthz's 5 s timeout sat over a shielded wait for the database: with a PostgreSQL that stopped
    answering, /healthz never answered at all. Now it answers 503 (database unavailable) and recovers."""
    from urllib.parse import urlsplit

    from conftest import database_url_for_test

    direct = database_url_for_test()
    parts = urlsplit(direct)
    relay = FreezableRelay(parts.hostname, parts.port)
    try:
        server = start_server(database_url=direct.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{relay.port}"))
        assert server.health().status_code == 200
        relay.flowing.clear()
        anonymous = httpx.get(server.base_url + "/healthz", timeout=30)  # no answer at all before (a timeout)
        assert anonymous.status_code == 503 and anonymous.json() == {"status": "degraded"}
        detailed = server.health(timeout=30)
        assert detailed.status_code == 503 and detailed.json()["database"].startswith("unavailable")
        relay.flowing.set()
        deadline = time.monotonic() + 30
        while server.health().status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.health().status_code == 200
        assert server.stop() == 0
    finally:
        relay.close()
