"""The key store against a real PostgreSQL: schema, first keys, rotation, shred."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from crypto.errors import KeyStoreError, TenantShredded
from crypto.master import MasterKeyRing
from crypto.store import CHANNEL, KeyStore, new_key_id
from tests.crypto.conftest import new_master, watch_text

ROOT = Path(__file__).resolve().parents[2]


async def test_init_schema_is_idempotent_and_concurrent_safe(fresh_db: str) -> None:
    cons = [await asyncpg.connect(fresh_db) for _ in range(4)]
    try:
        stores = [KeyStore(c) for c in cons]
        assert not await stores[0].schema_exists()
        created = await asyncio.gather(*(s.init_schema() for s in stores))
        assert sorted(created) == [False, False, False, True]
        assert await stores[0].init_schema() is False
        assert await stores[0].schema_exists()
        cols = await cons[0].fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'pgseal' AND table_name = 'keys' ORDER BY ordinal_position"
        )
        assert [r["column_name"] for r in cols] == [
            "key_id",
            "tenant",
            "kind",
            "version",
            "state",
            "master_key_id",
            "wrapped_key",
            "created_at",
            "retired_at",
            "destroyed_at",
        ]
    finally:
        for c in cons:
            await c.close()


async def test_uninitialised_store_says_what_to_do(fresh_db: str) -> None:
    con = await asyncpg.connect(fresh_db)
    try:
        with pytest.raises(KeyStoreError, match="pgseal keys init"):
            await KeyStore(con).active_keys("42")
    finally:
        await con.close()


async def test_first_keys_created_once(store: KeyStore, ring: MasterKeyRing) -> None:
    data, index = await store.ensure_tenant_keys("42", ring)
    assert (data.kind, data.version, data.state) == ("data", 1, "active")
    assert (index.kind, index.version, index.state) == ("index", 1, "active")
    assert data.master_key_id == ring.current.key_id
    assert data.wrapped_key is not None
    assert len(data.wrapped_key) == 61
    assert 0 < data.key_id < 2**63
    assert 0 < index.key_id < 2**63
    assert "wrapped_key" not in repr(data)
    again = await store.ensure_tenant_keys("42", ring)
    assert (again[0].key_id, again[1].key_id) == (data.key_id, index.key_id)
    active = await store.active_keys("42")
    assert {k: r.key_id for k, r in active.items()} == {
        "data": data.key_id,
        "index": index.key_id,
    }
    with pytest.raises(KeyStoreError, match="non-empty"):
        await store.ensure_tenant_keys("", ring)


async def test_concurrent_first_writes_make_one_key(keys_db: str, ring: MasterKeyRing) -> None:
    cons = [await asyncpg.connect(keys_db) for _ in range(8)]
    try:
        results = await asyncio.gather(
            *(KeyStore(c).ensure_tenant_keys("race", ring) for c in cons)
        )
        assert len({(d.key_id, i.key_id) for d, i in results}) == 1
        assert await cons[0].fetchval("SELECT count(*) FROM pgseal.keys") == 2
    finally:
        for c in cons:
            await c.close()


async def test_two_processes_first_write_make_one_key(keys_db: str) -> None:
    master = new_master()
    env = {**os.environ, "PGSEAL_TEST_MASTER": base64.b64encode(master._key).decode()}
    start_at = time.time() + 2.0  # both processes are up and connected by then
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.crypto.worker",
            "first-key",
            keys_db,
            "proc-race",
            str(start_at),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    for out, err in outputs:
        watch_text(out.decode() + err.decode())
    lines = [out.decode().strip() for out, _ in outputs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert lines[0].startswith("KEYS ")
    assert lines[0] == lines[1]
    con = await asyncpg.connect(keys_db)
    try:
        rows = await con.fetch("SELECT kind, version FROM pgseal.keys WHERE tenant = 'proc-race'")
    finally:
        await con.close()
    assert sorted((r["kind"], r["version"]) for r in rows) == [("data", 1), ("index", 1)]


async def test_rotate_tenant(store: KeyStore, ring: MasterKeyRing) -> None:
    data, index = await store.ensure_tenant_keys("42", ring)
    r1 = await store.rotate_tenant("42", ring)
    r2 = await store.rotate_tenant("42", ring)
    assert (r1.new_version, r2.new_version) == (2, 3)
    assert r1.old_key_ids == (data.key_id,)
    assert r2.old_key_ids == (data.key_id, r1.new_key_id)
    active = await store.active_keys("42")
    assert active["data"].key_id == r2.new_key_id
    assert active["index"].key_id == index.key_id  # never rotated
    states = {(k.kind, k.version): k.state for k in await store.list_keys("42")}
    assert states == {
        ("data", 1): "retired",
        ("data", 2): "retired",
        ("data", 3): "active",
        ("index", 1): "active",
    }
    [versions] = await store.key_versions("42")
    assert versions.current_key_id == r2.new_key_id
    assert versions.current_version == 3
    assert versions.old_key_ids == (data.key_id, r1.new_key_id)
    with pytest.raises(KeyStoreError, match="no keys yet"):
        await store.rotate_tenant("nobody", ring)


async def test_concurrent_rotations_serialise(keys_db: str, ring: MasterKeyRing) -> None:
    cons = [await asyncpg.connect(keys_db) for _ in range(4)]
    try:
        await KeyStore(cons[0]).ensure_tenant_keys("42", ring)
        results = await asyncio.gather(*(KeyStore(c).rotate_tenant("42", ring) for c in cons))
        assert sorted(r.new_version for r in results) == [2, 3, 4, 5]
        active = await cons[0].fetchval(
            "SELECT count(*) FROM pgseal.keys WHERE tenant = '42' AND state = 'active'"
        )
        assert active == 2  # one data, one index
    finally:
        for c in cons:
            await c.close()


async def test_one_active_key_is_a_database_invariant(store: KeyStore, keys_db: str) -> None:
    ring = MasterKeyRing([new_master()])
    data, _ = await store.ensure_tenant_keys("42", ring)
    con = await asyncpg.connect(keys_db)
    try:
        with pytest.raises(asyncpg.UniqueViolationError):
            await con.execute(
                "INSERT INTO pgseal.keys (key_id, tenant, kind, version, state,"
                " master_key_id, wrapped_key) SELECT $1, tenant, kind, 9, 'active',"
                " master_key_id, wrapped_key FROM pgseal.keys WHERE key_id = $2",
                new_key_id(),
                data.key_id,
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await con.execute(
                "UPDATE pgseal.keys SET state = 'destroyed' WHERE key_id = $1", data.key_id
            )
    finally:
        await con.close()


async def test_shred_tenant_removes_wrapped_bytes_and_notifies(
    store: KeyStore, ring: MasterKeyRing, keys_db: str
) -> None:
    await store.ensure_tenant_keys("gone", ring)
    await store.rotate_tenant("gone", ring)
    await store.ensure_tenant_keys("stays", ring)
    notices: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(keys_db)
    await listener.add_listener(CHANNEL, lambda *a: notices.put_nowait(str(a[3])))
    try:
        result = await store.shred_tenant("gone")
        assert len(result.destroyed_key_ids) == 3
        assert result.already_destroyed == 0
        notice = json.loads(await asyncio.wait_for(notices.get(), 5))
        assert notice["op"] == "shred"
        assert notice["tenant"] == "gone"
        assert sorted(notice["key_ids"]) == sorted(result.destroyed_key_ids)
        rows = await listener.fetch(
            "SELECT state, wrapped_key, destroyed_at FROM pgseal.keys WHERE tenant = 'gone'"
        )
        assert all(r["state"] == "destroyed" for r in rows)
        assert all(r["wrapped_key"] is None and r["destroyed_at"] is not None for r in rows)
        assert len(await store.active_keys("stays")) == 2
        again = await store.shred_tenant("gone")
        assert again.destroyed_key_ids == ()
        assert again.already_destroyed == 3
        with pytest.raises(TenantShredded, match="shredded"):
            await store.ensure_tenant_keys("gone", ring)
        with pytest.raises(TenantShredded):
            await store.rotate_tenant("gone", ring)
        await store.vacuum()
    finally:
        await listener.close()


async def test_rotate_notifies(store: KeyStore, ring: MasterKeyRing, keys_db: str) -> None:
    await store.ensure_tenant_keys("42", ring)
    notices: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(keys_db)
    await listener.add_listener(CHANNEL, lambda *a: notices.put_nowait(str(a[3])))
    try:
        await store.rotate_tenant("42", ring)
        notice = json.loads(await asyncio.wait_for(notices.get(), 5))
        assert (notice["op"], notice["tenant"]) == ("rotate", "42")
    finally:
        await listener.close()


async def test_list_and_usage(store: KeyStore, ring: MasterKeyRing) -> None:
    for t in ("b", "a"):
        await store.ensure_tenant_keys(t, ring)
    keys = await store.list_keys()
    assert [(k.tenant, k.kind) for k in keys] == [
        ("a", "data"),
        ("a", "index"),
        ("b", "data"),
        ("b", "index"),
    ]
    assert not hasattr(keys[0], "wrapped_key")
    assert await store.master_key_usage() == {ring.current.key_id: 4}
    assert await store.tenants() == ["a", "b"]
    assert store.queries > 0
    assert "queries=" in repr(store)


def test_new_key_ids_are_positive_63_bit() -> None:
    ids = {new_key_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(0 < i < 2**63 for i in ids)
    assert max(ids) > 2**60  # drawn from the whole range
