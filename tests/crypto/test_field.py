"""FieldCrypto against a real PostgreSQL: the interface the proxy uses."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from crypto.envelope import peek_key_id
from crypto.errors import (
    EnvelopeMalformed,
    EnvelopeTampered,
    KeyDestroyed,
    TenantShredded,
    UnknownKey,
    WrongTenant,
)
from crypto.field import FieldCrypto
from crypto.master import MasterKeyRing
from crypto.store import KeyStore
from tests.crypto.conftest import new_master, unwrap_all, watch_secret, watch_text

ROOT = Path(__file__).resolve().parents[2]
PHONE = "public.customers.phone"
TAX = "public.customers.tax_id"


async def wait_until(predicate: Callable[[], bool], limit: float = 2.0) -> float:
    """Poll ``predicate()`` until true; return the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > limit:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def test_seal_and_open(facade: FieldCrypto, keys_db: str, ring: MasterKeyRing) -> None:
    values = [b"", b"1", "Åsa Öberg-Østergård".encode(), b"\xff\x00\xfe", os.urandom(3 << 20)]
    for v in values[1:4]:
        watch_secret(v)
    envelopes = [await facade.seal_for("42", PHONE, v) for v in values]
    assert len({peek_key_id(e) for e in envelopes}) == 1
    for v, e in zip(values, envelopes, strict=True):
        if len(v) >= 6:  # a shorter value turns up in random ciphertext by chance
            assert v not in e[21:]
        assert await facade.open_for(PHONE, e) == v
        assert await facade.open_for(PHONE, e, tenant="42") == v
        assert facade.try_open_cached(PHONE, e, tenant="42") == v
    assert facade.try_seal_cached("42", PHONE, b"x") is not None
    assert facade.try_seal_cached("43", PHONE, b"x") is None
    await unwrap_all(keys_db, ring)
    stats = facade.stats()
    assert stats.hits > 10
    assert stats.loads == 1
    assert stats.listening


async def test_sync_paths_on_a_cold_cache(facade: FieldCrypto, keys_db: str) -> None:
    envelope = await facade.seal_for("42", PHONE, b"555-0100")
    cold = await FieldCrypto.connect(keys_db, facade.cache.masters, listen=False)
    try:
        assert cold.try_open_cached(PHONE, envelope) is None
        assert cold.try_seal_cached("42", PHONE, b"x") is None
        assert cold.try_blind_index_cached("42", TAX, b"x") is None
        await cold.prefetch([peek_key_id(envelope)])
        assert cold.try_open_cached(PHONE, envelope) == b"555-0100"
        await cold.prefetch_tenant("42")
        sealed = cold.try_seal_cached("42", PHONE, b"555-0199")
        assert sealed is not None
        assert await facade.open_for(PHONE, sealed) == b"555-0199"
        assert cold.try_blind_index_cached("42", TAX, b"x") == await facade.blind_index(
            "42", TAX, b"x"
        )
    finally:
        await cold.close()


async def test_seal_many_cached_is_one_seal_per_field(facade: FieldCrypto, keys_db: str) -> None:
    cold = await FieldCrypto.connect(keys_db, facade.cache.masters, listen=False)
    try:
        assert cold.try_seal_many_cached("42", [PHONE, TAX], [b"a", b"b"]) is None
        await cold.prefetch_tenant("42")
        hits = cold.hits
        sealed = cold.try_seal_many_cached("42", [PHONE, TAX, PHONE], [b"555-0100", b"T1", b""])
        assert sealed is not None
        assert cold.hits - hits == 3
        assert [
            await facade.open_for(c, e) for c, e in zip([PHONE, TAX, PHONE], sealed, strict=True)
        ] == [
            b"555-0100",
            b"T1",
            b"",
        ]
        with pytest.raises(EnvelopeTampered):  # each bound to its own column
            await facade.open_for(PHONE, sealed[1])
        with pytest.raises(WrongTenant):
            await facade.open_for(PHONE, sealed[0], tenant="43")
    finally:
        await cold.close()


async def test_errors_through_the_facade(facade: FieldCrypto) -> None:
    envelope = await facade.seal_for("42", PHONE, b"555-0100")
    with pytest.raises(EnvelopeTampered):
        await facade.open_for(TAX, envelope)
    with pytest.raises(EnvelopeTampered):
        facade.try_open_cached(PHONE, envelope[:-1] + bytes([envelope[-1] ^ 0x80]))
    with pytest.raises(EnvelopeMalformed):
        await facade.open_for(PHONE, b"555-0100")
    with pytest.raises(EnvelopeMalformed):
        facade.try_open_cached(PHONE, b"\x02" + envelope[1:])
    with pytest.raises(UnknownKey):
        await facade.open_for(PHONE, envelope[:1] + (12345).to_bytes(8, "big") + envelope[9:])


async def test_wrong_tenant_is_refused(facade: FieldCrypto, keys_db: str) -> None:
    a = await facade.seal_for("a", PHONE, b"tenant-a-phone")
    await facade.seal_for("b", PHONE, b"tenant-b-phone")
    watch_secret(b"tenant-a-phone")
    with pytest.raises(WrongTenant) as info:
        await facade.open_for(PHONE, a, tenant="b")
    assert info.value.sqlstate == "42501"
    assert "'b'" in str(info.value)
    with pytest.raises(WrongTenant):
        facade.try_open_cached(PHONE, a, tenant="b")
    # A cold cache refuses too (the check is after loading, before decrypting).
    cold = await FieldCrypto.connect(keys_db, facade.cache.masters, listen=False)
    try:
        with pytest.raises(WrongTenant):
            await cold.open_for(PHONE, a, tenant="b")
        assert await cold.open_for(PHONE, a, tenant="a") == b"tenant-a-phone"
    finally:
        await cold.close()


async def test_relabelled_with_another_tenants_key_id_fails(facade: FieldCrypto) -> None:
    a = await facade.seal_for("a", PHONE, b"tenant-a-phone")
    b = await facade.seal_for("b", PHONE, b"tenant-b-phone")
    relabelled = a[:1] + b[1:9] + a[9:]
    with pytest.raises(EnvelopeTampered):
        await facade.open_for(PHONE, relabelled, tenant="b")
    with pytest.raises(EnvelopeTampered):
        await facade.open_for(PHONE, relabelled)


async def test_concurrent_first_writes_one_key(keys_db: str, ring: MasterKeyRing) -> None:
    one = await FieldCrypto.connect(keys_db, ring, listen=False)
    two = await FieldCrypto.connect(keys_db, ring, listen=False)
    try:
        sealed = await asyncio.gather(
            *(fc.seal_for("new-tenant", PHONE, b"v") for fc in (one, two) for _ in range(10))
        )
        assert len({peek_key_id(e) for e in sealed}) == 1
        keys = await one.store.list_keys("new-tenant")
        assert [(k.kind, k.version) for k in keys] == [("data", 1), ("index", 1)]
        assert one.cache.loads == 1
        assert two.cache.loads == 1
    finally:
        await one.close()
        await two.close()


async def test_hundred_cold_opens_one_query(facade: FieldCrypto, keys_db: str) -> None:
    envelope = await facade.seal_for("42", PHONE, b"555-0100")
    con = await asyncpg.connect(keys_db)
    seen: list[str] = []
    con.add_query_logger(lambda record: seen.append(record.query))
    try:
        from crypto.cache import TenantKeyCache

        cold = FieldCrypto(TenantKeyCache(KeyStore(con), facade.cache.masters))
        results = await asyncio.gather(*(cold.open_for(PHONE, envelope) for _ in range(100)))
        assert results == [b"555-0100"] * 100
        key_queries = [q for q in seen if "pgseal.keys" in q]
        assert len(key_queries) == 1, key_queries
        assert cold.cache.loads == 1
        assert cold.stats().misses == 100
        # Warm now: no more queries, and the sync path hits.
        assert await cold.open_for(PHONE, envelope) == b"555-0100"
        assert cold.try_open_cached(PHONE, envelope) == b"555-0100"
        assert len([q for q in seen if "pgseal.keys" in q]) == 1
        await cold.cache.close()
    finally:
        await con.close()


async def test_blind_index_survives_rotation_and_reseal(
    facade: FieldCrypto, store: KeyStore
) -> None:
    before = await facade.blind_index("42", TAX, b"DE123456789")
    norm = await facade.blind_index("42", TAX, b" de123456789 ", ["trim", "casefold"])
    old = await facade.seal_for("42", TAX, b"DE123456789")
    rotation = await store.rotate_tenant("42", facade.cache.masters)
    # The rotate notice reaches this process's listener and drops the active key.
    await wait_until(lambda: facade.try_seal_cached("42", TAX, b"x") is None)
    new = await facade.seal_for("42", TAX, b"DE123456789")
    assert peek_key_id(old) != peek_key_id(new) == rotation.new_key_id
    assert await facade.open_for(TAX, old, tenant="42") == b"DE123456789"
    assert await facade.open_for(TAX, new, tenant="42") == b"DE123456789"
    assert await facade.blind_index("42", TAX, b"DE123456789") == before
    assert await facade.blind_index("42", TAX, b"de123456789", ["trim", "casefold"]) == norm
    # What a re-encryption job needs, and its one step.
    [versions] = await facade.key_versions("42")
    assert versions.current_key_id == rotation.new_key_id
    assert versions.old_key_ids == (peek_key_id(old),)
    moved = await facade.reseal(TAX, old, tenant="42")
    assert moved is not None
    assert peek_key_id(moved) == rotation.new_key_id
    assert await facade.open_for(TAX, moved) == b"DE123456789"
    assert await facade.reseal(TAX, moved) is None


async def test_shred_makes_values_unreadable(facade: FieldCrypto, store: KeyStore) -> None:
    envelope = await facade.seal_for("doomed", PHONE, b"doomed-phone")
    await facade.seal_for("other", PHONE, b"x")
    assert facade.try_open_cached(PHONE, envelope) == b"doomed-phone"
    await store.shred_tenant("doomed")
    took = await wait_until(lambda: facade.try_open_cached(PHONE, envelope) is None)
    assert took < 1.0
    with pytest.raises(KeyDestroyed, match="destroyed") as info:
        await facade.open_for(PHONE, envelope)
    assert info.value.sqlstate == "55000"
    # Another tenant's session learns nothing about the shredded tenant.
    with pytest.raises(WrongTenant):
        await facade.open_for(PHONE, envelope, tenant="other")
    with pytest.raises(KeyDestroyed):
        await facade.open_for(PHONE, envelope, tenant="doomed")
    with pytest.raises(TenantShredded):
        await facade.seal_for("doomed", PHONE, b"new value")
    with pytest.raises(TenantShredded):
        await facade.blind_index("doomed", TAX, b"v")


async def test_shred_in_another_process_within_one_second(keys_db: str, store: KeyStore) -> None:
    master = new_master()
    ring = MasterKeyRing([master])
    here = await FieldCrypto.connect(keys_db, ring)
    try:
        envelope = await here.seal_for("cross", PHONE, b"cross-process-secret")
        watch_secret(b"cross-process-secret")
        env = {**os.environ, "PGSEAL_TEST_MASTER": base64.b64encode(master._key).decode()}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.crypto.worker",
            "watch",
            keys_db,
            PHONE,
            envelope.hex(),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            ready = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert ready.strip() == b"READY", ready
            started = time.monotonic()
            await store.shred_tenant("cross")  # commits, which delivers the NOTIFY
            dropped = await asyncio.wait_for(proc.stdout.readline(), 5)
            elapsed = time.monotonic() - started
            assert dropped.strip() == b"DROPPED", dropped
            print(f"process B dropped its cached key {elapsed * 1000:.1f} ms after the shred")
            assert elapsed < 1.0, f"process B dropped its key after {elapsed:.3f} s"
            destroyed = await asyncio.wait_for(proc.stdout.readline(), 10)
            assert destroyed.startswith(b"DESTROYED"), destroyed
            watch_text(destroyed.decode())
            # And this process (A) dropped its copy too.
            await wait_until(lambda: here.try_open_cached(PHONE, envelope) is None, 1.0)
        finally:
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            watch_text(out.decode() + err.decode())
        assert proc.returncode == 0, err.decode()
    finally:
        await here.close()
