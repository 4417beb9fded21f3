"""The real Crust runtime for tests: ../shared/crust-devchain/run (chopsticks) plus a submission relay.

chopsticks' transaction pool cannot validate this old runtime's extrinsics, so the service's standard
``author_submitExtrinsic`` goes through :class:`Relay`, a loopback JSON-RPC websocket that passes every
call through unchanged except that one, which it turns into ``dev_newBlock`` with the extrinsic (its
``hold`` mode keeps submissions back, to kill w3gate between sending and inclusion).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from hashlib import blake2b
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("W3GATE_SHARED_DIR", REPO.parent / "shared"))
RUN = SHARED / "crust-devchain" / "run"
ALICE = "//Alice"
# seconds the relay waits for a client's closing handshake when a test ends: the service's chain clients
# (websocket-client) answer a close frame only while reading, so an idle one never does, and the library's
# default 10 s per test added up to minutes
CLOSE_TIMEOUT = 0.5


def _free_port() -> int:
    from helpers import free_port  # one counter of ports for the machine (tests run side by side)

    return free_port()


# the runtimes ../shared/crust-devchain/run can start (CRUST_RUNTIME) -> the chain name it answers with
RUNTIMES = {"mainnet": "crust", "rocky": "crust_rocky"}


def runtimes_under_test() -> list[str]:
    """W3GATE_TEST_CRUST_RUNTIMES (comma-separated), default every runtime: the devchain suite runs on each."""
    chosen = os.environ.get("W3GATE_TEST_CRUST_RUNTIMES", ",".join(RUNTIMES))
    names = [n.strip() for n in chosen.split(",") if n.strip()]
    unknown = set(names) - set(RUNTIMES)
    if unknown:
        raise ValueError(f"W3GATE_TEST_CRUST_RUNTIMES: unknown runtime(s) {sorted(unknown)}; known: {sorted(RUNTIMES)}")
    return names


class Devchain:
    """A chopsticks process running one of Crust's genesis runtimes (``runtime``: mainnet or rocky) on 127.0.0.1."""

    def __init__(self, port: int, log_path: Path, runtime: str = "mainnet") -> None:
        self.runtime = runtime
        self.chain_name = RUNTIMES[runtime]
        self.port = port
        self.url = f"ws://127.0.0.1:{port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._ws: Any = None
        self._lock = threading.Lock()
        self._id = 0

    def command(self) -> list[str]:
        return [str(RUN), str(self.port), "Manual", "--runtime-log-level", "1"]

    def start(self, timeout: float = 120) -> None:
        from helpers import machine_lock

        # ../shared/crust-devchain/run installs chopsticks on first use and writes rocky's config to one file
        # before chopsticks reads it: one chain at a time gets that far on this machine
        with machine_lock("crust-devchain"):
            self._start(timeout)

    def _start(self, timeout: float) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "CRUST_RUNTIME": self.runtime},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"devchain exited: {self.log_path.read_text()[-2000:]}")
            try:
                if self.rpc("system_chain", []) == self.chain_name:
                    return
            except OSError:
                pass
            except Exception:  # noqa: BLE001 - websocket handshake errors while it starts
                pass
            self._close_ws()
            time.sleep(0.5)
        raise RuntimeError("devchain did not become ready")

    def stop(self) -> None:
        self._close_ws()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def _close_ws(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:  # noqa: BLE001
                pass
            self._ws = None

    def rpc(self, method: str, params: list[Any]) -> Any:
        import websocket

        with self._lock:
            if self._ws is None:
                self._ws = websocket.create_connection(self.url, timeout=120)
            self._id += 1
            self._ws.send(json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}))
            while True:
                reply = json.loads(self._ws.recv())
                if reply.get("id") == self._id:
                    break
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    # state set-up with raw SCALE encoded by the runtime's own types ---------------------------------
    def settings(self, **env: str) -> Any:
        """Crust settings for ordering as Alice straight on this chain (``env``: more W3GATE_CRUST_* values)."""
        from w3gate.crust.settings import load_crust_settings

        return load_crust_settings({}, {"W3GATE_CRUST_SEED": ALICE, "W3GATE_CRUST_URL": self.url, **env}, REPO)

    @contextmanager
    def connected(self) -> Iterator[Any]:
        """A CrustClient on this chain, used under SCALE_LOCK: the service under test may be decoding in
        another thread of this process, and scalecodec's decoder classes are shared."""
        from w3gate.crust.client import SCALE_LOCK, CrustClient

        with SCALE_LOCK:
            c = CrustClient(self.settings())
            c.connect()
            try:
                yield c
            finally:
                c.close()

    def records(self, cids: list[str]) -> dict[str, Any]:
        """The chain's file records of ``cids`` (None where there is none)."""
        with self.connected() as c:
            return c.files(cids)

    def set_storage(self, pairs: list[tuple[str, str | None]]) -> None:
        self.rpc("dev_setStorage", [[list(p) for p in pairs]])

    def fund(self, address: str, free: int) -> None:
        with self.connected() as c:
            s = c.substrate
            current = s.query("System", "Account", [address]).value
            current["data"]["free"] = free
            current["providers"] = max(1, current["providers"])
            value = s.runtime_config.create_scale_object("AccountInfo").encode(current).to_hex()
            self.set_storage([(s.create_storage_key("System", "Account", [address]).to_hex(), value)])

    def market_switch(self) -> str:
        """The storage item that switches the market on: ``MarketSwitch`` (spec 1) or ``EnableMarket`` (later)."""
        with self.connected() as c:
            names = {f.name for f in c.substrate.metadata.get_metadata_pallet("Market").storage}
        return "MarketSwitch" if "MarketSwitch" in names else "EnableMarket"

    def market_on(self, on: bool = True) -> None:
        with self.connected() as c:
            key = c.substrate.create_storage_key("Market", self.market_switch()).to_hex()
        self.set_storage([(key, "0x01" if on else "0x00")])

    def set_replicas(self, cid: str, replicas: int, expires_at: int = 0, holders: int = 0) -> None:
        """Write a file record as storage nodes' reports would leave it (there are none locally); ``holders``:
        entries in its replica list too (the chain renews a file with none as pending, without an expiry)."""
        from scalecodec.base import ScaleBytes

        with self.connected() as c:
            key = c.file_key(cid)
            raw = self.rpc("state_getStorage", [key])
            assert raw is not None, f"no file record for {cid}"
            obj = c.substrate.runtime_config.create_scale_object(c._files_value_type)
            value = obj.decode(ScaleBytes(raw))
            info = value[0] if isinstance(value, (list, tuple)) else value
            info["reported_replica_count"] = replicas
            info["expired_on" if "expired_on" in info else "expired_at"] = expires_at
            if holders:
                fields = c.substrate.runtime_config.get_decoder_class("Replica").type_mapping
                replica = {"who": c.address, "valid_at": self.head(), "anchor": "0x" + "ab" * 32, "is_reported": True,
                           "created_at": None}
                info["replicas"] = [{name: replica[name] for name, _ in fields}] * holders
            new = c.substrate.runtime_config.create_scale_object(c._files_value_type).encode(value).to_hex()
            self.set_storage([(key, new)])

    def new_block(self, transactions: list[str] | None = None) -> str:
        params: dict[str, Any] = {"count": 1}
        if transactions:
            params["transactions"] = transactions
        return self.rpc("dev_newBlock", [params])

    def head(self) -> int:
        return int(self.rpc("chain_getHeader", [])["number"], 16)

    def set_head(self, number: int) -> str:
        """Rewind the best chain to block ``number`` (chopsticks ``dev_setHead``): blocks built next fork there."""
        return self.rpc("dev_setHead", [number])

    def block_extrinsics(self, number: int) -> list[str]:
        """The raw extrinsics of the canonical block ``number``."""
        return self.rpc("chain_getBlock", [self.rpc("chain_getBlockHash", [number])])["block"]["extrinsics"]

    def orders_of(self, cids: set[str], event: str = "FileSuccess") -> dict[str, int]:
        """How many Market.FileSuccess (or ``event``: AddPrepaidSuccess, RenewFileSuccess) events each CID has in
        the whole chain."""
        with self.connected() as c:
            counts = {cid: 0 for cid in cids}
            wanted = {"0x" + cid.encode().hex(): cid for cid in cids}
            for n in range(1, c.head() + 1):
                events = c.substrate.get_events(c.substrate.get_block_hash(n))
                for e in events:
                    v = e.value
                    if (v["module_id"], v["event_id"]) == ("Market", event):
                        cid = wanted.get(v["attributes"][1]["value"])
                        if cid:
                            counts[cid] += 1
            return counts


class Relay:
    """Loopback JSON-RPC websocket: everything passes through to the devchain except
    ``author_submitExtrinsic``, which becomes ``dev_newBlock`` (or is held while ``hold`` is set).

    Faults are injected at the wire, as a node would answer: :meth:`fail_next` queues an answer for the next
    call of a method (a JSON-RPC ``error`` object, a ``result`` of nonsense, or ``"drop"`` to close the
    socket), so the services' handling of each is tested through their real client, unpatched; ``"stall"`` keeps
    the call unanswered (a node that hangs) until :meth:`unstall`, then answers it as usual (``stalls`` counts them).

    ``finality_lag`` = k makes ``chain_getFinalizedHead`` answer the canonical block k below the best head, and
    never lower than it answered before, as a GRANDPA node does (chopsticks finalizes every block itself):
    blocks above it can then be undone with ``dev_setHead``. ``block_hashes`` (number -> hash or None) answers
    ``chain_getBlockHash`` for those numbers, as a node behind a load balancer does that has not imported
    the block yet (None) or still follows a branch a re-organisation undid (that branch's hash)."""

    def __init__(self, chain: Devchain) -> None:
        from websockets.sync.server import serve

        self.chain = chain
        self.port = _free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.hold = False
        self.held: list[str] = []
        self.submitted: list[str] = []
        self.down = False
        self.faults: dict[str, list[Any]] = {}
        self.calls: dict[str, int] = {}
        self.finality_lag = 0
        self.finalized = 0  # the highest block number the relay has called finalized
        self._final_lock = threading.Lock()
        self.block_hashes: dict[int, str | None] = {}
        self.stalls = 0
        self._unstalled = threading.Event()
        self._server = serve(self._handle, "127.0.0.1", self.port, max_size=None, close_timeout=CLOSE_TIMEOUT)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, conn: Any) -> None:
        import websocket

        if self.down:
            conn.close()
            return
        try:
            upstream = websocket.create_connection(self.chain.url, timeout=120)
        except OSError:
            conn.close()
            return
        try:
            for message in conn:
                req = json.loads(message)
                method = req.get("method", "")
                self.calls[method] = self.calls.get(method, 0) + 1
                fault = self.faults.get(method, [None]).pop(0) if self.faults.get(method) else None
                if fault == "drop":
                    break
                if fault == "stall":
                    self.stalls += 1
                    self._unstalled.wait()
                    fault = None
                if fault is not None:
                    if method == "author_submitExtrinsic":
                        self.submitted.append(req["params"][0])
                    conn.send(json.dumps({"jsonrpc": "2.0", "id": req.get("id"), **fault}))
                    continue
                if method == "author_submitExtrinsic":
                    conn.send(json.dumps(self._submit(req)))
                    continue
                if method == "chain_getBlockHash" and self._number(req.get("params")) in self.block_hashes:
                    answer = self.block_hashes[self._number(req.get("params"))]
                    conn.send(json.dumps({"jsonrpc": "2.0", "id": req.get("id"), "result": answer}))
                    continue
                if method == "chain_getFinalizedHead" and self.finality_lag:
                    conn.send(json.dumps({"jsonrpc": "2.0", "id": req.get("id"), "result": self._finalized_hash()}))
                    continue
                upstream.send(message)
                while True:
                    reply = upstream.recv()
                    if json.loads(reply).get("id") == req.get("id"):
                        break
                conn.send(reply)
        except Exception:  # noqa: BLE001 - either side closing ends the session
            pass
        finally:
            upstream.close()
            conn.close()

    def _submit(self, req: dict[str, Any]) -> dict[str, Any]:
        ext = req["params"][0]
        self.submitted.append(ext)
        tx_hash = "0x" + blake2b(bytes.fromhex(ext[2:]), digest_size=32).hexdigest()
        if self.hold:
            self.held.append(ext)
        else:
            try:
                self.chain.new_block([ext])
            except Exception as exc:  # noqa: BLE001
                return {"jsonrpc": "2.0", "id": req["id"], "error": {"code": 1010, "message": str(exc)}}
        return {"jsonrpc": "2.0", "id": req["id"], "result": tx_hash}

    def _finalized_hash(self) -> str:
        with self._final_lock:
            best = self.chain.head()
            self.finalized = min(best, max(self.finalized, best - self.finality_lag))
            return self.chain.rpc("chain_getBlockHash", [self.finalized])

    @staticmethod
    def _number(params: Any) -> int | None:
        number = params[0] if params else None
        return int(number, 16) if isinstance(number, str) else number

    def fail_next(self, method: str, *answers: Any) -> None:
        """Answer the next calls of ``method`` with ``answers`` in turn: ``{"error": {...}}``,
        ``{"result": ...}``, or ``"drop"`` (close the connection)."""
        if "stall" in answers:
            self._unstalled.clear()
        self.faults.setdefault(method, []).extend(answers)

    def unstall(self) -> None:
        """Answer the stalled calls."""
        self._unstalled.set()

    def release(self) -> None:
        held, self.held = list(dict.fromkeys(self.held)), []  # a pool holds an extrinsic sent twice once
        if held:
            self.chain.new_block(held)

    def stop(self) -> None:
        self._unstalled.set()
        self._server.shutdown()


@pytest.fixture(scope="session", params=runtimes_under_test())
def devchain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devchain]:
    """Each devchain test runs once per Crust runtime (mainnet spec 1, rocky spec 4)."""
    if not RUN.exists():
        pytest.skip(f"no Crust devchain at {RUN}: these tests need ../shared/crust-devchain (set W3GATE_SHARED_DIR)")
    runtime = request.param
    chain = Devchain(_free_port(), tmp_path_factory.mktemp(f"devchain-{runtime}") / "chopsticks.log", runtime)
    chain.start()
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture
def relay(devchain: Devchain) -> Iterator[Relay]:
    if devchain.proc is None or devchain.proc.poll() is not None:  # a test killed it
        devchain.start()
    r = Relay(devchain)
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def ordering_account(devchain: Devchain) -> str:
    """Alice funded (10**18) and the market switched on."""
    from substrateinterface import Keypair

    address = Keypair.create_from_uri(ALICE, ss58_format=66).ss58_address
    devchain.fund(address, 10**18)
    devchain.market_on()
    return address


@pytest.fixture
async def crust_db(tmp_path: Path) -> Any:
    """A SQLite store for the service-level chain tests (import it as ``db``)."""
    from w3gate.store.db import Database

    database = Database(f"sqlite://{tmp_path / 'w3gate.sqlite3'}")
    await database.open()
    yield database
    await database.close()


def settings_for(relay: Relay, **extra: str) -> Any:
    from w3gate.crust.settings import load_crust_settings

    return load_crust_settings({}, crust_env(relay, **extra), REPO)


async def add_pin(db: Any, owner: str, cid: str) -> str:
    from w3gate.store import pins

    rec, _ = await db.run(pins.create_pin, owner, pins.NewPin(cid=cid), time.time_ns() // 1000)
    return rec.requestid


async def order_of(db: Any, cid: str) -> Any:
    from w3gate.store.models import Order

    async def get(h) -> Any:
        return await Order.get(cid=cid)

    return await db.run(get)


async def wait_status(db: Any, cids: list[str], status: str, timeout: float = 60) -> None:
    import trio

    with trio.fail_after(timeout):
        while True:
            got = [(await order_of(db, c)).status for c in cids]
            if all(s == status for s in got):
                return
            await trio.sleep(0.2)


async def run_tasks(nursery: Any, db: Any, settings: Any) -> Any:
    """Start the submitter and poller in ``nursery``; returns their Ordering (``.status()``: what /healthz shows)."""
    from w3gate.ordering.pipeline import Ordering

    ordering = Ordering(db, settings)
    tasks = ordering.tasks()
    assert len(tasks) == 2
    for task in tasks:
        nursery.start_soon(task)
    return ordering


def uniq(prefix: str) -> str:
    return f"bafy{prefix}{time.time_ns()}"


def crust_env(relay: Relay, **extra: str) -> dict[str, str]:
    """Environment for a w3gate under test ordering through ``relay``."""
    env = {
        "W3GATE_CRUST_SEED": ALICE,
        "W3GATE_CRUST_URL": relay.url,
        "W3GATE_CRUST_ORDER_INTERVAL": "0.2",
        "W3GATE_CRUST_POLL_INTERVAL": "0.3",
        "W3GATE_CRUST_BLOCK_POLL": "0.2",
        "W3GATE_CRUST_RECONNECT_MAX": "1",
        "W3GATE_CRUST_REPLICAS": "2",
        "W3GATE_CRUST_MIN_BALANCE": "1000000000",
        "W3GATE_LEADER_TIMEOUT": "4",  # on PostgreSQL a new leader orders after 1.5 s (30 s: after 3 s)
    }
    env.update(extra)
    return env
