"""A real IPFS node on loopback for tests and benchmarks: /work/shared/ipfs-devnode/run (js-ipfs with Kubo's
RPC paths), started in a fresh repository on free ports and removed with it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from helpers import SHARED, free_port

RUN = SHARED / "ipfs-devnode" / "run"


@dataclass
class Devnode:
    proc: subprocess.Popen
    api_url: str  # http://127.0.0.1:PORT (its RPC API is under /api/v0)
    swarm_port: int
    repo: Path

    def rpc(self, cmd: str, timeout: float = 60, **kw: Any) -> httpx.Response:
        return httpx.post(f"{self.api_url}/api/v0/{cmd}", timeout=timeout, **kw)

    def add(self, data: bytes, filename: str = "file", **params: str) -> dict:
        """``add`` on the node itself: its last JSON object."""
        resp = self.rpc("add", params=params, files={"file": (filename, data)})
        assert resp.status_code == 200, resp.text
        return httpx.Response(200, content=resp.content.splitlines()[-1]).json()

    def pinned(self, cid: str) -> bool:
        resp = self.rpc("pin/ls", params={"arg": cid})
        return resp.status_code == 200 and bool(resp.json().get("Keys"))

    def peer_address(self) -> str:
        peer = self.rpc("id").json()["ID"]
        return f"/ip4/127.0.0.1/tcp/{self.swarm_port}/p2p/{peer}"


@contextmanager
def devnode(ready_timeout: float = 90) -> Iterator[Devnode]:
    """A node in a temporary repository, killed and deleted on exit."""
    if not RUN.exists():
        raise RuntimeError(f"{RUN} is missing: the IPFS devnode is not available here")
    base = Path(tempfile.mkdtemp(prefix="w3gate-ipfs-"))
    api, swarm = free_port(), free_port()
    log = open(base / "node.log", "wb")
    proc = subprocess.Popen([str(RUN), str(base / "repo"), str(api), str(swarm)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    node = Devnode(proc, f"http://127.0.0.1:{api}", swarm, base / "repo")
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the IPFS devnode exited: {(base / 'node.log').read_text()[-2000:]}")
            try:
                if node.rpc("id", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the IPFS devnode did not start in time")
            time.sleep(0.2)
        yield node
    finally:
        try:  # the run script execs node: its session holds the daemon and any child
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            proc.kill()
        log.close()
        shutil.rmtree(base, ignore_errors=True)
