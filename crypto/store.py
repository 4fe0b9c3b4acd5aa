"""The key store: wrapped per-tenant keys in the database, schema ``pgseal``.

One table, ``pgseal.keys``: one row per (tenant, kind, version). ``kind`` is
``data`` (the DEK that seals field values; rotated) or ``index`` (the blind-index
key; never rotated). ``state`` is ``active`` (one per tenant and kind, enforced
by a partial unique index), ``retired`` (still opens old values) or
``destroyed`` (shredded: ``wrapped_key`` is NULL). Key ids are random 63-bit
positive integers, so they fit ``bigint`` and reveal no ordering or count.

The store is reached with asyncpg through pgseal's own service pool (or one
connection, serialised by a lock), never through a client session. Every
statement that changes keys runs in a transaction that first takes a
transaction-scoped advisory lock on the tenant, so two processes creating the
same tenant's first key, rotating it or shredding it are serialised; the unique
constraints are the backstop. Changes that other processes must see at once
(shred, rotate) are announced with ``pg_notify`` on :data:`CHANNEL` in the same
transaction, so the notice is delivered exactly when the change commits.

The store never sees plaintext keys: it takes a :class:`~crypto.master.MasterKeyRing`
to wrap new keys and returns :class:`KeyRecord` rows still wrapped.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from crypto.errors import KeyStoreError, TenantShredded
from crypto.master import MasterKeyRing

__all__ = [
    "CHANNEL",
    "SCHEMA_SQL",
    "KeyInfo",
    "KeyRecord",
    "KeyStore",
    "RotationResult",
    "ShredResult",
    "TenantKeyVersions",
    "new_key_id",
]

CHANNEL: Final = "pgseal_keys"
#: First half of every advisory lock pgseal takes (b"pgse" as an int4).
LOCK_CLASS: Final = 0x70677365
_MAX_PAYLOAD: Final = 7900  # NOTIFY payloads must stay under 8000 bytes

Kind = Literal["data", "index"]
State = Literal["active", "retired", "destroyed"]

SCHEMA_SQL: Final = """\
CREATE SCHEMA IF NOT EXISTS pgseal;
CREATE TABLE IF NOT EXISTS pgseal.keys (
    key_id        bigint PRIMARY KEY CHECK (key_id > 0),
    tenant        text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('data', 'index')),
    version       integer NOT NULL CHECK (version > 0),
    state         text NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
    master_key_id text NOT NULL CHECK (master_key_id ~ '^[0-9a-f]{16}$'),
    wrapped_key   bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz,
    destroyed_at  timestamptz,
    UNIQUE (tenant, kind, version),
    CHECK ((state = 'destroyed') = (wrapped_key IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS keys_one_active
    ON pgseal.keys (tenant, kind) WHERE state = 'active';
CREATE INDEX IF NOT EXISTS keys_by_master
    ON pgseal.keys (master_key_id) WHERE state <> 'destroyed';
COMMENT ON TABLE pgseal.keys IS
    'pgseal per-tenant keys, AES-256-GCM wrapped under a master key that is never stored here';
"""

_COLUMNS: Final = "key_id, tenant, kind, version, state, master_key_id, wrapped_key, created_at"
_INFO_COLUMNS: Final = (
    "key_id, tenant, kind, version, state, master_key_id, created_at, retired_at, destroyed_at"
)


def new_key_id() -> int:
    """A random positive 63-bit key id (fits bigint, never 0)."""
    while True:
        value = secrets.randbits(63)
        if value:
            return value


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One ``pgseal.keys`` row as loaded for use (still wrapped)."""

    key_id: int
    tenant: str
    kind: str
    version: int
    state: str
    master_key_id: str
    wrapped_key: bytes | None = field(repr=False)
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One key as ``pgseal keys list`` shows it: no key bytes at all."""

    key_id: int
    tenant: str
    kind: str
    version: int
    state: str
    master_key_id: str
    created_at: datetime
    retired_at: datetime | None
    destroyed_at: datetime | None


@dataclass(frozen=True, slots=True)
class RotationResult:
    """A data-key rotation: new writes use ``new_key_id``; ``old_key_ids`` still open."""

    tenant: str
    new_key_id: int
    new_version: int
    old_key_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ShredResult:
    tenant: str
    destroyed_key_ids: tuple[int, ...]  # destroyed by this call
    already_destroyed: int  # destroyed earlier


@dataclass(frozen=True, slots=True)
class TenantKeyVersions:
    """What a re-encryption job needs for one tenant: the current data key and
    the older, still readable ones whose values should be moved forward."""

    tenant: str
    current_key_id: int
    current_version: int
    old_key_ids: tuple[int, ...]


def _record(row: asyncpg.Record) -> KeyRecord:
    return KeyRecord(
        key_id=row["key_id"],
        tenant=row["tenant"],
        kind=row["kind"],
        version=row["version"],
        state=row["state"],
        master_key_id=row["master_key_id"],
        wrapped_key=row["wrapped_key"],
        created_at=row["created_at"],
    )


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(**dict(row.items()))


def notify_payload(op: str, tenant: str, key_ids: Sequence[int] = ()) -> str:
    """The NOTIFY payload for a key change; too large -> ask for a full flush."""
    payload = json.dumps({"op": op, "tenant": tenant, "key_ids": list(key_ids)})
    if len(payload.encode()) > _MAX_PAYLOAD:
        payload = json.dumps({"op": "flush"})
    return payload


Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


class KeyStore:
    """Reads and changes ``pgseal.keys`` through a pool or a single connection."""

    def __init__(
        self,
        db: asyncpg.Pool[Any] | asyncpg.Connection[Any],
        *,
        channel: str = CHANNEL,
    ) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self.channel = channel
        #: Statements sent by this store (metrics; tests count round trips).
        self.queries = 0

    def __repr__(self) -> str:
        return f"KeyStore(channel={self.channel!r}, queries={self.queries})"

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        try:
            if isinstance(self._db, asyncpg.Pool):
                async with self._db.acquire() as con:
                    yield con
            else:
                # One asyncpg connection runs one statement at a time.
                async with self._lock:
                    yield self._db
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            raise KeyStoreError(
                "the key store is not initialised in this database; run 'pgseal keys init'"
            ) from None

    async def _fetch(self, con: Connection, sql: str, *args: object) -> list[asyncpg.Record]:
        self.queries += 1
        return await con.fetch(sql, *args)

    async def _execute(self, con: Connection, sql: str, *args: object) -> None:
        self.queries += 1
        await con.execute(sql, *args)

    async def _lock_tenant(self, con: Connection, tenant: str) -> None:
        await self._execute(
            con, "SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_CLASS, tenant
        )

    async def _notify(self, con: Connection, payload: str) -> None:
        await self._execute(con, "SELECT pg_notify($1, $2)", self.channel, payload)

    # -- schema ---------------------------------------------------------------

    async def init_schema(self) -> bool:
        """Create schema ``pgseal`` and its table if missing; True if anything was new."""
        async with self._connection() as con, con.transaction():
            # CREATE ... IF NOT EXISTS is not safe against a concurrent creator.
            await self._execute(con, "SELECT pg_advisory_xact_lock($1, 0)", LOCK_CLASS)
            existed = await self._schema_exists(con)
            await self._execute(con, SCHEMA_SQL)
            return not existed

    async def _schema_exists(self, con: Connection) -> bool:
        # A plain catalog scan, not to_regclass(): its catalog snapshot can be
        # older than the statement's after waiting for another initialiser.
        rows = await self._fetch(
            con,
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'pgseal' AND c.relname = 'keys') AS ok",
        )
        return bool(rows[0]["ok"])

    async def schema_exists(self) -> bool:
        async with self._connection() as con:
            return await self._schema_exists(con)

    # -- the hot path: one statement per miss -----------------------------------

    async def fetch_keys(self, key_ids: Iterable[int]) -> list[KeyRecord]:
        """Rows for these key ids (any state); unknown ids are simply absent."""
        ids = list(key_ids)
        async with self._connection() as con:
            rows = await self._fetch(
                con, f"SELECT {_COLUMNS} FROM pgseal.keys WHERE key_id = ANY($1::bigint[])", ids
            )
        return [_record(r) for r in rows]

    async def fetch_key(self, key_id: int) -> KeyRecord | None:
        async with self._connection() as con:
            rows = await self._fetch(
                con, f"SELECT {_COLUMNS} FROM pgseal.keys WHERE key_id = $1", key_id
            )
        return _record(rows[0]) if rows else None

    async def active_keys(self, tenant: str) -> dict[str, KeyRecord]:
        """The tenant's active keys by kind (``data``, ``index``); may be empty."""
        async with self._connection() as con:
            rows = await self._fetch(
                con,
                f"SELECT {_COLUMNS} FROM pgseal.keys WHERE tenant = $1 AND state = 'active'",
                tenant,
            )
        return {r["kind"]: _record(r) for r in rows}

    # -- changes --------------------------------------------------------------

    async def _insert_key(
        self, con: Connection, ring: MasterKeyRing, tenant: str, kind: str, version: int
    ) -> KeyRecord:
        material = bytearray(secrets.token_bytes(32))
        try:
            while True:
                key_id = new_key_id()
                master_id, wrapped = ring.wrap(
                    material, key_id=key_id, tenant=tenant, kind=kind, version=version
                )
                rows = await self._fetch(
                    con,
                    "INSERT INTO pgseal.keys"
                    " (key_id, tenant, kind, version, state, master_key_id, wrapped_key)"
                    " VALUES ($1, $2, $3, $4, 'active', $5, $6)"
                    f" ON CONFLICT (key_id) DO NOTHING RETURNING {_COLUMNS}",
                    key_id,
                    tenant,
                    kind,
                    version,
                    master_id,
                    wrapped,
                )
                if rows:  # else: a 2**-63 id collision; draw again
                    return _record(rows[0])
        finally:
            material[:] = bytes(len(material))

    async def ensure_tenant_keys(
        self, tenant: str, ring: MasterKeyRing
    ) -> tuple[KeyRecord, KeyRecord]:
        """The tenant's active (data, index) keys, creating whichever is missing.

        Race-free across processes: the tenant's advisory lock serialises
        creators, the loser finds the winner's rows. A shredded tenant gets no
        new keys (:class:`~crypto.errors.TenantShredded`).
        """
        if not tenant:
            raise KeyStoreError("a tenant id must be a non-empty string")
        async with self._connection() as con, con.transaction():
            await self._lock_tenant(con, tenant)
            rows = await self._fetch(
                con,
                f"SELECT {_COLUMNS} FROM pgseal.keys WHERE tenant = $1 ORDER BY version",
                tenant,
            )
            records = [_record(r) for r in rows]
            active = {r.kind: r for r in records if r.state == "active"}
            if not active and any(r.state == "destroyed" for r in records):
                raise TenantShredded(tenant)
            for kind in ("data", "index"):
                if kind not in active:
                    version = 1 + max((r.version for r in records if r.kind == kind), default=0)
                    active[kind] = await self._insert_key(con, ring, tenant, kind, version)
            return active["data"], active["index"]

    async def rotate_tenant(self, tenant: str, ring: MasterKeyRing) -> RotationResult:
        """Retire the tenant's active data key and make version n+1 the active one."""
        async with self._connection() as con, con.transaction():
            await self._lock_tenant(con, tenant)
            rows = await self._fetch(
                con,
                "SELECT key_id, version, state FROM pgseal.keys"
                " WHERE tenant = $1 AND kind = 'data' ORDER BY version",
                tenant,
            )
            current = [r for r in rows if r["state"] == "active"]
            if not current:
                if any(r["state"] == "destroyed" for r in rows):
                    raise TenantShredded(tenant)
                raise KeyStoreError(
                    f"tenant {tenant!r} has no keys yet; they are created by its first write"
                )
            await self._execute(
                con,
                "UPDATE pgseal.keys SET state = 'retired', retired_at = now() WHERE key_id = $1",
                current[0]["key_id"],
            )
            new = await self._insert_key(con, ring, tenant, "data", 1 + rows[-1]["version"])
            await self._notify(con, notify_payload("rotate", tenant, [current[0]["key_id"]]))
            old = tuple(r["key_id"] for r in rows if r["state"] != "destroyed")
            return RotationResult(tenant, new.key_id, new.version, old)

    async def shred_tenant(self, tenant: str) -> ShredResult:
        """Destroy every key of ``tenant`` (wrapped bytes removed) and announce it."""
        async with self._connection() as con, con.transaction():
            await self._lock_tenant(con, tenant)
            rows = await self._fetch(
                con,
                "UPDATE pgseal.keys SET state = 'destroyed', wrapped_key = NULL,"
                " destroyed_at = now() WHERE tenant = $1 AND state <> 'destroyed'"
                " RETURNING key_id",
                tenant,
            )
            destroyed = tuple(r["key_id"] for r in rows)
            earlier = await self._fetch(
                con,
                "SELECT count(*) AS n FROM pgseal.keys WHERE tenant = $1 AND state = 'destroyed'",
                tenant,
            )
            if destroyed:
                await self._notify(con, notify_payload("shred", tenant, destroyed))
            return ShredResult(tenant, destroyed, int(earlier[0]["n"]) - len(destroyed))

    async def destroy_version(self, tenant: str, version: int) -> ShredResult:
        """Destroy one retired data-key version of ``tenant`` (``pgseal keys destroy``).

        The end of a rotation: once ``pgseal reencrypt`` has moved every value to
        the current version, the old one is only a liability. The active version
        is refused (rotate first). The notice is a one-key shred, so every process
        drops the tenant's cached keys and remembers this id as destroyed.
        """
        async with self._connection() as con, con.transaction():
            await self._lock_tenant(con, tenant)
            rows = await self._fetch(
                con,
                "SELECT key_id, state FROM pgseal.keys"
                " WHERE tenant = $1 AND kind = 'data' AND version = $2",
                tenant,
                version,
            )
            if not rows:
                raise KeyStoreError(f"tenant {tenant!r} has no data key version {version}")
            key_id, state = rows[0]["key_id"], rows[0]["state"]
            if state == "active":
                raise KeyStoreError(
                    f"version {version} is the active data key of tenant {tenant!r}; "
                    "run 'pgseal keys rotate' and 'pgseal reencrypt' first"
                )
            if state == "destroyed":
                return ShredResult(tenant, (), 1)
            await self._execute(
                con,
                "UPDATE pgseal.keys SET state = 'destroyed', wrapped_key = NULL,"
                " destroyed_at = now() WHERE key_id = $1",
                key_id,
            )
            await self._notify(con, notify_payload("shred", tenant, [key_id]))
            return ShredResult(tenant, (key_id,), 0)

    async def tenants(self) -> list[str]:
        """Tenants that have an active data key."""
        async with self._connection() as con:
            rows = await self._fetch(
                con,
                "SELECT DISTINCT tenant FROM pgseal.keys"
                " WHERE kind = 'data' AND state = 'active' ORDER BY tenant",
            )
        return [r["tenant"] for r in rows]

    async def list_keys(self, tenant: str | None = None) -> list[KeyInfo]:
        async with self._connection() as con:
            rows = await self._fetch(
                con,
                f"SELECT {_INFO_COLUMNS} FROM pgseal.keys"
                " WHERE $1::text IS NULL OR tenant = $1 ORDER BY tenant, kind, version",
                tenant,
            )
        return [_info(r) for r in rows]

    async def key_versions(self, tenant: str | None = None) -> list[TenantKeyVersions]:
        """Per tenant: current data key and older readable ones (re-encrypt input)."""
        async with self._connection() as con:
            rows = await self._fetch(
                con,
                "SELECT tenant, key_id, version, state FROM pgseal.keys"
                " WHERE kind = 'data' AND state <> 'destroyed'"
                " AND ($1::text IS NULL OR tenant = $1) ORDER BY tenant, version",
                tenant,
            )
        result: list[TenantKeyVersions] = []
        by_tenant: dict[str, list[asyncpg.Record]] = {}
        for r in rows:
            by_tenant.setdefault(r["tenant"], []).append(r)
        for name, group in by_tenant.items():
            current = [r for r in group if r["state"] == "active"]
            if not current:
                continue
            old = tuple(r["key_id"] for r in group if r["state"] == "retired")
            result.append(TenantKeyVersions(name, current[0]["key_id"], current[0]["version"], old))
        return result

    async def master_key_usage(self) -> dict[str, int]:
        """Live (not destroyed) keys per master key id."""
        async with self._connection() as con:
            rows = await self._fetch(
                con,
                "SELECT master_key_id, count(*) AS n FROM pgseal.keys"
                " WHERE state <> 'destroyed' GROUP BY master_key_id ORDER BY master_key_id",
            )
        return {r["master_key_id"]: int(r["n"]) for r in rows}

    async def rewrap_batch(self, ring: MasterKeyRing, to_id: str, batch_size: int) -> int:
        """Re-wrap up to ``batch_size`` keys not yet under ``to_id``, in one
        transaction; returns how many. Rows already moved are never selected
        again, so a crash or Ctrl-C between batches just resumes."""
        target = ring.with_current(to_id)
        async with self._connection() as con, con.transaction():
            rows = await self._fetch(
                con,
                f"SELECT {_COLUMNS} FROM pgseal.keys"
                " WHERE state <> 'destroyed' AND master_key_id <> $1"
                " ORDER BY key_id LIMIT $2 FOR UPDATE",
                to_id,
                batch_size,
            )
            updates: list[tuple[int, str, bytes]] = []
            for rec in map(_record, rows):
                assert rec.wrapped_key is not None  # guaranteed by the table's CHECK
                material = ring.unwrap(
                    rec.master_key_id,
                    rec.wrapped_key,
                    key_id=rec.key_id,
                    tenant=rec.tenant,
                    kind=rec.kind,
                    version=rec.version,
                )
                try:
                    master_id, wrapped = target.wrap(
                        material,
                        key_id=rec.key_id,
                        tenant=rec.tenant,
                        kind=rec.kind,
                        version=rec.version,
                    )
                finally:
                    material[:] = bytes(len(material))
                updates.append((rec.key_id, master_id, wrapped))
            if updates:
                self.queries += 1
                await con.executemany(
                    "UPDATE pgseal.keys SET master_key_id = $2, wrapped_key = $3 WHERE key_id = $1",
                    updates,
                )
            return len(updates)

    async def vacuum(self) -> None:
        """VACUUM the key table so dead row versions holding wrapped bytes go away."""
        async with self._connection() as con:
            await self._execute(con, "VACUUM pgseal.keys")
