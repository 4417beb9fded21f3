"""``w3gate crust check`` on the real Crust runtimes (both), run as an operator runs it: the CLI, in a subprocess.

What the check says is compared with what the test reads from the chain itself: the fee storage (raw SCALE,
priced with the market pallet's formula written out here), the account's nonce and balance before and after
(nothing may be spent), and file records placed by a real order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import pytest
import xxhash
from devchain_fixtures import Devchain, Relay, _free_port
from substrateinterface import Keypair

pytestmark = [pytest.mark.devchain, pytest.mark.no_database]
# W3GATE_TEST_COMMAND runs it against another build, e.g. the frozen binary
COMMAND = os.environ.get("W3GATE_TEST_COMMAND", "").split() or [sys.executable, "-m", "w3gate"]
MIB = 1024 * 1024
FEES = {  # the market's fee storage items, by spec: base, per started MiB, per order (rising with the files stored)
    "FileBaseFee": 70_001, "FilePrice": 130_003, "FileByteFee": 130_003, "FilesCountPrice": 3_331,
    "FileKeysCountFee": 3_331,
}


def crust_check(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("W3GATE_", "CRUST_"))}
    full.update(env or {})
    # run outside the checkout: ``python -m`` puts the working directory first on sys.path
    return subprocess.run([*COMMAND, "crust", "check", "--url", url, *args], env=full, capture_output=True,
                          text=True, timeout=300, cwd=tempfile.gettempdir())


def storage_key(pallet: str, item: str) -> str:
    def twox128(name: str) -> bytes:
        data = name.encode()
        return xxhash.xxh64_digest(data, seed=0)[::-1] + xxhash.xxh64_digest(data, seed=1)[::-1]

    return "0x" + (twox128(pallet) + twox128(item)).hex()


def u128(value: int) -> str:
    return "0x" + value.to_bytes(16, "little").hex()


def account_state(devchain: Devchain, address: str) -> tuple[int, int]:
    with devchain.connected() as client:
        info = client.substrate.query("System", "Account", [address]).value
    return int(info["nonce"]), int(info["data"]["free"])


def place_orders(devchain: Devchain, items: list[tuple[str, int]]) -> None:
    """Real orders by Alice (funded by ``ordering_account``), applied in a block: the chain writes their records."""
    with devchain.connected() as client:
        signed = client.sign_batch(items, client.account().nonce, client.finalized_head())
        devchain.new_block([signed.extrinsic])
        found, _ = client.find_inclusion(signed.tx_hash, signed.start_block)
        assert found is not None and client.batch_outcome(found, len(items)) == [("ok", None)] * len(items)


@pytest.fixture
def fees(devchain: Devchain) -> Any:
    """Distinct fee values written to the market's storage (restored after): the prices must be these."""
    with devchain.connected() as client:  # the items this runtime's metadata has (unwritten ones read as defaults)
        present = {name: value for name, value in FEES.items() if name in client.storage_items}
    before = {name: devchain.rpc("state_getStorage", [storage_key("Market", name)]) for name in present}
    devchain.set_storage([(storage_key("Market", name), u128(value)) for name, value in present.items()])
    devchain.new_block()
    yield present
    devchain.set_storage([(storage_key("Market", name), value) for name, value in before.items()])
    devchain.new_block()


def pallet_price(size: int, stored: dict[str, str], tip: int) -> int:
    """The market pallet's order price: FileBaseFee + byte fee x started MiB (get_file_amount) + the files-count
    fee, from the raw values read back from storage (``stored``: name -> SCALE u128 hex), plus the tip."""
    raw = {name: int.from_bytes(bytes.fromhex(value[2:]), "little") for name, value in stored.items()}
    byte_fee = raw.get("FileByteFee", raw.get("FilePrice", 0))
    count_fee = raw.get("FileKeysCountFee", raw.get("FilesCountPrice", 0))
    return raw.get("FileBaseFee", 0) + byte_fee * -(-size // MIB) + count_fee + tip


def test_check_reads_the_chain_and_spends_nothing(devchain, ordering_account, fees):
    cids = {f"bafycheck{devchain.runtime}{os.getpid()}a": 1024, f"bafycheck{devchain.runtime}{os.getpid()}b": 3 * MIB}
    place_orders(devchain, list(cids.items()))
    mnemonic = Keypair.generate_mnemonic()
    address = Keypair.create_from_mnemonic(mnemonic, ss58_format=66).ss58_address
    devchain.fund(address, 5 * 10**15)
    devchain.new_block()
    head, state = devchain.head(), account_state(devchain, address)
    stored = {name: devchain.rpc("state_getStorage", [storage_key("Market", name)]) for name in fees}
    env = {"W3GATE_CRUST_SEED": mnemonic, "W3GATE_CRUST_TIPS": "17"}

    done = crust_check(devchain.url, "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (report["usable"], report["exit_status"], report["problems"]) == (True, 0, [])
    spec = {"mainnet": 1, "rocky": 4}[devchain.runtime]
    assert (report["chain"], report["spec_version"]) == (devchain.chain_name, spec)
    assert report["types"]["verified"] is True and report["types"]["source"] == "shipped"
    assert report["types"]["range"] == {"mainnet": "1..2", "rocky": "3..16"}[devchain.runtime]
    [files] = report["records"]
    assert files["map"] == "Market.Files"
    decoded = {r["cid"]: r for r in files["sample"]}
    assert all("error" not in r for r in files["sample"]) and 0 < len(files["sample"]) <= 20
    for cid, size in cids.items():  # the sample is the first keys in storage order: ours are there on a young chain
        if cid in decoded:
            assert decoded[cid]["file_size"] == size
    assert set(cids) & set(decoded)
    expected = {label: str(pallet_price(size, stored, 17)) for label, size in
                (("1 MiB", MIB), ("100 MiB", 100 * MIB), ("1 GiB", 1024 * MIB))}
    assert report["prices"]["orders"] == expected
    assert report["account"] == {"address": address, "nonce": state[0], "free": str(state[1]),
                                 "usable": str(state[1])}

    url = devchain.url + "/?apikey=sekrit-key-123"  # a credential in the URL is never shown
    human = crust_check(url, env=env)
    assert human.returncode == 0, human.stdout + human.stderr
    assert "result    usable by this release" in human.stdout
    assert f"{devchain.url}/?apikey=***" in human.stdout and "sekrit" not in human.stdout + human.stderr
    assert address in human.stdout
    assert f"1 MiB: {int(expected['1 MiB']) // 10**12}.{int(expected['1 MiB']) % 10**12:012d} CRU" in human.stdout

    for out in (done.stdout, done.stderr, human.stdout, human.stderr):  # the secret, or any three words of it
        words = mnemonic.split()
        assert not any(" ".join(words[i:i + 3]) in out for i in range(len(words) - 2))
    assert devchain.head() == head  # no block built: nothing was sent
    assert account_state(devchain, address) == state  # nonce and balance as they were


def test_a_record_that_does_not_decode_strictly_fails_the_check(devchain, ordering_account):
    """A record with a byte more than its type is what a runtime of another layout leaves: exit status 5."""
    ok = f"bafycheckok{devchain.runtime}{os.getpid()}"
    place_orders(devchain, [(ok, 2048)])
    with devchain.connected() as client:
        good = devchain.rpc("state_getStorage", [client.file_key(ok)])
        # a CID whose key sorts first, so the sample of the first 20 keys reads it
        bad = next(c for c in (f"bafycheckbad{i}" for i in range(10**7)) if client.file_key(c)[66:70] == "0000")
        key = client.file_key(bad)
    devchain.set_storage([(key, good + "00")])
    try:
        done = crust_check(devchain.url)
        assert done.returncode == 5, done.stdout + done.stderr
        assert "do not decode" in done.stdout and "NOT usable by this release (exit status 5)" in done.stdout
        report = json.loads(crust_check(devchain.url, "--json").stdout)
        [row] = [r for r in report["records"][0]["sample"] if r["cid"] == bad]
        assert "does not decode" in row["error"] and report["exit_status"] == 5
    finally:
        devchain.set_storage([(key, None)])


def test_a_chain_without_verified_types_is_refused(devchain, relay: Relay):
    """A chain this release has no checked types for (answered by the node's ``system_chain``): exit status 4,
    with what the release does verify."""
    relay.fail_next("system_chain", {"result": "Crust Maxwell"})
    done = crust_check(relay.url)
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"NONE verified for spec {devchain.rpc('state_getRuntimeVersion', [])['specVersion']}" in done.stdout
    assert "no verified type definitions ship for it" in done.stdout
    assert "NOT usable by this release (exit status 4)" in done.stdout


def test_an_unreachable_chain_is_one_line_and_non_zero():
    url = f"ws://user:pa55word@127.0.0.1:{_free_port()}"
    done = crust_check(url)
    assert done.returncode == 3
    assert done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("w3gate crust check: cannot reach ws://***@127.0.0.1:") and "pa55word" not in line
    report = json.loads(crust_check(url, "--json").stdout)
    assert (report["usable"], report["exit_status"]) == (False, 3)


def test_operator_types_are_used_and_said_to_be_unverified(devchain, relay: Relay, ordering_account, tmp_path):
    """crust.typedefs from the config file (--config): the operator vouches for them, the check says so, and
    still decodes records strictly with them."""
    from w3gate.crust.typedefs import _read, ranges

    place_orders(devchain, [(f"bafycheckops{devchain.runtime}{os.getpid()}", 4096)])

    [entry] = [e for e in ranges("crust") if e["spec_min"] == 1]  # the shipped spec-1 types, as an operator's file
    types: dict[str, Any] = {}
    for name in entry["files"]:
        types.update(_read(name)["types"])
    registry = tmp_path / "maxwell-types.json"
    registry.write_text(json.dumps({"types": {}, "versioning": [{"runtime_range": [1, 16], "types": types}]}))
    config = tmp_path / "w3gate.toml"
    config.write_text(f'[crust]\nurl = "{relay.url}"\ntypedefs = "{registry}"\n')
    relay.fail_next("system_chain", {"result": "Crust Maxwell"})
    done = subprocess.run([*COMMAND, "crust", "check", "--config", str(config), "--json"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("W3GATE_", "CRUST_"))})
    report = json.loads(done.stdout)
    if devchain.runtime == "rocky":  # spec 4 records are not spec 1's layout: the strict decode says so
        assert (done.returncode, report["exit_status"]) == (5, 5)
        assert "do not decode" in report["problems"][0]
    else:
        assert (done.returncode, report["exit_status"], report["usable"]) == (0, 0, True), done.stdout
    assert report["url"] == relay.url and report["chain"] == "crust_maxwell"
    assert report["types"]["source"] == "crust.typedefs" and report["types"]["verified"] is False
    assert any("not verified by this release" in n for n in report["notes"])
