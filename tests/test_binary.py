"""The one-file binary (packaging/build), tested as operators run it.

Skipped unless W3GATE_BINARY names a built binary (CI: ``packaging/build`` then
``W3GATE_BINARY=dist/w3gate pytest -m binary``). Every test execs the binary itself, over real HTTP on
loopback: embedded defaults, the built-in chains on the shared W3Auth vectors, SIGTERM and restart, a
killed launcher, PostgreSQL, plugins from a plugin directory (a wheel installed with
``pip install --target DIR --no-deps``, one with a compiled extension module, one importing all of
w3gate, the libraries for plugins and the standard library), the conformance suite, and a pin ordered on
the real Crust devchain.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import database_url_for_test
from helpers import (
    REPO,
    SHARED,
    Server,
    machine_lock,
    new_postgres_database,
    start_server_process,
    substrate_token,
)

BINARY = os.environ.get("W3GATE_BINARY", "")
pytestmark = [
    pytest.mark.binary,
    pytest.mark.skipif(not BINARY, reason="set W3GATE_BINARY to a binary built by packaging/build"),
]
CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
VECTORS = json.loads((Path(__file__).parent / "data" / "w3auth_vectors.json").read_text())["vectors"]
BUILT_IN = [v for v in VECTORS if v["family"] in ("substrate", "ethereum", "solana")
            and v["w3gate_expect_valid"] is not None
            and (v["chain_type"] or "").strip().lower() not in ("near", "nea")]  # NEAR: a plugin


def binary() -> str:
    path = Path(BINARY).resolve()
    assert path.is_file() and os.access(path, os.X_OK), f"W3GATE_BINARY={BINARY} is not an executable file"
    return str(path)


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without w3gate's, Python's or OpenSSL's settings (as on a fresh host)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("W3GATE_", "CRUST_", "PYTHON")) and k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    return {**env, **extra}


def run_binary(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([binary(), *args], capture_output=True, text=True, env=env or clean_env(), check=False,
                          timeout=timeout)


STARTED: list[tuple[Server, int]] = []  # each server and the PID of its service process


@pytest.fixture(autouse=True)
def _stop_servers() -> Iterator[None]:
    """A failing test must not leave a server behind: SIGTERM (the launcher forwards it), then SIGKILL;
    and a service whose launcher is gone (a binary without the launcher hook) gets its SIGTERM directly."""
    yield
    while STARTED:
        server, service = STARTED.pop()
        if server.proc.poll() is None:
            try:
                server.stop(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        if not has_exited(service):
            os.kill(service, signal.SIGTERM)


def start(tmp_path: Path, name: str = "data", env: dict[str, str] | None = None,
          data_dir: Path | None = None, database_url: str | None = None) -> Server:
    """The binary on embedded defaults (nothing configured but port and data dir) on a free port."""
    if data_dir is None:
        data_dir = tmp_path / name
        data_dir.mkdir()
    server = start_server_process(command=[binary()], data_dir=data_dir, env=env, database_url=database_url)
    STARTED.append((server, service_pid(server)))
    return server


def service_pid(server: Server) -> int:
    """The one-file launcher runs the service as its only child."""
    (child,) = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    return int(child)


def has_exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


# --- version, defaults, built-in chains ---------------------------------------------------------------------
def test_version_names_w3gate_and_the_bundled_python() -> None:
    from w3gate import __version__

    out = run_binary("--version")
    assert out.returncode == 0, out.stderr
    match = re.fullmatch(r"w3gate (\S+) \(Python (3\.\d+\.\d+)\)\n", out.stdout)
    assert match, out.stdout
    assert match.group(1) == __version__
    # compiled plugins must be built for this Python: the build makes 3.11 binaries only
    assert match.group(2).startswith("3.11.")


def test_release_files_next_to_the_binary() -> None:
    """packaging/build writes the versioned copy and SHA256SUMS beside dist/w3gate; both must match it."""
    import hashlib

    from w3gate import __version__

    path = Path(binary())
    sums = path.parent / "SHA256SUMS"
    if not sums.exists():
        pytest.skip(f"no SHA256SUMS next to {path} (not a packaging/build output directory)")
    listed = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
    versioned = f"w3gate-{__version__}-linux-x86_64"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert listed.get(path.name) == digest
    assert listed.get(versioned) == digest
    assert hashlib.sha256((path.parent / versioned).read_bytes()).hexdigest() == digest


def test_starts_on_embedded_defaults_and_serves_pins(tmp_path: Path) -> None:
    server = start(tmp_path)
    health = server.health()
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert {"substrate", "ethereum", "solana"} <= set(body["chains"])
    with server.client(substrate_token("//Alice")) as client:
        assert client.get("/pins").json() == {"count": 0, "results": []}
        created = client.post("/pins", json={"cid": CID, "name": "frozen"})
        assert created.status_code == 202, created.text
        listed = client.get("/pins", params={"cid": CID, "status": "queued"}).json()
        assert listed["count"] == 1 and listed["results"][0]["pin"]["name"] == "frozen"
    with server.client(substrate_token("//Bob")) as other:  # another identity sees nothing of Alice's
        assert other.get("/pins").json()["count"] == 0
    assert httpx.get(server.psa_url + "/pins", timeout=10).status_code == 401
    assert server.stop() == 0


def test_every_built_in_chain_vector(tmp_path: Path) -> None:
    """sr25519/ed25519/ECDSA substrate, EIP-191 ethereum, ed25519 solana: the crypto libraries, frozen."""
    assert len(BUILT_IN) > 60
    server = start(tmp_path, database_url=database_url_for_test())
    wrong = []
    for vector in BUILT_IN:
        # http.client sends the header value's bytes as they are (some vectors test surrounding blanks)
        conn = http.client.HTTPConnection("127.0.0.1", int(server.base_url.rsplit(":", 1)[1]), timeout=30)
        try:
            conn.putrequest("GET", "/psa/pins")
            conn.putheader("Authorization", vector["header_value"])
            conn.endheaders()
            code = conn.getresponse().status
        finally:
            conn.close()
        if code != (200 if vector["w3gate_expect_valid"] else 401):
            wrong.append((vector["id"], vector["note"], code))
    assert wrong == []
    assert server.stop() == 0


def test_sigterm_exits_0_and_nothing_is_lost(tmp_path: Path) -> None:
    db_url = database_url_for_test()
    server = start(tmp_path, database_url=db_url)
    token = substrate_token("//Alice")
    with server.client(token) as client:
        created = client.post("/pins", json={"cid": CID, "name": "kept", "meta": {"k": "v"}})
        assert created.status_code == 202
        requestid = created.json()["requestid"]
    assert server.stop(signal.SIGTERM) == 0
    assert "w3gate stopped" in server.log_text()
    again = start(tmp_path, data_dir=server.data_dir, database_url=db_url)
    with again.client(token) as client:
        got = client.get(f"/pins/{requestid}")
        assert got.status_code == 200, got.text
        assert got.json()["pin"] == {"cid": CID, "name": "kept", "meta": {"k": "v"}}
    assert again.stop(signal.SIGTERM) == 0


def test_service_stops_when_the_launcher_is_killed(tmp_path: Path) -> None:
    """kill -9 of the PID a supervisor knows (the launcher) must not orphan the service on its port."""
    server = start(tmp_path)
    service = STARTED[-1][1]
    assert server.kill() == -signal.SIGKILL
    deadline = time.monotonic() + 20
    while not has_exited(service) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert has_exited(service), "the service outlived its launcher"
    assert "received SIGTERM: shutting down" in server.log_text() and "w3gate stopped" in server.log_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(server.base_url + "/healthz", timeout=2)


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("W3GATE_TEST_POSTGRES_URL"), reason="needs W3GATE_TEST_POSTGRES_URL")
def test_postgresql_backend(tmp_path: Path) -> None:
    """The asyncpg backend, loaded by Tortoise by module name, is in the binary: migrate, write, restart."""
    db_url = new_postgres_database(os.environ["W3GATE_TEST_POSTGRES_URL"])
    server = start(tmp_path, database_url=db_url)
    assert "postgres" in server.log_text() and "sqlite" not in server.log_text().lower()
    assert not list(server.data_dir.glob("*.sqlite3"))
    token = substrate_token("//Alice")
    with server.client(token) as client:
        requestid = client.post("/pins", json={"cid": CID}).json()["requestid"]
    assert server.stop() == 0
    again = start(tmp_path, name="other-dir", database_url=db_url)  # the data lives in the database
    with again.client(token) as client:
        assert client.get(f"/pins/{requestid}").json()["pin"]["cid"] == CID
    assert again.stop() == 0


def test_cli_errors_exit_2(tmp_path: Path) -> None:
    out = run_binary("serve", "--config", str(tmp_path / "missing.toml"))
    assert out.returncode == 2 and "configuration error" in out.stderr


# --- plugins from a plugin directory -----------------------------------------------------------------------
EXT_PLUGIN = '''"""A plugin whose identity hash is a compiled extension module in the plugin directory itself."""
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from w3gate.hookspecs import Identity, InvalidSignature, SimpleChain, hookimpl
from w3gate.w3auth.nodecodec import node_hex
from w3gate_cext import _xxhash  # compiled (xxhash's extension, copied here), loaded from this directory

EXTENSION_FILE = _xxhash.__file__


def verify(credentials):
    key, sig = node_hex(credentials.address), node_hex(credentials.signature)
    try:
        VerifyKey(key).verify(credentials.address.encode(), sig)
    except (BadSignatureError, ValueError) as exc:
        raise InvalidSignature("cext: signature does not verify") from exc
    return Identity("cext", _xxhash.xxh64(key).hexdigest(), credentials.address)


@hookimpl
def w3gate_chains(settings):
    return [SimpleChain("cext", ("cext",), verify)]
'''


IMPORTS_PLUGIN = '''"""Imports what the binary promises plugins (packaging/README.md): all of w3gate, the libraries
for plugins, and the standard library."""
import importlib
import sys

from w3gate.hookspecs import hookimpl

NOT_BUNDLED = {  # left out on purpose, platform-specific, or with side effects on import
    "tkinter", "_tkinter", "turtle", "turtledemo", "idlelib", "test", "lib2to3", "ensurepip", "venv",
    "distutils", "pydoc_data", "curses", "_curses", "_curses_panel", "readline", "nis", "antigravity", "this",
    "msilib", "_msi", "msvcrt", "winreg", "winsound", "nt", "_winapi", "_overlapped", "_scproxy",
    "_testcapi", "_testinternalcapi", "_testbuffer", "_testimportmultiple", "_testmultiphase",
    "_xxtestfuzz", "xxlimited", "xxlimited_35", "_ctypes_test",
    "_dbm", "_gdbm",  # optional: only where CPython was built with the ndbm/gdbm headers
}
STDLIB_SUBMODULES = [
    "xml.etree.ElementTree", "email.mime.text", "unittest.mock", "concurrent.futures.process",
    "importlib.metadata", "http.client", "urllib.request", "sqlite3.dbapi2", "ctypes.util",
    "logging.handlers", "encodings.idna", "zoneinfo._tzpath", "asyncio.subprocess",
]
FOR_PLUGINS = [
    "nacl.signing", "nacl.bindings", "nacl.hash", "coincurve", "base58", "Crypto.Hash.keccak",
    "Crypto.Hash.RIPEMD160", "Crypto.Hash.SHA3_256", "Crypto.PublicKey.ECC", "Crypto.Signature.DSS",
    "Crypto.Signature.eddsa", "Crypto.Util.asn1", "multiformats", "multiaddr",
]
W3GATE_MODULES = %s

missing = []
stdlib = [n for n in sorted(sys.stdlib_module_names) if n not in NOT_BUNDLED]
for name in stdlib + STDLIB_SUBMODULES + FOR_PLUGINS + W3GATE_MODULES:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        missing.append(f"{name} ({exc})")
if missing:
    raise ImportError("modules missing: " + ", ".join(missing))

import ssl  # noqa: E402  TLS to a wss:// Crust node needs CA certificates (packaging/rthook_ssl_certs.py)

if ssl.create_default_context().cert_store_stats()["x509_ca"] == 0:
    raise ImportError("no CA certificates: TLS peers cannot be verified")


@hookimpl
def w3gate_chains(settings):
    return []
'''


def w3gate_modules() -> list[str]:
    """Every module of w3gate in this checkout (what the binary must hold)."""
    root = REPO / "w3gate"
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def lay_out_plugin(target: Path, package: str, version: str, source: str) -> Path:
    """A plugin as ``pip install --target`` leaves it: the package, and a dist-info with its entry point."""
    (target / package).mkdir()
    (target / package / "__init__.py").write_text(source)
    dist_info = target / f"{package}-{version}.dist-info"
    dist_info.mkdir()
    name = package.replace("_", "-")
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist_info / "entry_points.txt").write_text(f"[w3gate]\n{package.split('_', 1)[1]} = {package}\n")
    return target / package


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """plugins/example built as a wheel and installed with ``pip install --target DIR --no-deps``; a plugin
    with a compiled extension module of its own; one that imports all that plugins are promised."""
    example = REPO / "plugins" / "example"
    if not (example / "pyproject.toml").is_file():
        pytest.fail(f"{example} is missing")
    work = tmp_path_factory.mktemp("plugin-build")
    target = tmp_path_factory.mktemp("plugin-dir")
    source = work / "example"  # a copy: building leaves files in the source tree
    shutil.copytree(example, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(work), str(source)], check=True, timeout=300)
    (wheel,) = work.glob("w3gate_example-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=300)

    import xxhash._xxhash

    package = lay_out_plugin(target, "w3gate_cext", "0.2.0", EXT_PLUGIN)
    shutil.copy(xxhash._xxhash.__file__, package / Path(xxhash._xxhash.__file__).name)
    lay_out_plugin(target, "w3gate_imports", "0.3.0", IMPORTS_PLUGIN % repr(w3gate_modules()))
    return target


def ed25519_token(chain_type: str, seed: bytes, message: bytes | None = None) -> str:
    from nacl.signing import SigningKey

    key = SigningKey(seed)
    address = bytes(key.verify_key).hex()
    signature = key.sign(message if message is not None else address.encode()).signature.hex()
    return "Bearer " + base64.b64encode(f"{chain_type}-{address}:{signature}".encode()).decode()


def test_plugins_command_lists_plugins_from_the_plugin_dir(plugin_dir: Path) -> None:
    out = run_binary("plugins", env=clean_env(W3GATE_PLUGIN_DIR=str(plugin_dir)))
    assert out.returncode == 0, out.stderr
    assert "failed to load" not in out.stdout, out.stdout
    rows = {line.split()[0]: line for line in out.stdout.splitlines() if line and not line.startswith(" ")}
    assert "example" in rows and "0.1.0" in rows["example"] and "plugin dir" in rows["example"]
    assert "exa" in rows["example"]
    assert "cext" in rows and "0.2.0" in rows["cext"] and "plugin dir" in rows["cext"]
    assert "imports" in rows and "plugin dir" in rows["imports"]
    for built_in in ("substrate", "ethereum", "solana"):
        assert "built-in" in rows[built_in]
    without = run_binary("plugins")  # no plugin dir: the plugins are not bundled
    assert without.returncode == 0
    assert not {"example", "cext", "imports"} & {line.split()[0] for line in without.stdout.splitlines() if line}


def test_plugin_tokens_accepted_by_the_binary(tmp_path: Path, plugin_dir: Path) -> None:
    server = start(tmp_path, env={"W3GATE_PLUGIN_DIR": str(plugin_dir)})
    seed = bytes(range(32))
    with httpx.Client(base_url=server.psa_url, timeout=30) as client:
        for chain_type in ("exa", "example", "cext"):
            ok = client.get("/pins", headers={"Authorization": ed25519_token(chain_type, seed)})
            assert ok.status_code == 200, (chain_type, ok.text)
            bad = client.get("/pins", headers={"Authorization": ed25519_token(chain_type, seed, b"other")})
            assert bad.status_code == 401, (chain_type, bad.text)
        posted = client.post("/pins", json={"cid": CID}, headers={"Authorization": ed25519_token("exa", seed)})
        assert posted.status_code == 202, posted.text
    assert "failed to load" not in server.log_text()
    assert server.stop() == 0


# --- the conformance suite -------------------------------------------------------------------------------
TOOL = SHARED / "tools" / "psa-compliance"


@pytest.mark.compliance
@pytest.mark.skipif(not TOOL.exists(), reason=f"{TOOL} not found (set W3GATE_SHARED_DIR)")
def test_conformance_suite_passes_9_of_9_against_the_binary(tmp_path: Path) -> None:
    assert shutil.which("npm"), "the conformance suite needs node and npm"
    server = start(tmp_path, database_url=database_url_for_test())
    report = tmp_path / "report.md"
    with machine_lock("psa-compliance"):  # the tool writes its report to one place in its install
        proc = subprocess.run(
            [str(TOOL), server.psa_url, substrate_token("//Alice").removeprefix("Bearer ")],
            capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ, "PSA_COMPLIANCE_REPORT": str(report)},
        )
    summary = [line for line in proc.stdout.splitlines() if line.startswith("psa-compliance:")]
    detail = report.read_text()[-6000:] if report.exists() else proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"{summary}\n{detail}"
    assert summary and "9 passed, 0 failed of 9" in summary[-1]
    assert server.stop() == 0


# --- a pin ordered on the real Crust runtime ------------------------------------------------------------------
@pytest.mark.devchain
def test_pin_is_ordered_on_the_devchain(tmp_path: Path, devchain, relay, ordering_account) -> None:
    from devchain_fixtures import crust_env
    from multiformats import CID, multihash

    cid = str(CID("base32", 1, "raw", multihash.digest(os.urandom(32), "sha2-256")))  # never ordered before
    server = start(tmp_path, env=crust_env(relay))
    with server.client(substrate_token("//Alice")) as client:
        created = client.post("/pins", json={"cid": cid})
        assert created.status_code == 202, created.text
        requestid = created.json()["requestid"]
        deadline = time.monotonic() + 120
        status = created.json()["status"]
        while status != "pinning" and time.monotonic() < deadline:
            time.sleep(0.3)
            status = client.get(f"/pins/{requestid}").json()["status"]
        assert status == "pinning", server.log_text()[-4000:]
    health = server.health().json()
    assert health["ordering"]["chain_connected"] is True
    assert health["ordering"]["account"] == ordering_account
    assert len(relay.submitted) >= 1
    assert devchain.orders_of({cid}) == {cid: 1}  # the runtime's own Market.FileSuccess event
    assert server.stop() == 0
    assert "//Alice" not in server.log_text()  # the operator's seed never in the log
