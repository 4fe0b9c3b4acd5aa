"""FieldCrypto: the narrow interface the rules and proxy layers use.

Everything a caller needs to protect one field value, by tenant and column
(``schema.table.column``, the envelope's AAD); keys are found, created, cached
and revoked behind it.

Async (may touch the key store once, on a cache miss)::

    await fc.seal_for(tenant, column, plaintext)          -> envelope bytes
    await fc.open_for(column, envelope, tenant=None)      -> plaintext bytes
    await fc.blind_index(tenant, column, value, normalize=())  -> index bytes
    await fc.prefetch(key_ids)        # one statement for a whole result batch
    await fc.prefetch_tenant(tenant)  # before a batch of writes
    await fc.reseal(column, envelope, tenant=None)  -> envelope under the current
                                                       key, or None if already so

Synchronous fast paths (no await; ``None`` on a cache miss, then call the async
form, or ``prefetch`` first)::

    fc.try_seal_cached(tenant, column, plaintext)    -> bytes | None
    fc.try_seal_many_cached(tenant, columns, plaintexts) -> list[bytes] | None
    fc.try_open_cached(column, envelope, tenant=None) -> bytes | None
    fc.try_blind_index_cached(tenant, column, value, normalize=()) -> bytes | None
    fc.try_open_row(columns, envelopes, tenant=None)  -> list[bytes] | None
    fc.try_open_fields(buf, start, end, fields, parts, tenant=None)
        -> (key, count) | None: a DataRow's envelopes opened into parts

When ``tenant`` is given to an open, an envelope under another tenant's key
raises :class:`~crypto.errors.WrongTenant` (the session may only read its own
tenant's values). Envelopes are the binary form; ``text`` columns pass through
``crypto.envelope.armor`` / ``dearmor``. NULL handling is the caller's: NULL is
never sealed. Tenants are strings (``'42'``); the caller converts.

One FieldCrypto belongs to one event loop (it is not thread-safe). A cache hit
on the open path is a length check, one dict lookup on the key id
bytes, one memoised AAD lookup and one ``AESGCM.decrypt`` (see
bench/crypto_micro.py).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidTag

from crypto.blind_index import DEFAULT_LENGTH, blind_index, check_normalizers
from crypto.cache import DEFAULT_MAX_KEYS, DEFAULT_TTL_SECONDS, CacheStats, TenantKeyCache
from crypto.envelope import HEADER_LEN, DataKey, _check_shape, seal, seal_many
from crypto.errors import EnvelopeTampered, WrongTenant
from crypto.master import MasterKeyRing
from crypto.store import KeyStore, TenantKeyVersions

__all__ = ["FieldCrypto"]

_I32 = struct.Struct("!i")
#: The 32-bit length prefixes of short values, made once: most plaintexts fit.
_LENGTHS = tuple(_I32.pack(n) for n in range(1024))


class FieldCrypto:
    """Seal, open and blind-index field values per tenant (see module docstring)."""

    def __init__(
        self,
        cache: TenantKeyCache,
        *,
        blind_index_length: int = DEFAULT_LENGTH,
        pool: asyncpg.Pool[Any] | None = None,
    ) -> None:
        self.cache = cache
        self.store = cache.store
        self.blind_index_length = blind_index_length
        self._pool = pool
        # Shared with the cache (it never rebinds them): one attribute load less.
        self._hot_keys = cache.hot_keys
        self._hot_active = cache.hot_active
        self._hot_index = cache.hot_index
        #: Cache hits on the fast paths (kept here: one attribute hop less).
        self.hits = 0

    @classmethod
    async def connect(
        cls,
        dsn: str,
        masters: MasterKeyRing,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_keys: int = DEFAULT_MAX_KEYS,
        listen: bool = True,
        pool_min: int = 1,
        pool_max: int = 4,
        blind_index_length: int = DEFAULT_LENGTH,
    ) -> FieldCrypto:
        """A ready facade on the service DSN: a small pool plus a LISTEN connection."""
        pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
            dsn, min_size=pool_min, max_size=pool_max
        )
        cache = TenantKeyCache(KeyStore(pool), masters, ttl_seconds=ttl_seconds, max_keys=max_keys)
        try:
            if listen:
                await cache.listen(dsn)
        except BaseException:
            await pool.close()
            raise
        return cls(cache, blind_index_length=blind_index_length, pool=pool)

    async def close(self) -> None:
        await self.cache.close()
        if self._pool is not None:
            await self._pool.close()

    def __repr__(self) -> str:
        return f"FieldCrypto({self.cache!r})"

    def stats(self) -> CacheStats:
        """Cache counters, including this facade's fast-path hits."""
        base = self.cache.stats()
        return dataclasses.replace(base, hits=base.hits + self.hits)

    # -- writes ----------------------------------------------------------------

    def try_seal_cached(self, tenant: str, column: str, plaintext: bytes) -> bytes | None:
        key = self._hot_active.get(tenant)
        if key is None:
            return None
        self.hits += 1
        return seal(key, column, plaintext)

    def try_seal_many_cached(
        self, tenant: str, columns: Sequence[str], plaintexts: Sequence[bytes]
    ) -> list[bytes] | None:
        """:meth:`try_seal_cached` of several values of one tenant (a row's fields)."""
        key = self._hot_active.get(tenant)
        if key is None:
            return None
        self.hits += len(plaintexts)
        return seal_many(key, columns, plaintexts)

    async def seal_for(self, tenant: str, column: str, plaintext: bytes) -> bytes:
        """Seal under the tenant's active data key (created on its first write)."""
        sealed = self.try_seal_cached(tenant, column, plaintext)
        if sealed is not None:
            return sealed
        self.cache.misses += 1
        data, _ = await self.cache.tenant_keys(tenant)
        return seal(data, column, plaintext)

    async def prefetch_tenant(self, tenant: str) -> None:
        await self.cache.tenant_keys(tenant)

    # -- reads -----------------------------------------------------------------

    def try_open_cached(
        self, column: str, envelope: bytes, *, tenant: str | None = None
    ) -> bytes | None:
        if len(envelope) < 37 or envelope[0] != 1:  # MIN_ENVELOPE_LEN, VERSION
            _check_shape(column, envelope)
        key = self._hot_keys.get(envelope[1:9])
        if key is None:
            return None
        self.hits += 1
        if tenant is not None and key.tenant != tenant:
            raise WrongTenant(column, key.key_id, tenant)
        try:
            return key._aead.decrypt(
                envelope[9:21], envelope[21:], key._aads.get(column) or key.aad(column)
            )
        except InvalidTag:
            raise EnvelopeTampered(column, key.key_id) from None

    def try_open_row(
        self, columns: Sequence[str], envelopes: Sequence[bytes], tenant: str | None = None
    ) -> tuple[list[bytes], DataKey | None] | None:
        """Open the envelopes of one result row at once, or None for the per-field path.

        The proxy's read hot path: one call per DataRow instead of one per field,
        the loop on locals. Anything but the plain case (a malformed envelope, an
        uncached key, another tenant's key, a failed tag) returns None without
        counting or raising: the caller then opens field by field with
        :meth:`try_open_cached`, which reports each of those cases precisely.
        With the plaintexts comes the one key that opened them all (None when
        the row mixes keys), for callers that remember opened rows.
        """
        hot = self._hot_keys.get
        opened: list[bytes] = []
        append = opened.append
        only: DataKey | None = None
        mixed = False
        for column, envelope in zip(columns, envelopes, strict=True):
            if len(envelope) < 37 or envelope[0] != 1:  # MIN_ENVELOPE_LEN, VERSION
                return None
            key = hot(envelope[1:9])
            if key is None or (tenant is not None and key.tenant != tenant):
                return None
            if only is None:
                only = key
            elif key is not only:
                mixed = True
            try:
                append(
                    key._aead.decrypt(
                        envelope[9:21], envelope[21:], key._aads.get(column) or key.aad(column)
                    )
                )
            except InvalidTag:
                return None
        self.hits += len(opened)
        return opened, None if mixed else only

    def try_open_fields(
        self,
        buf: bytes,
        start: int,
        end: int,
        fields: Sequence[tuple[str, Callable[[bytes], bytes] | None] | None],
        parts: list[bytes],
        tenant: str | None = None,
    ) -> tuple[DataKey | None, int] | None:
        """Open the envelopes among the length-prefixed values of ``buf[start:end]``.

        The proxy's read hot path, one call per DataRow: ``buf[start:end]`` is
        laid out as a DataRow body (a 16-bit count, then per value a 32-bit
        length, -1 for NULL, and its bytes). ``fields`` says per value whether
        to open it: (the column whose AAD opens it, a function the plaintext
        passes through or None), or None to leave it as it is. The same layout,
        each envelope replaced by its plaintext, is appended to ``parts`` in
        pieces for one join. Returns (the one key that opened every value, None
        when the row mixes keys; how many values were opened).

        The key an envelope names is looked up and checked (cached, the
        tenant's) only when it differs from the previous envelope's. Anything
        but the plain case (bad framing, a malformed envelope, an uncached or
        another tenant's key, a failed tag, a function raising ValueError)
        returns None without counting or raising, and ``parts`` is to be
        discarded: the caller then opens field by field with
        :meth:`try_open_cached`, which reports each of those cases precisely.
        """
        if end - start < 2 or (buf[start] << 8 | buf[start + 1]) != len(fields):
            return None
        unpack = _I32.unpack_from
        pack = _I32.pack
        lengths = _LENGTHS
        append = parts.append
        pos = start + 2
        seg = start  # the first byte not yet in parts
        count = 0
        header = b""  # version byte + key id of the key in hand (``decrypt``)
        only: DataKey | None = None
        mixed = False
        aads: dict[str, bytes] = {}
        decrypt: Any = None  # key._aead.decrypt
        aad_of: Any = None  # key.aad
        try:
            for field in fields:
                # Past ``end``, a length read from what follows fails one of the
                # checks below (or unpack raises): no bounds test before it.
                (length,) = unpack(buf, pos)
                pos += 4
                if length < 0:
                    if length == -1:
                        continue  # NULL stays NULL
                    return None
                stop = pos + length
                if stop > end:
                    return None
                if field is not None:
                    if length < 37:  # MIN_ENVELOPE_LEN
                        return None
                    if decrypt is None or not buf.startswith(header, pos):
                        if buf[pos] != 1:  # VERSION
                            return None
                        header = buf[pos : pos + 9]
                        key = self._hot_keys.get(header[1:])
                        if key is None or (tenant is not None and key.tenant != tenant):
                            return None
                        if only is None:
                            only = key
                        elif key is not only:
                            mixed = True
                        aads, decrypt, aad_of = key._aads, key._aead.decrypt, key.aad
                    column, out = field
                    try:
                        plaintext = decrypt(
                            buf[pos + 9 : pos + 21],
                            buf[pos + 21 : stop],
                            aads.get(column) or aad_of(column),
                        )
                    except InvalidTag:
                        return None
                    if out is not None:
                        plaintext = out(plaintext)
                    if seg != pos - 4:
                        append(buf[seg : pos - 4])
                    size = len(plaintext)
                    append(lengths[size] if size < 1024 else pack(size))
                    append(plaintext)
                    seg = stop
                    count += 1
                pos = stop
        except (struct.error, ValueError):
            return None
        if pos != end:
            return None
        if seg != end:
            append(buf[seg:end])
        self.hits += count
        return None if mixed else only, count

    def still_cached(self, key: DataKey, generation: int) -> bool:
        """Whether ``key`` is still the cached key for its id and nothing was
        invalidated since ``generation`` (see :meth:`generation`)."""
        return self._hot_keys.get(key.id_bytes) is key and self.cache._generation == generation

    def generation(self) -> int:
        """Bumped by every invalidation of the key cache (shred, rotation, flush):
        what was derived from keys before it must be derived again."""
        return self.cache._generation

    async def open_for(self, column: str, envelope: bytes, *, tenant: str | None = None) -> bytes:
        """Open an envelope from ``column``; with ``tenant``, refuse other tenants'."""
        plaintext = self.try_open_cached(column, envelope, tenant=tenant)
        if plaintext is not None:
            return plaintext
        key_id = int.from_bytes(envelope[1:9], "big")
        if tenant is not None:
            # Check ownership before revealing that another tenant's key was shredded.
            owner = self.cache.destroyed_owner(key_id)
            if owner is not None and owner != tenant:
                raise WrongTenant(column, key_id, tenant)
        self.cache.misses += 1
        key = await self.cache.data_key(key_id)
        if tenant is not None and key.tenant != tenant:
            raise WrongTenant(column, key_id, tenant)
        try:
            return key._aead.decrypt(envelope[9:HEADER_LEN], envelope[HEADER_LEN:], key.aad(column))
        except InvalidTag:
            raise EnvelopeTampered(column, key_id) from None

    async def prefetch(self, key_ids: Iterable[int]) -> frozenset[int]:
        """Load all uncached keys named by a batch of envelopes in one statement;
        returns the ids the key store does not hold."""
        return await self.cache.prefetch(key_ids)

    # -- blind index -----------------------------------------------------------

    def try_blind_index_cached(
        self, tenant: str, column: str, value: bytes, normalize: Iterable[str] = ()
    ) -> bytes | None:
        key = self._hot_index.get(tenant)
        if key is None:
            return None
        self.hits += 1
        return blind_index(key, column, value, normalize, self.blind_index_length)

    async def blind_index(
        self, tenant: str, column: str, value: bytes, normalize: Iterable[str] = ()
    ) -> bytes:
        """Equality-search token for ``value``; stable across data-key rotation."""
        normalize = tuple(normalize)
        check_normalizers(normalize)
        cached = self.try_blind_index_cached(tenant, column, value, normalize)
        if cached is not None:
            return cached
        self.cache.misses += 1
        _, index = await self.cache.tenant_keys(tenant)
        return blind_index(index, column, value, normalize, self.blind_index_length)

    # -- re-encryption support -------------------------------------------------

    async def reseal(
        self, column: str, envelope: bytes, *, tenant: str | None = None
    ) -> bytes | None:
        """Re-seal under the owning tenant's current data key; None if it already is.

        For the re-encryption job after a data-key rotation: old versions keep
        opening, this moves one value forward.
        """
        plaintext = await self.open_for(column, envelope, tenant=tenant)
        key = await self.cache.data_key(int.from_bytes(envelope[1:9], "big"))
        current, _ = await self.cache.tenant_keys(key.tenant)
        if current.key_id == key.key_id:
            return None
        return seal(current, column, plaintext)

    async def key_versions(self, tenant: str | None = None) -> list[TenantKeyVersions]:
        """Per tenant: current data key id and the older ones still in use."""
        return await self.store.key_versions(tenant)
