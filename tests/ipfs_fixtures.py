"""Real IPFS nodes for tests and benchmarks: js-ipfs daemons from ../shared/ipfs-devnode/run (Kubo's RPC paths) on
free loopback ports.

Each node is a separate repository, so a node that was never told to meet another one never does (js-ipfs
dials peers it met before by itself: a test of unreachable content needs a fresh node). Nodes are shared per
module (about 5 s and 140 MB each).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import SHARED, free_port

RUN = SHARED / "ipfs-devnode" / "run"


class IpfsNode:
    """One js-ipfs daemon with a Kubo-style RPC API on 127.0.0.1."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.api_port = free_port()
        self.swarm_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = repo.parent / f"{repo.name}.log"

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 90) -> IpfsNode:
        lock = self.repo / "repo.lock"  # left by a kill (stop): this repo is no other daemon's
        if lock.is_dir():
            shutil.rmtree(lock)
        lock.unlink(missing_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(RUN), str(self.repo), str(self.api_port), str(self.swarm_port)],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ipfs node exited: {self.log_path.read_text()[-2000:]}")
            try:
                self.call("id", http_timeout=2)
                return self
            except (httpx.HTTPError, RuntimeError):
                time.sleep(0.3)
        raise RuntimeError("ipfs node did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def rpc(self, cmd: str, timeout: float = 60, **kw: Any) -> httpx.Response:
        """One RPC call, its answer as it came (``kw``: httpx's ``params``, ``files``...)."""
        return httpx.post(f"{self.rpc_url}/api/v0/{cmd}", timeout=timeout, **kw)

    def call(self, cmd: str, http_timeout: float = 60, files: Any = None, **params: str) -> Any:
        """One RPC call that must succeed: its last JSON object."""
        r = self.rpc(cmd, http_timeout, params=params, files=files)
        if r.status_code != 200:
            raise RuntimeError(f"{cmd}: {r.status_code} {r.text[:300]}")
        lines = [line for line in r.text.splitlines() if line.strip()]
        import json

        return json.loads(lines[-1]) if lines else {}

    @property
    def peer_id(self) -> str:
        return str(self.call("id")["ID"])

    @property
    def address(self) -> str:
        """Its swarm address, as a pin's origin."""
        return f"/ip4/127.0.0.1/tcp/{self.swarm_port}/p2p/{self.peer_id}"

    def add(self, data: bytes, only_hash: bool = False) -> str:
        """Add bytes as a CIDv1 file (UnixFS, as Kubo's ``ipfs add --cid-version=1``); its CID in base32.
        ``only_hash``: the CID only, nothing stored (content nobody has yet)."""
        from multiformats import CID

        out = self.call("add", files={"file": ("data", data)},
                        **{"cid-version": "1", "only-hash": "true" if only_hash else "false"})
        return str(CID.decode(out["Hash"]).set(base="base32"))

    def add_file(self, data: bytes, filename: str = "file", **params: str) -> dict[str, Any]:
        """``add`` with the node's own parameters (``cid-version``, ``only-hash``...): its last JSON object."""
        return dict(self.call("add", files={"file": (filename, data)}, **params))

    def has_pin(self, cid: str) -> bool:
        """Whether ``cid`` (any form) is pinned on the node."""
        resp = self.rpc("pin/ls", params={"arg": cid})
        return resp.status_code == 200 and bool(resp.json().get("Keys"))

    def cumulative_size(self, cid: str) -> int:
        return int(self.call("files/stat", arg=f"/ipfs/{cid}", timeout="10s")["CumulativeSize"])

    def pinned(self) -> set[str]:
        """The node's recursive pins, as CIDv1 base32."""
        from multiformats import CID

        keys = self.call("pin/ls", type="recursive").get("Keys") or {}
        return {str(CID.decode(k).set(version=1, base="base32")) for k in keys}


def start_node(tmp: Path, name: str) -> IpfsNode:
    if not RUN.exists():
        pytest.skip(f"no IPFS devnode at {RUN}: these tests need ../shared/ipfs-devnode (set W3GATE_SHARED_DIR)")
    return IpfsNode(tmp / name).start()


@contextmanager
def devnode() -> Iterator[IpfsNode]:
    """A node in a temporary directory, killed and deleted on exit (benchmarks, and tests outside pytest's tmp)."""
    if not RUN.exists():
        raise RuntimeError(f"{RUN} is missing: the IPFS devnode is not available here (set W3GATE_SHARED_DIR)")
    base = Path(tempfile.mkdtemp(prefix="w3gate-ipfs-"))
    node = IpfsNode(base / "repo")
    try:
        yield node.start()
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, IpfsNode]]:
    """Two nodes for a module's fixture: ``user`` (holds the content users pin) and ``service`` (the operator's)."""
    tmp = tmp_path_factory.mktemp("ipfs")
    nodes: dict[str, IpfsNode] = {}
    try:
        for name in ("user", "service"):
            nodes[name] = start_node(tmp, name)
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
