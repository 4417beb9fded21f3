"""The schema upgrades an existing database in place, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import POSTGRES, database_url_for_test
from helpers import start_server_process, substrate_token
from tortoise import connections

from w3gate.ordering.lifecycle import RecordedBatch
from w3gate.store import migrations, orders
from w3gate.store.db import Database


def _url(tmp_path) -> str:
    return database_url_for_test() or f"sqlite://{tmp_path / 'old.sqlite3'}"


async def test_upgrade_from_first_release_keeps_data_and_adds_orders(tmp_path) -> None:
    url = _url(tmp_path)
    old = Database(url)
    assert await old.open(upgrade_to=1) == (0, 1)

    async def insert_old_rows(h) -> None:
        conn = connections.get(old.connection_name)
        for i, cid in enumerate(["QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"] * 2 + ["bafkqaaa"]):
            await conn.execute_script(
                "INSERT INTO pins (requestid, owner, cid, name, status, created_ms) "
                f"VALUES ('r{i}', 'substrate:0x01', '{cid}', 'n{i}', 'queued', {1000 + i})"
            )

    await old.run(insert_old_rows)
    await old.close()

    new = Database(url)
    assert await new.open() == (1, migrations.LATEST)

    async def read(h) -> tuple[list, list]:
        conn = connections.get(new.connection_name)
        pins = await conn.execute_query_dict("SELECT requestid, name FROM pins ORDER BY created_ms")
        orders = await conn.execute_query_dict("SELECT cid, status, created_ms FROM orders ORDER BY cid")
        return pins, orders

    pins, orders = await new.run(read)
    assert [p["requestid"] for p in pins] == ["r0", "r1", "r2"]
    assert [(o["cid"], o["status"], o["created_ms"]) for o in orders] == [
        ("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "queued", 1000),
        ("bafkqaaa", "failed", 1002),  # schema 7: an identity CID holds no data; its unsent order fails
    ]
    await new.close()
    # opening again is a no-op
    again = Database(url)
    assert await again.open() == (migrations.LATEST, migrations.LATEST)
    await again.close()


async def test_database_from_a_newer_release_is_refused(tmp_path) -> None:
    url = _url(tmp_path)
    db = Database(url)
    await db.open()

    async def bump(h) -> None:  # what a newer release with a step older ones cannot use writes
        await connections.get(db.connection_name).execute_script(
            f"UPDATE schema_version SET version = {migrations.LATEST + 1}; "
            f"UPDATE schema_compat SET min_compatible = {migrations.LATEST + 1}"
        )

    await db.run(bump)
    await db.close()
    with pytest.raises(migrations.SchemaTooNew):
        await Database(url).open()


async def test_extrinsics_recorded_before_spec_versions_stay_open_with_none(tmp_path) -> None:
    """An extrinsic recorded before the spec version was (NULL after the upgrade) is still settled by its era;
    one recorded after carries the spec version it was signed under (the submitter's upgrade verdict reads it)."""
    step = next(i for i, (title, _) in enumerate(migrations.MIGRATIONS, 1) if "spec version they were signed" in title)
    url = _url(tmp_path)
    old = Database(url)
    assert await old.open(upgrade_to=step - 1) == (0, step - 1)

    async def insert_open_tx(h) -> None:
        await connections.get(old.connection_name).execute_script(
            "INSERT INTO crust_txs (hash, nonce, extrinsic, cids, start_block, era_end, status, created_ms, updated_ms)"
            " VALUES ('0xold', 3, '0x00', '[\"bafkqaaa\"]', 1, 65, 'sent', 1000, 1000)"
        )

    await old.run(insert_open_tx)
    await old.close()
    new = Database(url)
    assert await new.open() == (step - 1, migrations.LATEST)
    tx = RecordedBatch("0xnew", nonce=4, extrinsic="0x01", start_block=2, era_end=66, spec_version=4)
    await new.run(orders.record_tx, "token", tx, [], 2000)
    assert [(t.hash, t.spec_version) for t in await new.run(orders.open_txs)] == [("0xold", None), ("0xnew", 4)]
    await new.close()


async def test_upgrade_keys_pins_and_orders_by_content(tmp_path) -> None:
    """Schema 4 held one order per CID text: a content pinned in several forms had several orders."""
    from multiformats import CID, multihash

    from w3gate.services.pins import parse_pin
    from w3gate.store import orders as order_store
    from w3gate.store import pins as pin_store

    a_v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
    a = CID.decode(a_v0).set(version=1)
    a_key = str(a.set(base="base32"))
    b = CID("base32", 1, "raw", multihash.digest(b"b", "sha2-256"))  # no v0 form
    d = CID("base32", 1, "dag-pb", multihash.digest(b"d", "sha2-256"))
    d_v0 = str(d.set(version=0, base="base58btc"))
    # 253 characters, 290 as CIDv1 base32: more than the column holds, so it stays its own key
    long_identity = CID("base32", 1, "raw", multihash.wrap(b"x" * 180, "identity")).encode("base58btc")
    orders = [  # cid, status, created_ms, tx_hash
        (a_v0, "pinning", 1000, None),
        (a_key, "queued", 999, None),
        (a_key.upper(), "submitting", 1002, "0xabc"),  # in an open extrinsic: its text must stay
        (a.encode("base58btc"), "failed", 1003, None),
        (b.encode("base58btc"), "queued", 1004, None),  # never sent: ordered in the form nodes report
        (d.encode("base36"), "failed", 1005, None),
        ("bafkqaaa", "queued", 1006, None),
        (long_identity, "pinned", 1007, None),
    ]
    pins = [(o[0], {"submitting": "queued"}.get(o[1], o[1])) for o in orders] + [(a_v0, "pinning")]
    url = _url(tmp_path)
    old = Database(url)
    assert await old.open(upgrade_to=4) == (0, 4)

    async def insert_old_rows(h) -> None:
        conn = connections.get(old.connection_name)
        for cid, status, ms, tx in orders:
            await conn.execute_script(
                "INSERT INTO orders (cid, status, created_ms, updated_ms, tx_hash) "
                f"VALUES ('{cid}', '{status}', {ms}, {ms}, {'NULL' if tx is None else repr(tx)})"
            )
        for i, (cid, status) in enumerate(pins):
            await conn.execute_script(
                "INSERT INTO pins (requestid, owner, cid, status, created_ms) "
                f"VALUES ('r{i}', '{'ab'[i % 2]}', '{cid}', '{status}', {2000 + i})"
            )

    await old.run(insert_old_rows)
    await old.close()

    new = Database(url)
    assert await new.open() == (4, migrations.LATEST)
    try:
        async def read(h, sql: str) -> list[dict]:
            return list(await connections.get(new.connection_name).execute_query_dict(sql))

        got = {o["cid"]: (o["cid_key"], o["status"]) for o in await new.run(read, "SELECT * FROM orders")}
        assert got == {
            a_v0: (a_key, "pinning"),  # the furthest along stays the content's order, in its chain text
            a_key.upper(): (None, "submitting"),  # in flight: kept for the chain, unkeyed, never renewed
            str(b): (str(b), "queued"),
            d_v0: (str(d), "failed"),
            "bafkqaaa": ("bafkqaaa", "failed"),
            long_identity: (long_identity, "failed"),
        }
        pin_rows = await new.run(read, "SELECT requestid, cid, cid_key, status FROM pins ORDER BY created_ms")
        assert [p["cid"] for p in pin_rows] == [p[0] for p in pins]  # the users' texts are kept
        status_of_key = {v[0]: v[1] for v in got.values() if v[0]}
        assert [(p["cid_key"], p["status"]) for p in pin_rows] == [
            (k, {"submitting": "queued"}.get(status_of_key[k], status_of_key[k]))
            for k in [a_key] * 4 + [str(b), str(d), "bafkqaaa", long_identity, a_key]]
        counts = await new.run(read, "SELECT owner, status, n FROM pin_counts WHERE n > 0")
        full = await new.run(read, "SELECT owner, status, COUNT(*) AS n FROM pins GROUP BY owner, status")
        assert sorted((c["owner"], c["status"], c["n"]) for c in counts) == sorted(
            (c["owner"], c["status"], c["n"]) for c in full)

        # the upgraded rows work: a fifth form joins content a's order, its filter finds all five
        rec, _ = await new.run(pin_store.create_pin, "a", parse_pin({"cid": a.encode("base36")}), 5000)
        assert rec.status == "pinning"
        assert len(await new.run(read, "SELECT cid FROM orders")) == 6
        count, found = await new.run(pin_store.list_pins, "a", pin_store.PinQuery(cids=(a_key,), limit=100))
        assert count == 4 and {r.cid for r in found} == {a_v0, a_key.upper(), a.encode("base36")}
        # only content b is ordered: a is placed, d failed, the identity CID failed, the in-flight one is unkeyed
        claimed = await new.run(order_store.claim, "claim:t", 10, 10_000)
        assert [c.cid for c in claimed] == [str(b)]
    finally:
        await new.close()


async def test_older_release_runs_on_a_newer_schema_only_while_every_newer_step_is_additive(
        tmp_path, monkeypatch) -> None:
    """A rolling upgrade: a newer release (this one plus steps) upgrades the database; this release keeps
    opening and using it while the newer steps are all marked ADDITIVE, and refuses it after one that is not."""
    url = _url(tmp_path)
    released = list(migrations.MIGRATIONS)
    additive = ("a newer release's additive step", [migrations.ADDITIVE, "ALTER TABLE pins ADD COLUMN later TEXT"])
    breaking = ("a newer release's step older ones cannot use", ["CREATE TABLE later_things (x INTEGER)"])

    async def open_as(steps: list) -> tuple[int, int]:
        monkeypatch.setattr(migrations, "MIGRATIONS", steps)
        db = Database(url)
        try:
            return await db.open()
        finally:
            monkeypatch.setattr(migrations, "MIGRATIONS", released)
            await db.close()

    latest = migrations.LATEST
    assert await open_as(released) == (0, latest)
    assert await open_as([*released, additive]) == (latest, latest + 1)  # the newer release migrates
    # this release opens it as it is and stores and reads pins in it
    db = Database(url)
    assert await db.open() == (latest + 1, latest + 1)
    from w3gate.store import pins

    async def store_and_count(h) -> int:
        cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
        await pins.create_pin(h, "substrate:0x01", pins.NewPin(cid=cid, name="n"), 1)
        return len(await connections.get(db.connection_name).execute_query_dict("SELECT id FROM pins"))

    assert await db.run(store_and_count) == 1
    await db.close()
    assert await open_as([*released, additive, breaking]) == (latest + 1, latest + 2)
    with pytest.raises(migrations.SchemaTooNew, match=f"needs a release that knows schema {latest + 2}"):
        await Database(url).open()
    # the newest release itself still opens it, and a release knowing the additive step does not
    assert await open_as([*released, additive, breaking]) == (latest + 2, latest + 2)
    with pytest.raises(migrations.SchemaTooNew):
        await open_as([*released, additive])


def test_min_compatible_is_the_last_step_not_marked_additive(monkeypatch) -> None:
    steps = [("a", ["x"]), ("b", [migrations.ADDITIVE, "y"]), ("c", ["z"]), ("d", [migrations.ADDITIVE, "w"])]
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    assert [migrations.min_compatible(v) for v in (1, 2, 3, 4)] == [1, 1, 3, 3]


@pytest.mark.skipif(bool(POSTGRES), reason="the service-level check runs in the SQLite pass; the rule is the same")
async def test_the_service_serves_on_a_newer_compatible_schema_and_will_not_start_on_an_incompatible_one(
        tmp_path, monkeypatch) -> None:
    """The same rule end to end: ``w3gate serve`` of this release on a database a newer release upgraded."""
    url = _url(tmp_path)
    released = list(migrations.MIGRATIONS)
    additive = ("a newer release's additive step", [migrations.ADDITIVE, "CREATE TABLE later_things (x INTEGER)"])
    breaking = ("a newer release's step older ones cannot use", ["ALTER TABLE pins ADD COLUMN later TEXT"])

    async def upgrade_as(steps: list) -> None:  # the newer release, in this process
        monkeypatch.setattr(migrations, "MIGRATIONS", steps)
        db = Database(url)
        try:
            await db.open()
        finally:
            monkeypatch.setattr(migrations, "MIGRATIONS", released)
            await db.close()

    await upgrade_as([*released, additive])
    (tmp_path / "a").mkdir()
    server = start_server_process(database_url=url, data_dir=tmp_path / "a")
    try:
        with server.client(substrate_token("//Alice")) as client:
            assert client.post("/pins", json={"cid": "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"}
                               ).status_code == 202
        assert f"is at schema {migrations.LATEST + 1}, newer than this release's {migrations.LATEST}" \
            in server.log_text()
    finally:
        assert server.stop() == 0
    await upgrade_as([*released, additive, breaking])
    (tmp_path / "b").mkdir()
    refused = f"exited with 2(.|\n)*needs a release that knows schema {migrations.LATEST + 2}"
    with pytest.raises(RuntimeError, match=refused):
        start_server_process(database_url=url, data_dir=tmp_path / "b")


OPEN_AT_ONCE = """
import sys, time, pathlib, trio
from w3gate.store.db import Database
go = pathlib.Path(sys.argv[2])
pathlib.Path(sys.argv[3]).touch()  # ready
while not go.exists():
    time.sleep(0.001)
async def main():
    db = Database(sys.argv[1])
    print(await db.open())
    await db.close()
trio.run(main)
"""


@pytest.mark.skipif(not POSTGRES, reason="several instances share PostgreSQL only")
def test_instances_starting_at_once_on_a_new_database_all_open_it(tmp_path) -> None:
    """systemd starts a fleet's units together: each process creates or upgrades the schema, one at a time."""
    url = database_url_for_test()
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, url, str(go), str(tmp_path / f"ready{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    while not all((tmp_path / f"ready{i}").exists() for i in range(4)) and all(p.poll() is None for p in procs):
        time.sleep(0.005)
    go.touch()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in results]
    opened = [out.strip() for out, _ in results]  # (before, after) each: the first found nothing
    assert f"(0, {migrations.LATEST})" in opened and all(o.endswith(f", {migrations.LATEST})") for o in opened)
