"""TenantKeyCache: single flight, TTL, size bound, prefetch, revocation, failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import asyncpg
import pytest

from crypto.cache import TenantKeyCache
from crypto.envelope import peek_key_id
from crypto.errors import KeyDestroyed, KeyUnwrapFailed, MasterKeyUnavailable, UnknownKey
from crypto.field import FieldCrypto
from crypto.master import MasterKeyRing
from crypto.store import KeyRecord, KeyStore
from tests.crypto.conftest import new_master, watch_text

PHONE = "public.customers.phone"


async def sealed_values(
    store: KeyStore, ring: MasterKeyRing, tenants: Iterable[str]
) -> list[bytes]:
    writer = FieldCrypto(TenantKeyCache(store, ring))
    out = [await writer.seal_for(t, PHONE, f"phone of {t}".encode()) for t in tenants]
    await writer.cache.close()
    return out


async def test_ttl_expiry_reloads(store: KeyStore, ring: MasterKeyRing) -> None:
    [envelope] = await sealed_values(store, ring, ["42"])
    cache = TenantKeyCache(store, ring, ttl_seconds=0.3, max_keys=10)
    fc = FieldCrypto(cache)
    try:
        assert await fc.open_for(PHONE, envelope) == b"phone of 42"
        assert cache.loads == 1
        assert fc.try_open_cached(PHONE, envelope) == b"phone of 42"
        await asyncio.sleep(0.6)
        assert fc.try_open_cached(PHONE, envelope) is None  # expired
        assert cache.cached_data_key(peek_key_id(envelope)) is None
        assert len(cache._keys) == 0
        assert await fc.open_for(PHONE, envelope) == b"phone of 42"
        assert cache.loads == 2  # reloaded from the store
        await fc.prefetch_tenant("42")
        await asyncio.sleep(0.6)
        assert fc.try_seal_cached("42", PHONE, b"x") is None
        assert fc.try_blind_index_cached("42", PHONE, b"x") is None
    finally:
        await cache.close()


async def test_size_bound_keeps_the_mirror_in_step(store: KeyStore, ring: MasterKeyRing) -> None:
    envelopes = await sealed_values(store, ring, ["a", "b", "c", "d"])
    cache = TenantKeyCache(store, ring, max_keys=2)
    fc = FieldCrypto(cache)
    try:
        for e in envelopes:
            await fc.open_for(PHONE, e)
        assert len(cache._keys) == 2
        assert len(cache.hot_keys) == 2
        # The least recently used (a, b) were evicted from both; c, d are hits.
        assert [fc.try_open_cached(PHONE, e) is not None for e in envelopes] == [
            False,
            False,
            True,
            True,
        ]
        assert await fc.open_for(PHONE, envelopes[0]) == b"phone of a"
        assert cache.loads == 5
    finally:
        await cache.close()


async def test_prefetch_is_one_query_and_tolerates_bad_ids(
    keys_db: str, store: KeyStore, ring: MasterKeyRing
) -> None:
    envelopes = await sealed_values(store, ring, [f"t{i}" for i in range(5)])
    await store.shred_tenant("t4")
    con = await asyncpg.connect(keys_db)
    seen: list[str] = []
    con.add_query_logger(lambda r: seen.append(r.query))
    cache = TenantKeyCache(KeyStore(con), ring)
    fc = FieldCrypto(cache)
    try:
        ids = [peek_key_id(e) for e in envelopes] + [424242]
        assert await fc.prefetch(ids) == {424242}  # the shredded one is not "unknown"
        assert len([q for q in seen if "pgseal.keys" in q]) == 1
        for i, e in enumerate(envelopes[:4]):
            assert fc.try_open_cached(PHONE, e) == f"phone of t{i}".encode()
        with pytest.raises(KeyDestroyed):  # remembered: no second query
            await fc.open_for(PHONE, envelopes[4])
        assert len([q for q in seen if "pgseal.keys" in q]) == 1
        with pytest.raises(UnknownKey):
            await cache.data_key(424242)
        await fc.prefetch(ids[:4])  # all cached: nothing to do
        assert len([q for q in seen if "pgseal.keys" in q]) == 2
    finally:
        await cache.close()
        await con.close()


class SlowStore(KeyStore):
    """A real store whose key fetch waits for the test to let it go."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def fetch_keys(self, key_ids: Iterable[int]) -> list[KeyRecord]:
        self.started.set()
        await self.release.wait()
        return await super().fetch_keys(key_ids)


async def test_load_racing_an_invalidation_is_not_cached(
    keys_db: str, store: KeyStore, ring: MasterKeyRing
) -> None:
    [envelope] = await sealed_values(store, ring, ["42"])
    pool = await asyncpg.create_pool(keys_db, min_size=1, max_size=2)
    slow = SlowStore(pool)
    cache = TenantKeyCache(slow, ring)
    try:
        kid = peek_key_id(envelope)
        waiter = asyncio.ensure_future(cache.data_key(kid))
        await slow.started.wait()
        cache.forget_tenant("42")  # e.g. a rotate/shred notice arrives mid-load
        slow.release.set()
        key = await waiter
        assert key.key_id == kid  # the caller still gets its answer ...
        assert cache.cached_data_key(kid) is None  # ... but it is not cached
        # A prefetch racing the same way reports the key as held, merely uncached:
        # the proxy must not remember it as missing (XX001 for every reader).
        slow.started.clear()
        slow.release.clear()
        prefetch = asyncio.ensure_future(cache.prefetch([kid]))
        await slow.started.wait()
        cache.forget_tenant("42")
        slow.release.set()
        assert await prefetch == frozenset()
        assert cache.cached_data_key(kid) is None
    finally:
        await cache.close()
        await pool.close()


async def test_cancelled_caller_does_not_cancel_the_shared_load(
    keys_db: str, store: KeyStore, ring: MasterKeyRing
) -> None:
    [envelope] = await sealed_values(store, ring, ["42"])
    pool = await asyncpg.create_pool(keys_db, min_size=1, max_size=2)
    slow = SlowStore(pool)
    cache = TenantKeyCache(slow, ring)
    try:
        kid = peek_key_id(envelope)
        first = asyncio.ensure_future(cache.data_key(kid))
        second = asyncio.ensure_future(cache.data_key(kid))
        await slow.started.wait()
        first.cancel()
        slow.release.set()
        assert (await second).key_id == kid
        assert first.cancelled()
        assert cache.loads == 1
    finally:
        await cache.close()
        await pool.close()


async def test_unwrap_failures(keys_db: str, store: KeyStore, ring: MasterKeyRing) -> None:
    a, b = await sealed_values(store, ring, ["a", "b"])
    # Another process's ring without this master key cannot open anything.
    stranger = TenantKeyCache(store, MasterKeyRing([new_master()]))
    with pytest.raises(MasterKeyUnavailable, match=ring.current.key_id) as info:
        await stranger.data_key(peek_key_id(a))
    assert info.value.sqlstate == "F0000"
    # A wrapped key copied onto another row does not unwrap there.
    con = await asyncpg.connect(keys_db)
    try:
        await con.execute(
            "UPDATE pgseal.keys SET wrapped_key = (SELECT wrapped_key FROM pgseal.keys"
            " WHERE key_id = $1) WHERE key_id = $2",
            peek_key_id(a),
            peek_key_id(b),
        )
    finally:
        await con.close()
    cache = TenantKeyCache(store, ring)
    with pytest.raises(KeyUnwrapFailed, match=str(peek_key_id(b))):
        await cache.data_key(peek_key_id(b))
    assert cache.load_errors == 1
    await cache.close()
    await stranger.close()


async def test_store_failure_reaches_every_waiter(ring: MasterKeyRing, keys_db: str) -> None:
    con = await asyncpg.connect(keys_db)
    await con.close()  # every statement on it now fails
    cache = TenantKeyCache(KeyStore(con), ring)
    results = await asyncio.gather(*(cache.data_key(7) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, asyncpg.InterfaceError) for r in results)
    assert cache.loads == 1
    with pytest.raises(asyncpg.InterfaceError):
        await cache.prefetch([8])
    await cache.close()


async def test_notifications(
    store: KeyStore, ring: MasterKeyRing, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await sealed_values(store, ring, ["a", "b"])
    cache = TenantKeyCache(store, ring)
    fc = FieldCrypto(cache)
    try:
        await fc.prefetch([peek_key_id(a), peek_key_id(b)])
        await fc.prefetch_tenant("a")
        cache.apply_notification('{"op": "rotate", "tenant": "a", "key_ids": []}')
        assert fc.try_seal_cached("a", PHONE, b"x") is None  # active pointer gone
        assert fc.try_open_cached(PHONE, a) is not None  # old key still usable
        held = cache.cached_data_key(peek_key_id(a))
        assert held is not None
        assert held._timer is not None
        cache.apply_notification(f'{{"op": "shred", "tenant": "a", "key_ids": [{peek_key_id(a)}]}}')
        assert fc.try_open_cached(PHONE, a) is None
        assert held._timer is None  # no expiry timer keeps the shredded key alive
        assert cache.destroyed_owner(peek_key_id(a)) == "a"
        assert fc.try_open_cached(PHONE, b) is not None
        with caplog.at_level(logging.WARNING, logger="pgseal.crypto.cache"):
            cache.apply_notification("{not json")
        assert "flushing" in caplog.text
        assert fc.try_open_cached(PHONE, b) is None  # flushed everything
        await fc.prefetch([peek_key_id(b)])
        cache.apply_notification('{"op": "flush"}')
        assert fc.try_open_cached(PHONE, b) is None
        assert cache.invalidations == 4
    finally:
        await cache.close()


async def test_listener_reconnects_and_flushes(
    keys_db: str, store: KeyStore, ring: MasterKeyRing
) -> None:
    [envelope, other] = await sealed_values(store, ring, ["42", "43"])
    cache = TenantKeyCache(store, ring)
    fc = FieldCrypto(cache)
    await cache.listen(keys_db)
    try:
        assert cache.stats().listening
        await fc.open_for(PHONE, envelope)
        assert cache._listener is not None
        assert cache._listener._con is not None
        pid = cache._listener._con.get_server_pid()
        admin = await asyncpg.connect(keys_db)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        # The lost connection flushes the cache (notices may be missed) ...
        for _ in range(200):
            if fc.try_open_cached(PHONE, envelope) is None and cache.stats().listening:
                break
            await asyncio.sleep(0.01)
        assert fc.try_open_cached(PHONE, envelope) is None
        assert cache.stats().listening  # ... and it is listening again
        assert cache._listener._con.get_server_pid() != pid
        # Revocation works over the new connection.
        await fc.open_for(PHONE, other)
        await store.shred_tenant("43")
        for _ in range(100):
            if fc.try_open_cached(PHONE, other) is None:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(KeyDestroyed):
            await fc.open_for(PHONE, other)
    finally:
        await cache.close()
    assert not cache.stats().listening


async def test_configuration_and_repr(store: KeyStore, ring: MasterKeyRing) -> None:
    with pytest.raises(ValueError, match="ttl_seconds"):
        TenantKeyCache(store, ring, ttl_seconds=0)
    with pytest.raises(ValueError, match="max_keys"):
        TenantKeyCache(store, ring, max_keys=0)
    cache = TenantKeyCache(store, ring, ttl_seconds=12, max_keys=34)
    await cache.tenant_keys("42")
    text = repr(cache) + repr(FieldCrypto(cache))
    watch_text(text)
    assert "ttl=12.0" in text
    assert "max_keys=34" in text
    assert "cached_keys=1" in text
    await cache.close()
