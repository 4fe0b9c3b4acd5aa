"""TenantKeyCache: decrypted tenant keys in process memory, for a bounded time.

* **Authority**: ``cachetools.TTLCache`` maps (TTL 300 s and ``max_keys`` by
  default, both configurable): key id -> :class:`DataKey`, tenant -> active data
  key, tenant -> :class:`IndexKey`. Nothing is ever persisted.
* **Hot path**: ``TTLCache.__getitem__`` costs about as much as an AES-GCM
  decrypt of a short field, so each map has a plain-dict mirror read by the
  synchronous fast paths (:meth:`TenantKeyCache.cached_data_key` and the
  facade's ``try_*`` methods). Every removal from a TTLCache (size eviction,
  invalidation) removes the mirror entry too, and every cached key arms an
  event-loop timer for its TTL that removes it from the mirrors, so a lookup
  is a bare dict hit with no clock read and the mirror never outlives the TTL.
* **Single flight**: concurrent misses for one key id (or one tenant) share one
  load; the load runs as its own task, so a cancelled caller does not cancel it
  for the others. A miss is one store statement; :meth:`prefetch` loads many
  ids in one statement.
* **Revocation**: a dedicated asyncpg connection LISTENs on ``pgseal_keys``.
  Shred drops the tenant's keys and remembers the ids as destroyed; rotate
  drops the tenant's active-key pointer; anything unparseable flushes all. A
  load that raced with an invalidation is not cached (generation counter). If
  the listening connection is lost, the cache is flushed, and flushed again
  once it reconnects (notices may have been missed in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
from cachetools import TTLCache

from crypto.blind_index import IndexKey
from crypto.envelope import DataKey, key_id_bytes
from crypto.errors import CryptoError, KeyDestroyed, KeyStoreError, UnknownKey
from crypto.master import MasterKeyRing
from crypto.store import CHANNEL, KeyRecord, KeyStore

__all__ = ["DEFAULT_MAX_KEYS", "DEFAULT_TTL_SECONDS", "CacheStats", "TenantKeyCache"]

log = logging.getLogger("pgseal.crypto.cache")

DEFAULT_TTL_SECONDS = 300.0
DEFAULT_MAX_KEYS = 10_000

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class _ReportingTTLCache(TTLCache[K, V], Generic[K, V]):
    """A TTLCache that reports every entry it drops by itself (expiry, size)."""

    def __init__(self, maxsize: int, ttl: float, on_remove: Callable[[K], object]) -> None:
        super().__init__(maxsize, ttl, timer=time.monotonic)
        self._on_remove = on_remove

    def popitem(self) -> tuple[K, V]:
        key, value = super().popitem()
        self._on_remove(key)
        return key, value

    def expire(self, time: float | None = None) -> list[tuple[K, V]]:
        expired = super().expire(time)
        for key, _ in expired:
            self._on_remove(key)
        return expired


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters for metrics (monotonic since start) and current sizes."""

    hits: int
    misses: int
    loads: int
    load_errors: int
    invalidations: int
    cached_keys: int
    cached_tenants: int
    listening: bool


def _retrieved(fut: asyncio.Future[Any]) -> None:
    # Mark an exception as seen so an unawaited future does not log at GC.
    if not fut.cancelled():
        fut.exception()


class TenantKeyCache:
    """Process-local cache of unwrapped tenant keys, loaded from a KeyStore."""

    def __init__(
        self,
        store: KeyStore,
        masters: MasterKeyRing,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if ttl_seconds <= 0 or max_keys < 1:
            raise ValueError("key cache ttl_seconds must be > 0 and max_keys >= 1")
        self.store = store
        self.masters = masters
        self.ttl = float(ttl_seconds)
        self.max_keys = max_keys
        # Hot mirrors; never rebound (the facade keeps references to them).
        self.hot_keys: dict[bytes, DataKey] = {}
        self.hot_active: dict[str, DataKey] = {}
        self.hot_index: dict[str, IndexKey] = {}
        self._keys: _ReportingTTLCache[int, DataKey] = _ReportingTTLCache(
            max_keys, self.ttl, self._unmirror_key
        )
        self._active: _ReportingTTLCache[str, DataKey] = _ReportingTTLCache(
            max_keys, self.ttl, self._unmirror_active
        )
        self._index: _ReportingTTLCache[str, IndexKey] = _ReportingTTLCache(
            max_keys, self.ttl, self._unmirror_index
        )
        # Shredding is final, so remembering it (key id -> tenant) is always safe.
        self._destroyed: TTLCache[int, str] = TTLCache(max_keys, self.ttl, timer=time.monotonic)
        self._flights_ids: dict[int, asyncio.Future[DataKey]] = {}
        self._flights_tenants: dict[str, asyncio.Future[tuple[DataKey, IndexKey]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._generation = 0
        self.hits = 0
        self.misses = 0
        self.loads = 0
        self.load_errors = 0
        self.invalidations = 0
        self._listener: _KeyChangeListener | None = None

    def __repr__(self) -> str:
        return (
            f"TenantKeyCache(ttl={self.ttl}, max_keys={self.max_keys}, "
            f"cached_keys={len(self.hot_keys)}, hits={self.hits}, misses={self.misses})"
        )

    # -- synchronous lookups --------------------------------------------------

    def cached_data_key(self, key_id: int) -> DataKey | None:
        return self.hot_keys.get(key_id_bytes(key_id))

    def destroyed_owner(self, key_id: int) -> str | None:
        """The tenant of a key id known to be destroyed, else None."""
        return self._destroyed.get(key_id)

    def stats(self) -> CacheStats:
        return CacheStats(
            hits=self.hits,
            misses=self.misses,
            loads=self.loads,
            load_errors=self.load_errors,
            invalidations=self.invalidations,
            cached_keys=len(self.hot_keys),
            cached_tenants=len(self.hot_active),
            listening=self._listener is not None and self._listener.connected,
        )

    # -- filling --------------------------------------------------------------

    def _arm(self, key: DataKey | IndexKey) -> None:
        # Re-arming replaces the old timer, so a callback only ever fires for
        # the latest insertion of this key object.
        if isinstance(key._timer, asyncio.TimerHandle):
            key._timer.cancel()
        key._timer = asyncio.get_running_loop().call_later(self.ttl, self._expire_hot, key)

    def _expire_hot(self, key: DataKey | IndexKey) -> None:
        key._timer = None
        if isinstance(key, DataKey):
            if self.hot_keys.get(key.id_bytes) is key:
                del self.hot_keys[key.id_bytes]
            if self.hot_active.get(key.tenant) is key:
                del self.hot_active[key.tenant]
        elif self.hot_index.get(key.tenant) is key:
            del self.hot_index[key.tenant]
        for cache in (self._keys, self._active, self._index):
            cache.expire()

    def _put_data_key(self, key: DataKey) -> None:
        self._arm(key)
        self._keys[key.key_id] = key
        replaced = self.hot_keys.get(key.id_bytes)
        self.hot_keys[key.id_bytes] = key
        self._release(replaced)

    def _put_tenant(self, data: DataKey, index: IndexKey) -> None:
        self._put_data_key(data)
        self._arm(index)
        self._active[data.tenant] = data
        self._index[index.tenant] = index
        replaced = (self.hot_active.get(data.tenant), self.hot_index.get(index.tenant))
        self.hot_active[data.tenant] = data
        self.hot_index[index.tenant] = index
        for old in replaced:
            self._release(old)

    def _unwrap(self, rec: KeyRecord) -> bytearray:
        if rec.wrapped_key is None:  # destroyed rows carry no key
            raise KeyDestroyed(rec.key_id, rec.tenant)
        return self.masters.unwrap(
            rec.master_key_id,
            rec.wrapped_key,
            key_id=rec.key_id,
            tenant=rec.tenant,
            kind=rec.kind,
            version=rec.version,
        )

    def _data_key(self, rec: KeyRecord) -> DataKey:
        material = self._unwrap(rec)
        try:
            return DataKey(rec.key_id, rec.tenant, rec.version, material)
        finally:
            material[:] = bytes(len(material))

    def _index_key(self, rec: KeyRecord) -> IndexKey:
        material = self._unwrap(rec)
        try:
            return IndexKey(rec.key_id, rec.tenant, rec.version, material)
        finally:
            material[:] = bytes(len(material))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_id_loads(self, key_ids: list[int]) -> None:
        loop = asyncio.get_running_loop()
        futures: dict[int, asyncio.Future[DataKey]] = {}
        for kid in key_ids:
            fut: asyncio.Future[DataKey] = loop.create_future()
            fut.add_done_callback(_retrieved)
            futures[kid] = fut
            self._flights_ids[kid] = fut
        self._spawn(self._load_ids(futures))

    async def _load_ids(self, futures: dict[int, asyncio.Future[DataKey]]) -> None:
        generation = self._generation
        try:
            self.loads += 1
            records = {r.key_id: r for r in await self.store.fetch_keys(futures)}
            for kid, fut in futures.items():
                rec = records.get(kid)
                try:
                    if rec is None or rec.kind != "data":
                        raise UnknownKey(kid)
                    if rec.state == "destroyed":
                        self._destroyed[kid] = rec.tenant
                        raise KeyDestroyed(kid, rec.tenant)
                    key = self._data_key(rec)
                except CryptoError as exc:
                    self.load_errors += 1
                    fut.set_exception(exc)
                    continue
                if generation == self._generation:
                    self._put_data_key(key)
                fut.set_result(key)
        except BaseException as exc:  # the store failed: every waiter learns why
            self.load_errors += 1
            for fut in futures.values():
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            for kid, fut in futures.items():
                if self._flights_ids.get(kid) is fut:
                    del self._flights_ids[kid]

    async def data_key(self, key_id: int) -> DataKey:
        """The data key for ``key_id``: cached, or loaded once however many ask."""
        key = self.cached_data_key(key_id)
        if key is not None:
            return key
        owner = self._destroyed.get(key_id)
        if owner is not None:
            raise KeyDestroyed(key_id, owner)
        if key_id not in self._flights_ids:
            self._start_id_loads([key_id])
        return await asyncio.shield(self._flights_ids[key_id])

    async def prefetch(self, key_ids: Iterable[int]) -> frozenset[int]:
        """Load every uncached id in one statement; returns the ids the store
        does not hold. Destroyed ids are left for the open that needs them to
        report; store failures raise. A key that loaded but was not cached (an
        invalidation raced the load) is not unknown: the next open loads it again."""
        wanted = set(key_ids)
        missing = [
            kid
            for kid in wanted
            if self.cached_data_key(kid) is None
            and kid not in self._flights_ids
            and kid not in self._destroyed
        ]
        if missing:
            self._start_id_loads(missing)
        waiting = [self._flights_ids[k] for k in wanted if k in self._flights_ids]
        results = await asyncio.gather(*map(asyncio.shield, waiting), return_exceptions=True)
        unknown: set[int] = set()
        for result in results:
            if isinstance(result, UnknownKey):
                unknown.add(result.key_id)
            elif isinstance(result, BaseException) and not isinstance(result, CryptoError):
                raise result
        return frozenset(unknown)

    async def _load_tenant(
        self, tenant: str, fut: asyncio.Future[tuple[DataKey, IndexKey]]
    ) -> None:
        generation = self._generation
        try:
            self.loads += 1
            active = await self.store.active_keys(tenant)
            data_rec, index_rec = active.get("data"), active.get("index")
            if data_rec is None or index_rec is None:  # first write for this tenant
                data_rec, index_rec = await self.store.ensure_tenant_keys(tenant, self.masters)
            pair = (self._data_key(data_rec), self._index_key(index_rec))
            if generation == self._generation:
                self._put_tenant(*pair)
            fut.set_result(pair)
        except BaseException as exc:
            self.load_errors += 1
            fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if self._flights_tenants.get(tenant) is fut:
                del self._flights_tenants[tenant]

    async def tenant_keys(self, tenant: str) -> tuple[DataKey, IndexKey]:
        """The tenant's active data key and index key, creating them on first use."""
        data = self.hot_active.get(tenant)
        index = self.hot_index.get(tenant)
        if data is not None and index is not None:
            return data, index
        fut = self._flights_tenants.get(tenant)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            fut.add_done_callback(_retrieved)
            self._flights_tenants[tenant] = fut
            self._spawn(self._load_tenant(tenant, fut))
        return await asyncio.shield(fut)

    # -- invalidation ---------------------------------------------------------

    def _bump(self) -> None:
        self._generation += 1
        self.invalidations += 1

    def clear(self) -> None:
        """Forget every cached key (listener lost, flush notice, shutdown)."""
        self._bump()
        held: list[DataKey | IndexKey] = [*self.hot_keys.values(), *self.hot_active.values()]
        held += self.hot_index.values()
        for cache in (self._keys, self._active, self._index):
            cache.clear()
        self.hot_keys.clear()
        self.hot_active.clear()
        self.hot_index.clear()
        for key in held:
            self._release(key)

    def forget_tenant(self, tenant: str, destroyed_ids: Iterable[int] = ()) -> None:
        """Drop a tenant's cached keys; ids in ``destroyed_ids`` are remembered as shredded."""
        self._bump()
        for kid in destroyed_ids:
            self._destroyed[kid] = tenant
            self._drop_key(kid)
        for key in [v for v in self.hot_keys.values() if v.tenant == tenant]:
            self._drop_key(key.key_id)
        self._active.pop(tenant, None)
        self._unmirror_active(tenant)
        self._index.pop(tenant, None)
        self._unmirror_index(tenant)

    def forget_active(self, tenant: str) -> None:
        """Drop only the tenant's active-key pointer (after a rotation)."""
        self._bump()
        self._active.pop(tenant, None)
        self._unmirror_active(tenant)

    def _drop_key(self, key_id: int) -> None:
        self._keys.pop(key_id, None)
        self._unmirror_key(key_id)

    def _unmirror_key(self, key_id: int) -> None:
        self._release(self.hot_keys.pop(key_id_bytes(key_id), None))

    def _unmirror_active(self, tenant: str) -> None:
        self._release(self.hot_active.pop(tenant, None))

    def _unmirror_index(self, tenant: str) -> None:
        self._release(self.hot_index.pop(tenant, None))

    def _release(self, key: DataKey | IndexKey | None) -> None:
        # Cancel the expiry timer once no mirror holds the key, so the timer
        # does not keep a dropped (e.g. shredded) or replaced key alive until
        # its TTL ends.
        if key is None or not isinstance(key._timer, asyncio.TimerHandle):
            return
        if isinstance(key, DataKey):
            if self.hot_keys.get(key.id_bytes) is key or self.hot_active.get(key.tenant) is key:
                return
        elif self.hot_index.get(key.tenant) is key:
            return
        key._timer.cancel()
        key._timer = None

    def apply_notification(self, payload: str) -> None:
        """Act on one ``pgseal_keys`` notice (see ``crypto.store.notify_payload``)."""
        try:
            notice = json.loads(payload)
            op = notice["op"]
            if op == "shred":
                self.forget_tenant(str(notice["tenant"]), [int(k) for k in notice["key_ids"]])
            elif op == "rotate":
                self.forget_active(str(notice["tenant"]))
            else:
                self.clear()
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable key-change notice; flushing the key cache")
            self.clear()

    # -- LISTEN ----------------------------------------------------------------

    async def listen(
        self, dsn: str, *, channel: str = CHANNEL, health_interval: float = 10.0
    ) -> None:
        """Start listening for key changes on a dedicated connection to ``dsn``."""
        if self._listener is not None:
            raise KeyStoreError("the key cache is already listening")
        listener = _KeyChangeListener(self, dsn, channel, health_interval)
        await listener.start()
        self._listener = listener

    async def close(self) -> None:
        """Stop listening, cancel loads in flight and forget every key."""
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self.clear()


class _KeyChangeListener:
    """One asyncpg connection doing LISTEN; reconnects and flushes on loss."""

    def __init__(
        self, cache: TenantKeyCache, dsn: str, channel: str, health_interval: float
    ) -> None:
        self._cache = cache
        self._dsn = dsn
        self._channel = channel
        self._health_interval = health_interval
        self._con: asyncpg.Connection[Any] | None = None
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._con is not None and not self._con.is_closed()

    async def _connect(self) -> None:
        con: asyncpg.Connection[Any] = await asyncpg.connect(self._dsn)
        await con.add_listener(self._channel, self._on_notice)
        con.add_termination_listener(self._on_terminated)
        self._con = con
        self._lost.clear()

    async def start(self) -> None:
        await self._connect()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    def _on_notice(self, con: object, pid: int, channel: str, payload: object) -> None:
        self._cache.apply_notification(str(payload))

    def _on_terminated(self, con: object) -> None:
        if not self._closing:
            self._lost.set()

    async def _supervise(self) -> None:
        delay = 0.1
        while not self._closing:
            if self.connected and not self._lost.is_set():
                # A silent network failure only shows when we talk to the server.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), self._health_interval)
                if self._lost.is_set() or self._con is None:
                    continue
                try:
                    await self._con.fetchval("SELECT 1", timeout=self._health_interval)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    self._lost.set()
                continue
            # Lost: notices may be missed from now on, so forget everything.
            if self._con is not None:
                log.warning("key-change listener lost its connection; flushing the key cache")
                self._con.terminate()
                self._con = None
            self._cache.clear()
            try:
                await self._connect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            self._cache.clear()  # whatever was loaded while deaf may be stale
            log.info("key-change listener reconnected")

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._con is not None:
            await self._con.close()
            self._con = None
