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
