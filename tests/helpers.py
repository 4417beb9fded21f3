"""Test helpers: real W3Auth tokens made with real wallet libraries, and a w3gate process on loopback."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from w3gate.testing import bearer

HEALTH_TOKEN = "operator-health-token-for-tests"  # every test server's W3GATE_HEALTH_TOKEN
# Limits (issue 10) that never bind, but are checked as on a real instance: every test server and benchmark
# gets them unless it sets its own (tests/test_limits*.py do; test_default_limits starts with the defaults)
# (10**18: bytes_per_user counts 2 GiB a pin, so 10**12 bound after 465 pins of a benchmark's POSTs)
UNBINDING_LIMITS = {f"W3GATE_LIMITS_{key}": str(10**18) for key in (
    "PINS_PER_USER", "BYTES_PER_USER", "PINS_PER_DAY_PER_USER", "REQUESTS_PER_MINUTE", "AUTH_FAILURES_PER_MINUTE",
    "IDENTITIES_PER_ADDRESS_PER_DAY", "PINS_PER_ADDRESS_PER_DAY", "REQUESTS_PER_ADDRESS_PER_MINUTE", "CRU_PER_DAY",
    "MAX_META_BYTES")}
REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("W3GATE_SHARED_DIR", REPO.parent / "shared"))


def substrate_token(uri: str = "//Alice", ss58_format: int = 66, chain_type: str = "sub") -> str:
    """A Bearer header value signed by a polkadot-style sr25519 key (substrate-interface)."""
    from substrateinterface import Keypair

    kp = Keypair.create_from_uri(uri, ss58_format=ss58_format)
    sig = kp.sign(kp.ss58_address.encode()).hex()
    return bearer(f"{chain_type}-{kp.ss58_address}:0x{sig}")


def eth_token(private_key_hex: str, chain_type: str = "eth") -> str:
    """A Bearer header value signed EIP-191 over the address text (eth-account)."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    acct = Account.from_key(private_key_hex)
    sig = Account.sign_message(encode_defunct(text=acct.address), private_key_hex).signature.hex()
    return bearer(f"{chain_type}-{acct.address}:0x{sig.removeprefix('0x')}")


def wait_for(fn: Any, timeout: float = 60, every: float = 0.2) -> Any:
    """``fn()``'s first truthy value, polled every ``every`` s; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting ({fn})")
        time.sleep(every)


@contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """Held by one process of this machine at a time: for the tools in ../shared that write to one fixed place
    (their install, a config file, a report), while tests run in parallel (tests/run's workers, passes side by
    side)."""
    with open(Path(tempfile.gettempdir()) / f"w3gate-tests-{name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _port_range() -> tuple[int, int]:
    """Ports no outgoing connection takes: below the kernel's ephemeral range (or above it, if it starts low)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return (10000, low) if low >= 20000 else (high + 1, 65536)


def free_port() -> int:
    """A loopback port for a server a test starts. Asking the kernel for one (bind to port 0, close, hand it on)
    raced when tests run side by side (tests/run's workers, its passes): another process could be handed the same
    port before the first server bound it, or take it as an outgoing connection's source port. Ports are taken in
    turn from one counter for the machine instead (a file, under machine_lock), outside the ephemeral range, so a
    port is handed out again only after the whole range has been, and one something listens on is passed over."""
    low, high = _port_range()
    counter = Path(tempfile.gettempdir()) / "w3gate-tests-next-port"
    with machine_lock("ports"):
        try:
            port = int(counter.read_text())
        except (OSError, ValueError):
            port = low
        for _ in range(high - low):
            if not low <= port < high:
                port = low
            candidate, port = port, port + 1
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
            counter.write_text(str(port))
            return candidate
    raise RuntimeError(f"no free port in {low}-{high - 1}")


def new_postgres_database(base_url: str) -> str:
    """CREATE a fresh database on the test PostgreSQL server; return its URL."""
    import asyncio

    import asyncpg

    name = f"w3gate_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(base_url.replace("postgres://", "postgresql://", 1))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    head, _, _ = base_url.rpartition("/")
    return f"{head}/{name}"


@dataclass
class Server:
    """A running ``w3gate serve`` subprocess."""

    proc: subprocess.Popen
    base_url: str
    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def psa_url(self) -> str:
        return self.base_url + "/psa"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def health(self, timeout: float = 10) -> httpx.Response:
        """``GET /healthz`` as the operator (with the health token): the detailed answer."""
        return httpx.get(self.base_url + "/healthz", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"},
                         timeout=timeout)

    def client(self, token: str | None = None, **kw: object) -> httpx.Client:
        headers = {"Authorization": token} if token else {}
        return httpx.Client(base_url=self.psa_url, headers=headers, timeout=30, **kw)

    # one request, as httpx.get() etc.: tests written against these run on this process or, unchanged, on the
    # in-process service (tests/inprocess.py), which has the same methods
    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, url, **kw)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return httpx.get(url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return httpx.post(url, **kw)

    def options(self, url: str, **kw: Any) -> httpx.Response:
        return httpx.options(url, **kw)


def server_environment(env: Mapping[str, str | None] | None = None, database_url: str | None = None
                       ) -> dict[str, str]:
    """A test server's whole environment: this one's without its W3GATE_/CRUST_ variables, the test settings,
    then ``env`` (a None value there leaves the variable unset)."""
    full_env: dict[str, str | None] = {
        k: v for k, v in os.environ.items() if not k.startswith(("W3GATE_", "CRUST_"))}
    full_env.update({"W3GATE_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1", "W3GATE_HEALTH_TOKEN": HEALTH_TOKEN,
                     **UNBINDING_LIMITS})
    if database_url:
        full_env["W3GATE_DATABASE_URL"] = database_url
    if os.environ.get("W3GATE_TEST_PLUGIN_DIR"):  # a binary under test finds the plugins there
        full_env["W3GATE_PLUGIN_DIR"] = os.environ["W3GATE_TEST_PLUGIN_DIR"]
    full_env.update(env or {})
    return {k: v for k, v in full_env.items() if v is not None}


def start_app(*, env: Mapping[str, str | None] | None = None, args: Sequence[str] = (), data_dir: Path | None = None,
              database_url: str | None = None, port: int | None = None) -> Any:
    """The service for a test of the app: in this process (tests/inprocess.py, no socket, no process start),
    or a ``w3gate serve`` process when W3GATE_TEST_COMMAND names a build to test (the binary pass), or while
    another service runs in this process (the ORM has one database context a process)."""
    if not os.environ.get("W3GATE_TEST_COMMAND"):
        from inprocess import start_in_process

        data_dir = data_dir or Path(tempfile.mkdtemp(prefix="w3gate-test-"))
        server = start_in_process(env=server_environment(env, database_url), data_dir=data_dir,
                                  port=port or free_port(), args=args)
        if server is not None:
            return server
    return start_server_process(env=env, args=args, data_dir=data_dir, database_url=database_url, port=port)


def start_server_process(
    *,
    env: Mapping[str, str | None] | None = None,
    args: Sequence[str] = (),
    data_dir: Path | None = None,
    database_url: str | None = None,
    command: Sequence[str] | None = None,
    ready_timeout: float = 60,
    port: int | None = None,
) -> Server:
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="w3gate-test-"))
    port = port or free_port()
    full_env = server_environment(env, database_url)
    log_path = data_dir / f"server-{port}.log"
    # W3GATE_TEST_COMMAND runs the suite against another build, e.g. the frozen binary
    default = os.environ.get("W3GATE_TEST_COMMAND", "").split() or [sys.executable, "-m", "w3gate"]
    cmd = list(command or default)
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), *args]
    log_file = open(log_path, "ab")
    proc = subprocess.Popen(cmd, env=full_env, stdout=log_file, stderr=subprocess.STDOUT, cwd=str(data_dir))
    server = Server(proc, f"http://127.0.0.1:{port}", data_dir, log_path, full_env)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"w3gate exited with {proc.returncode}:\n{server.log_text()[-4000:]}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"w3gate did not become ready in {ready_timeout}s:\n{server.log_text()[-4000:]}")
