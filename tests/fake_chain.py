"""A Crust node stand-in at the JSON-RPC seam, for the fast tier: a loopback websocket that answers the chain
client's JSON-RPC calls with the answers a real Crust runtime gave (a transcript recorded from the devchain,
``tests/data/crust_rpc_<runtime>.json.gz``), so the real client (substrate-interface, the runtime's real
metadata, SCALE decoding) runs unpatched, in milliseconds, without chopsticks.

Faults are queued as on the devchain's relay (:class:`devchain_fixtures.Relay`): :meth:`FakeNode.fail_next`
answers the next calls of a method with a JSON-RPC ``error``, a ``result`` of nonsense, ``"drop"`` (the socket
closed) or ``"stall"`` (never answered). A call the transcript does not hold is a JSON-RPC error naming it.

Record again (after a runtime or client change): ``python tests/fake_chain.py rocky`` (needs the devchain).
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from hashlib import blake2b
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
ALICE = "//Alice"


def transcript_path(runtime: str) -> Path:
    return DATA / f"crust_rpc_{runtime}.json.gz"


def _key(method: str, params: Any) -> str:
    return json.dumps([method, params], sort_keys=True)


def _free_port() -> int:
    from helpers import free_port  # one counter of ports for the machine (tests run side by side)

    return free_port()


class FakeNode:
    """Answers from a transcript; ``author_submitExtrinsic`` answers the extrinsic's hash (and keeps it)."""

    def __init__(self, runtime: str = "rocky") -> None:
        from websockets.sync.server import serve

        with gzip.open(transcript_path(runtime), "rt") as fh:
            self.answers: dict[str, Any] = json.load(fh)
        self.port = _free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.faults: dict[str, list[Any]] = {}
        self.calls: dict[str, int] = {}
        self.submitted: list[str] = []
        self._unstalled = threading.Event()
        self._server = serve(self._handle, "127.0.0.1", self.port, max_size=None, close_timeout=1)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, conn: Any) -> None:
        try:
            for message in conn:
                req = json.loads(message)
                method, params = req.get("method", ""), req.get("params", [])
                self.calls[method] = self.calls.get(method, 0) + 1
                fault = self.faults[method].pop(0) if self.faults.get(method) else None
                if method == "author_submitExtrinsic":
                    self.submitted.append(params[0])
                if fault == "drop":
                    break
                if fault == "stall":
                    self._unstalled.wait()
                    continue
                answer = fault or self._answer(method, params)
                conn.send(json.dumps({"jsonrpc": "2.0", "id": req.get("id"), **answer}))
        except Exception:  # noqa: BLE001 - the client closing ends the session
            pass
        finally:
            conn.close()

    def _answer(self, method: str, params: Any) -> dict[str, Any]:
        if method == "author_submitExtrinsic":
            return {"result": "0x" + blake2b(bytes.fromhex(params[0][2:]), digest_size=32).hexdigest()}
        key = _key(method, params)
        if key in self.answers:
            return {"result": self.answers[key]}
        return {"error": {"code": -32601, "message": f"not in the recorded transcript: {method} {params}"}}

    def fail_next(self, method: str, *answers: Any) -> None:
        """Answer the next calls of ``method`` with ``answers`` in turn: ``{"error": {...}}``, ``{"result": ...}``,
        ``"drop"`` or ``"stall"``."""
        if "stall" in answers:
            self._unstalled.clear()
        self.faults.setdefault(method, []).extend(answers)

    def stop(self) -> None:
        self._unstalled.set()
        self._server.shutdown()


class _Recorder:
    """A loopback relay to a real node that keeps every answer: the transcript :class:`FakeNode` replays."""

    def __init__(self, upstream_url: str) -> None:
        from websockets.sync.server import serve

        self.upstream_url = upstream_url
        self.answers: dict[str, Any] = {}
        self.port = _free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self._server = serve(self._handle, "127.0.0.1", self.port, max_size=None, close_timeout=1)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handle(self, conn: Any) -> None:
        import websocket

        upstream = websocket.create_connection(self.upstream_url, timeout=120)
        try:
            for message in conn:
                req = json.loads(message)
                upstream.send(message)
                while True:
                    reply = upstream.recv()
                    if json.loads(reply).get("id") == req.get("id"):
                        break
                answer = json.loads(reply)
                if "result" in answer:
                    self.answers[_key(req.get("method", ""), req.get("params", []))] = answer["result"]
                conn.send(reply)
        except Exception:  # noqa: BLE001
            pass
        finally:
            upstream.close()
            conn.close()


def exercise(client: Any) -> None:
    """The client calls the fake tier's tests make (recorded, then replayed in the same order)."""
    client.connect()
    client.check_runtime()
    head = client.head()
    client.finalized_head()
    client.spec_at(head)
    client.account()
    client.market_enabled()
    client.fees()
    client.files(["bafyfakechainnotstored"])


def record(runtime: str) -> Path:
    """Start the devchain, run :func:`exercise` through a recording relay, write the transcript."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import tempfile

    from devchain_fixtures import Devchain

    from w3gate.crust.client import CrustClient
    from w3gate.crust.settings import load_crust_settings

    tmp = Path(tempfile.mkdtemp(prefix="w3gate-record-"))
    chain = Devchain(_free_port(), tmp / "chopsticks.log", runtime)
    chain.start()
    try:
        recorder = _Recorder(chain.url)
        settings = load_crust_settings({}, {"W3GATE_CRUST_SEED": ALICE, "W3GATE_CRUST_URL": recorder.url}, tmp)
        client = CrustClient(settings)
        exercise(client)
        client.close()
        recorder._server.shutdown()
    finally:
        chain.stop()
    path = transcript_path(runtime)
    with gzip.open(path, "wt") as fh:
        json.dump(recorder.answers, fh, sort_keys=True)
    return path


if __name__ == "__main__":
    print(record(sys.argv[1] if len(sys.argv) > 1 else "rocky"))
