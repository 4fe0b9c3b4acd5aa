"""Batch jobs over protected tables: migrate, reverse migrate, re-encrypt.

All three walk a table in primary-key order (keyset pagination: ``WHERE (pk) >
(last) ORDER BY pk LIMIT n``), and each batch is one transaction that

1. selects the batch ``FOR UPDATE`` (an application writing the same rows
   through pgseal waits for one batch, never sees a half-done row),
2. computes the new values in Python (seal, open, re-seal, blind index),
3. writes only the rows that change with one ``UPDATE ... FROM unnest(...)``,
4. records the last primary key in ``pgseal.jobs`` in the same transaction.

So a kill at any moment loses at most the batch in flight, and the next run
resumes after the last committed key. Every job is idempotent on top of that:
``migrate`` skips values that already are envelopes, ``reverse`` values that
are not, ``reencrypt`` values already under the tenant's current key.

``migrate`` first converts a column whose physical type is not its storage type
(``text`` -> ``bytea`` keeping the plaintext as its canonical UTF-8 bytes, see
``rules.schema_check.storage_conversion_sql``) and, once a table has no
plaintext left, installs the database guards (``NOT VALID`` then ``VALIDATE``,
so writers are blocked only for the catalog change). ``reverse`` drops the
guards first, since it writes plaintext back, and with ``restore_type`` turns
the column back into its logical type. A value that cannot be processed (no
tenant, tampered, another tenant's envelope, destroyed key) is left as it is and
reported by primary key; the job then ends with failures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import asyncpg

from crypto.envelope import armor, dearmor, is_armored, is_envelope, peek_key_id
from crypto.errors import CryptoError
from crypto.field import FieldCrypto
from proxy.live_schema import load_live_schema
from rules.model import ProtectedColumn, ProtectedTable, Rules
from rules.schema_check import (
    CANONICAL_SETTINGS_SQL,
    GUARD_FUNCTIONS_SQL,
    LiveTable,
    guard_definition,
    guard_name,
    guard_status,
    quote_ident,
    storage_conversion_sql,
)

__all__ = [
    "JOBS_SQL",
    "Job",
    "JobError",
    "TablePlan",
    "TableResult",
    "plan_tables",
    "run_table",
    "stored_envelope",
]

Job = Literal["migrate", "reverse", "reencrypt"]

JOBS_SQL: Final = """\
CREATE SCHEMA IF NOT EXISTS pgseal;
CREATE TABLE IF NOT EXISTS pgseal.jobs (
    job          text NOT NULL CHECK (job IN ('migrate', 'reverse', 'reencrypt')),
    table_name   text NOT NULL,
    last_key     text[],
    rows_seen    bigint NOT NULL DEFAULT 0,
    rows_changed bigint NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (job, table_name)
);
COMMENT ON TABLE pgseal.jobs IS
    'progress of pgseal migrate / reencrypt: the last primary key done per table';
"""

_RETRIES: Final = 5
_MAX_LISTED: Final = 50  # primary keys kept per kind of failure
_LOCK_TIMEOUT: Final = "10s"  # for the catalog changes made while the application runs


class JobError(Exception):
    """A table cannot be processed as configured (one line for the CLI)."""


@dataclass(frozen=True, slots=True)
class TablePlan:
    """What a job needs to know about one table."""

    table: ProtectedTable
    columns: tuple[ProtectedColumn, ...]
    primary_key: tuple[str, ...]
    key_types: tuple[str, ...]
    live: LiveTable

    @property
    def name(self) -> str:
        return self.table.qualified


@dataclass(slots=True)
class TableResult:
    table: str
    job: Job
    dry_run: bool
    resumed_from: int = 0  # rows already done by an earlier, interrupted run
    rows_seen: int = 0
    rows_changed: int = 0
    values_changed: int = 0
    seconds: float = 0.0
    converted: list[str] = field(default_factory=list)  # columns whose type changed
    guards: list[str] = field(default_factory=list)  # guards installed / dropped
    #: failure kind -> primary keys (as text, at most _MAX_LISTED each)
    failures: dict[str, list[str]] = field(default_factory=dict)
    failure_counts: dict[str, int] = field(default_factory=dict)
    left_plaintext: int = 0  # reencrypt: values not migrated yet

    @property
    def rows_per_second(self) -> float:
        return self.rows_seen / self.seconds if self.seconds > 0 else 0.0

    def fail(self, kind: str, key: str) -> None:
        self.failure_counts[kind] = self.failure_counts.get(kind, 0) + 1
        keys = self.failures.setdefault(kind, [])
        if len(keys) < _MAX_LISTED:
            keys.append(key)


async def plan_tables(
    connection: asyncpg.Connection[Any], rules: Rules, tables: Sequence[str] = ()
) -> list[TablePlan]:
    """The configured tables (or ``tables``), checked for a primary key."""
    names = sorted(rules.tables)
    if tables:
        wanted = [t if "." in t else f"public.{t}" for t in tables]
        unknown = [t for t in wanted if t not in rules.tables]
        if unknown:
            raise JobError(f"table {', '.join(unknown)} is not configured in config.yaml")
        names = sorted(wanted)
    live = await load_live_schema(connection, names)
    plans = []
    for name in names:
        table = rules.tables[name]
        found = live.tables.get(name)
        if found is None:
            raise JobError(f"table {name} does not exist")
        if not found.primary_key:
            raise JobError(f"table {name} has no primary key; batches are walked by it")
        for column in table.columns.values():
            if column.name not in found.columns:
                raise JobError(f"{column.qualified} does not exist; run `pgseal rules check`")
        if table.tenant_column not in found.columns:
            raise JobError(f"tenant column {name}.{table.tenant_column} does not exist")
        key_types = tuple(found.columns[k] for k in found.primary_key)
        plans.append(
            TablePlan(table, tuple(table.columns.values()), found.primary_key, key_types, found)
        )
    return plans


# -- SQL of one table ------------------------------------------------------------------


def _table_sql(plan: TablePlan) -> str:
    return f"{quote_ident(plan.table.schema)}.{quote_ident(plan.table.name)}"


def _select_sql(plan: TablePlan, *, resume: bool, lock: bool) -> str:
    # Everything qualified with the alias: a bare ORDER BY name would sort by the
    # output column of the same name, the key's *text* (lexicographic order).
    pk = ", ".join(f"t.{quote_ident(k)}" for k in plan.primary_key)
    keys = ", ".join(f"t.{quote_ident(k)}::text AS k{i}" for i, k in enumerate(plan.primary_key))
    values = ", ".join(f"t.{quote_ident(c.name)}" for c in plan.columns)
    where = ""
    if resume:
        bound = ", ".join(f"($1::text[])[{i}]::{t}" for i, t in enumerate(plan.key_types, start=1))
        where = (
            f" WHERE ({pk}) > ({bound})" if len(plan.primary_key) > 1 else f" WHERE {pk} > {bound}"
        )
    limit = "$2" if resume else "$1"
    return (
        f"SELECT {keys}, t.{quote_ident(plan.table.tenant_column)}::text AS tenant, {values} "
        f"FROM {_table_sql(plan)} AS t{where} ORDER BY {pk} LIMIT {limit}"
        + (" FOR UPDATE" if lock else "")
    )


def _update_sql(plan: TablePlan, *, with_index: bool) -> str:
    """The batch UPDATE; ``with_index``: also set the blind indexes (not when
    re-encrypting: the index key is not rotated, the indexes stay valid)."""
    n_keys = len(plan.primary_key)
    arrays: list[str] = [f"${i}::text[]" for i in range(1, n_keys + 1)]
    aliases = [f"k{i}" for i in range(n_keys)]
    sets: list[str] = []
    position = n_keys
    for i, column in enumerate(plan.columns):
        position += 1
        arrays.append(f"${position}::{column.storage}[]")
        aliases.append(f"c{i}")
        name = quote_ident(column.name)
        sets.append(f"{name} = COALESCE(v.c{i}, t.{name})")
        if column.searchable and with_index:
            position += 1
            arrays.append(f"${position}::bytea[]")
            aliases.append(f"b{i}")
            bidx = quote_ident(column.searchable)
            sets.append(f"{bidx} = CASE WHEN v.c{i} IS NULL THEN t.{bidx} ELSE v.b{i} END")
    match = " AND ".join(
        f"t.{quote_ident(k)} = v.k{i}::{plan.key_types[i]}" for i, k in enumerate(plan.primary_key)
    )
    return (
        f"UPDATE {_table_sql(plan)} AS t SET {', '.join(sets)} "
        f"FROM unnest({', '.join(arrays)}) AS v({', '.join(aliases)}) WHERE {match}"
    )


# -- one value ----------------------------------------------------------------------


def stored_envelope(column: ProtectedColumn, stored: bytes | str) -> bytes | None:
    """The envelope in a stored value as asyncpg returns it, or None when it is not
    one (plaintext). Structural only: nothing is authenticated."""
    if isinstance(stored, str):  # text storage, or a dry run before the type change
        if column.storage != "text" or not is_armored(stored):
            return None
        try:
            return dearmor(stored, column.qualified)
        except CryptoError:
            return None
    return stored if column.storage == "bytea" and is_envelope(stored) else None


def _plaintext(column: ProtectedColumn, stored: bytes | str) -> bytes:
    return stored.encode() if isinstance(stored, str) else stored


def _stored(column: ProtectedColumn, envelope: bytes) -> bytes | str:
    return armor(envelope) if column.storage == "text" else envelope


def _stored_plain(column: ProtectedColumn, plaintext: bytes) -> bytes | str:
    return plaintext.decode() if column.storage == "text" else plaintext


class _Batch:
    """The UPDATE arrays of one batch, filled row by row."""

    def __init__(self, plan: TablePlan) -> None:
        self.plan = plan
        self.keys: list[list[str]] = [[] for _ in plan.primary_key]
        self.values: list[list[Any]] = [[] for _ in plan.columns]
        self.bidx: list[list[bytes | None]] = [[] for _ in plan.columns]
        self.rows = 0

    def add(self, key: Sequence[str], values: Sequence[Any], bidx: Sequence[bytes | None]) -> None:
        for i, k in enumerate(key):
            self.keys[i].append(k)
        for i in range(len(self.plan.columns)):
            self.values[i].append(values[i])
            self.bidx[i].append(bidx[i])
        self.rows += 1

    def args(self, *, with_index: bool) -> list[Any]:
        out: list[Any] = list(self.keys)
        for i, column in enumerate(self.plan.columns):
            out.append(self.values[i])
            if column.searchable and with_index:
                out.append(self.bidx[i])
        return out


@dataclass(slots=True)
class _Context:
    job: Job
    crypto: FieldCrypto | None
    old_key_ids: frozenset[int]  # reencrypt: ids that are not a tenant's current key
    result: TableResult


async def _transform_row(
    ctx: _Context, plan: TablePlan, row: asyncpg.Record, batch: _Batch | None
) -> None:
    n_keys = len(plan.primary_key)
    key = [row[i] for i in range(n_keys)]
    tenant: str | None = row[n_keys]
    new_values: list[Any] = []
    new_bidx: list[bytes | None] = []
    changed = 0
    label = ",".join(key)
    for i, column in enumerate(plan.columns):
        stored = row[n_keys + 1 + i]
        value: Any = None
        index: bytes | None = None
        if stored is not None:
            try:
                value, index = await _transform_value(ctx, column, stored, tenant, label)
            except CryptoError as exc:
                ctx.result.fail(type(exc).__name__, label)
                value = None
        if value is not None:
            changed += 1
        new_values.append(value)
        new_bidx.append(index)
    if changed:
        ctx.result.rows_changed += 1
        ctx.result.values_changed += changed
        if batch is not None:
            batch.add(key, new_values, new_bidx)


async def _transform_value(
    ctx: _Context, column: ProtectedColumn, stored: bytes | str, tenant: str | None, label: str
) -> tuple[Any, bytes | None]:
    """(new stored value or None for unchanged, blind index)."""
    envelope = stored_envelope(column, stored)
    crypto = ctx.crypto
    if ctx.job == "migrate":
        if envelope is not None:
            return None, None
        if tenant is None:
            ctx.result.fail("no tenant", label)
            return None, None
        if crypto is None:  # dry run
            return True, None
        plaintext = _plaintext(column, stored)
        sealed = await crypto.seal_for(tenant, column.qualified, plaintext)
        index = None
        if column.searchable:
            index = await crypto.blind_index(tenant, column.qualified, plaintext, column.normalize)
        return _stored(column, sealed), index
    if envelope is None:
        if ctx.job == "reencrypt":
            ctx.result.left_plaintext += 1
        return None, None
    if ctx.job == "reverse":
        if crypto is None:
            return True, None
        plaintext = await crypto.open_for(column.qualified, envelope, tenant=tenant)
        return _stored_plain(column, plaintext), None
    # reencrypt
    if peek_key_id(envelope) not in ctx.old_key_ids:
        return None, None
    if crypto is None:
        return True, None
    resealed = await crypto.reseal(column.qualified, envelope, tenant=tenant)
    if resealed is None:
        return None, None
    return _stored(column, resealed), None


# -- the job ---------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]  # table, rows seen so far (all runs), total


async def _estimate_rows(connection: asyncpg.Connection[Any], plan: TablePlan) -> int:
    estimate = await connection.fetchval(
        "SELECT reltuples::int8 FROM pg_class WHERE oid = $1::regclass", _table_sql(plan)
    )
    if estimate is None or estimate < 0:  # never analysed
        estimate = await connection.fetchval(f"SELECT count(*) FROM {_table_sql(plan)}")
    return int(estimate)


async def _start_job(
    connection: asyncpg.Connection[Any], job: Job, table: str, restart: bool
) -> tuple[list[str] | None, int, int]:
    """(last key, rows seen, rows changed) to resume from; a fresh row if none."""
    row = await connection.fetchrow(
        "SELECT last_key, rows_seen, rows_changed, finished_at FROM pgseal.jobs"
        " WHERE job = $1 AND table_name = $2",
        job,
        table,
    )
    if row is not None and row["finished_at"] is None and not restart:
        return row["last_key"], int(row["rows_seen"]), int(row["rows_changed"])
    await connection.execute(
        "INSERT INTO pgseal.jobs (job, table_name) VALUES ($1, $2)"
        " ON CONFLICT (job, table_name) DO UPDATE SET last_key = NULL, rows_seen = 0,"
        " rows_changed = 0, started_at = now(), updated_at = now(), finished_at = NULL",
        job,
        table,
    )
    return None, 0, 0


async def run_table(
    connection: asyncpg.Connection[Any],
    plan: TablePlan,
    job: Job,
    *,
    crypto: FieldCrypto | None,
    batch_size: int = 1000,
    rate: float | None = None,
    dry_run: bool = False,
    restart: bool = False,
    install_guards: bool = True,
    restore_type: bool = False,
    old_key_ids: frozenset[int] = frozenset(),
    progress: Progress | None = None,
) -> TableResult:
    """Run ``job`` over one table; see the module docstring."""
    if batch_size < 1:
        raise JobError("--batch-size must be at least 1")
    result = TableResult(plan.name, job, dry_run)
    started = time.monotonic()
    if not dry_run:
        await connection.execute(JOBS_SQL)
        if job == "migrate":
            await _convert_storage(connection, plan, result)
        if job == "reverse":
            await _drop_guards(connection, plan, result)
        last_key, seen, _ = await _start_job(connection, job, plan.name, restart)
    else:
        last_key, seen = None, 0
        for column in plan.columns:
            physical = plan.live.columns[column.name]
            if job == "migrate" and physical != column.storage:
                result.converted.append(f"{column.name}: {physical} -> {column.storage} (planned)")
    result.resumed_from = seen
    total = max(await _estimate_rows(connection, plan), seen)
    ctx = _Context(job, None if dry_run else crypto, old_key_ids, result)
    if progress is not None:
        progress(plan.name, seen, total)
    first = _select_sql(plan, resume=False, lock=not dry_run)
    after = _select_sql(plan, resume=True, lock=not dry_run)
    update = _update_sql(plan, with_index=job != "reencrypt")
    this_run = 0
    while True:
        rows = await _run_batch(
            connection, ctx, plan, (first, after, update), last_key, batch_size, dry_run
        )
        if not rows:
            break
        last_key = [rows[-1][i] for i in range(len(plan.primary_key))]
        seen += len(rows)
        this_run += len(rows)
        if progress is not None:
            progress(plan.name, seen, max(total, seen))
        if rate:
            ahead = this_run / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        if len(rows) < batch_size:
            break
    result.rows_seen = this_run
    if not dry_run:
        await connection.execute(
            "UPDATE pgseal.jobs SET finished_at = now(), updated_at = now()"
            " WHERE job = $1 AND table_name = $2",
            job,
            plan.name,
        )
        if job == "migrate" and install_guards and not result.failure_counts:
            await _install_guards(connection, plan, result)
        if job == "reverse" and restore_type and not result.failure_counts:
            await _restore_types(connection, plan, result)
    result.seconds = time.monotonic() - started
    return result


async def _run_batch(
    connection: asyncpg.Connection[Any],
    ctx: _Context,
    plan: TablePlan,
    statements: tuple[str, str, str],
    last_key: list[str] | None,
    batch_size: int,
    dry_run: bool,
) -> list[asyncpg.Record]:
    """One batch in one transaction, retried on deadlock / serialization failure."""
    first, after, update = statements
    for attempt in range(_RETRIES):
        snapshot = (ctx.result.rows_changed, ctx.result.values_changed,
                    dict(ctx.result.failure_counts), ctx.result.left_plaintext)  # fmt: skip
        try:
            async with connection.transaction():
                if last_key is None:
                    rows = await connection.fetch(first, batch_size)
                else:
                    rows = await connection.fetch(after, last_key, batch_size)
                if not rows:
                    return rows
                batch = None if dry_run else _Batch(plan)
                for row in rows:
                    await _transform_row(ctx, plan, row, batch)
                if batch is not None:
                    if batch.rows:
                        await connection.execute(
                            update, *batch.args(with_index=ctx.job != "reencrypt")
                        )
                    await connection.execute(
                        "UPDATE pgseal.jobs SET last_key = $3, rows_seen = rows_seen + $4,"
                        " rows_changed = rows_changed + $5, updated_at = now()"
                        " WHERE job = $1 AND table_name = $2",
                        ctx.job,
                        plan.name,
                        [rows[-1][i] for i in range(len(plan.primary_key))],
                        len(rows),
                        batch.rows,
                    )
                return rows
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
            (ctx.result.rows_changed, ctx.result.values_changed,
             ctx.result.failure_counts, ctx.result.left_plaintext) = snapshot  # fmt: skip
            if attempt == _RETRIES - 1:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


async def _convert_storage(
    connection: asyncpg.Connection[Any], plan: TablePlan, result: TableResult
) -> None:
    todo = [
        (c, plan.live.columns[c.name])
        for c in plan.columns
        if plan.live.columns[c.name] != c.storage
    ]
    indexes = [
        c.searchable for c in plan.columns if c.searchable and c.searchable not in plan.live.columns
    ]
    if not todo and not indexes:
        return
    async with connection.transaction():
        await connection.execute(CANONICAL_SETTINGS_SQL)
        for column, physical in todo:
            await connection.execute(storage_conversion_sql(column, physical))
            result.converted.append(f"{column.name}: {physical} -> {column.storage}")
        for name in indexes:
            await connection.execute(
                f"ALTER TABLE {_table_sql(plan)} ADD COLUMN {quote_ident(name)} bytea"
            )
            result.converted.append(f"{name}: added (blind index)")


async def _install_guards(
    connection: asyncpg.Connection[Any], plan: TablePlan, result: TableResult
) -> None:
    live = await load_live_schema(connection, [plan.name])
    table = _table_sql(plan)
    for column in plan.columns:
        status = guard_status(column, live)
        if status == "installed":
            continue
        name = quote_ident(guard_name(column.name))
        try:
            async with connection.transaction():
                # The constraint is added NOT VALID (an instant catalog change under a
                # brief ACCESS EXCLUSIVE lock); never queue the application behind a
                # long transaction for it.
                await connection.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
                await _add_guard(connection, table, column, name, status)
        except asyncpg.LockNotAvailableError:
            raise JobError(
                f"could not lock {plan.name} within {_LOCK_TIMEOUT} to add guard "
                f"{guard_name(column.name)}; run migrate again (done rows are skipped)"
            ) from None
        try:
            await connection.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")
        except asyncpg.CheckViolationError:
            raise JobError(
                f"guard {guard_name(column.name)} on {plan.name} is installed for new writes but "
                "not validated: some rows still hold plaintext (written around pgseal, or "
                "skipped by an earlier run); `pgseal audit` lists them, then run migrate again"
            ) from None
        result.guards.append(f"installed {guard_name(column.name)}")


async def _add_guard(
    connection: asyncpg.Connection[Any], table: str, column: ProtectedColumn, name: str, status: str
) -> None:
    await connection.execute(GUARD_FUNCTIONS_SQL)
    if status != "missing":
        await connection.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    await connection.execute(
        f"ALTER TABLE {table} ADD CONSTRAINT {name} {guard_definition(column)} NOT VALID"
    )


async def _drop_guards(
    connection: asyncpg.Connection[Any], plan: TablePlan, result: TableResult
) -> None:
    table = _table_sql(plan)
    for column in plan.columns:
        name = guard_name(column.name)
        if name in plan.live.checks:
            await connection.execute(
                f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {quote_ident(name)}"
            )
            result.guards.append(f"dropped {name}")


def _logical_sql(column: ProtectedColumn) -> str:
    if column.type_modifier is not None:
        return f"{column.logical_type}({column.type_modifier})"
    return column.logical_type


async def _restore_types(
    connection: asyncpg.Connection[Any], plan: TablePlan, result: TableResult
) -> None:
    table = _table_sql(plan)
    async with connection.transaction():
        await connection.execute(CANONICAL_SETTINGS_SQL)
        for column in plan.columns:
            name = quote_ident(column.name)
            logical = _logical_sql(column)
            if column.logical_type == column.storage:
                continue
            text = f"convert_from({name}, 'UTF8')" if column.storage == "bytea" else name
            await connection.execute(
                f"ALTER TABLE {table} ALTER COLUMN {name} TYPE {logical} USING {text}::{logical}"
            )
            result.converted.append(f"{column.name}: {column.storage} -> {logical}")
