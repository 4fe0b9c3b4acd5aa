"""``pgseal audit``: what an auditor can prove from the raw tables.

The audit reads with a direct connection in one ``READ ONLY`` ``REPEATABLE
READ`` transaction (one consistent snapshot; it can run with a role that only
has SELECT), walks each configured table once with a server-side cursor, and
classifies every value of every configured column:

* NULL, or a **well-formed envelope** (bytea: version byte 0x01 and at least
  37 bytes; text: ``pgseal1:`` + base64 of such bytes), or else **plaintext**:
  anything that is not ciphertext, counted and listed by primary key (never
  by value);
* per envelope, the key id's row in ``pgseal.keys`` (read without wrapped
  bytes): counted per tenant and key version; a key id unknown to the key
  store, or whose tenant is not the row's tenant (an envelope copied from
  another business's row), is a finding;
* with a master key, every envelope is also opened (AES-GCM authenticates the
  key id and ``schema.table.column``): a failure is **tamper**; a value under
  a destroyed (shredded) key is counted, not a finding.

It also reports each column's guard (``rules.schema_check.guard_status``) and
lists columns whose names look like personal data but are not configured.
:meth:`AuditReport.findings` drives the exit status: plaintext, tamper,
tenant mismatch and unknown keys, plus a missing or altered guard on a column
not marked ``migrating``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import asyncpg

from crypto.envelope import peek_key_id
from crypto.errors import EnvelopeTampered, KeyDestroyed, UnknownKey, WrongTenant
from crypto.field import FieldCrypto
from proxy.live_schema import load_live_schema, pii_looking_columns
from proxy.migrate import stored_envelope
from rules.model import ProtectedColumn, ProtectedTable, Rules
from rules.schema_check import LiveSchema, guard_status, quote_ident

__all__ = ["AuditReport", "ColumnAudit", "KeyRow", "KeyVersionUsage", "audit"]

_FETCH: Final = 2000
_DEFAULT_LISTED: Final = 20


@dataclass(frozen=True, slots=True)
class KeyRow:
    tenant: str
    version: int
    state: str


@dataclass(frozen=True, slots=True, order=True)
class KeyVersionUsage:
    """One data-key version and how many values of the scanned columns it seals:
    a retired version at 0 is no longer needed (after ``pgseal reencrypt``)."""

    tenant: str
    version: int
    state: str
    envelopes: int


@dataclass(slots=True)
class ColumnAudit:
    """Counts for one configured column (no values, only primary keys)."""

    column: str
    storage: str
    migrating: bool
    guard: str = "missing"
    rows: int = 0
    nulls: int = 0
    envelopes: int = 0
    plaintext: int = 0
    plaintext_keys: list[str] = field(default_factory=list)
    #: "tenant/vN" -> envelopes under that key version
    by_key_version: dict[str, int] = field(default_factory=dict)
    #: row tenant -> envelopes
    by_tenant: dict[str, int] = field(default_factory=dict)
    unknown_key: int = 0
    unknown_key_keys: list[str] = field(default_factory=list)
    tenant_mismatch: int = 0
    tenant_mismatch_keys: list[str] = field(default_factory=list)
    authenticated: int | None = None  # None without a master key
    tampered: int = 0
    tampered_keys: list[str] = field(default_factory=list)
    destroyed_key: int = 0

    def note(self, kind: str, key: str, limit: int) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        keys: list[str] = getattr(self, f"{kind}_keys")
        if len(keys) < limit:
            keys.append(key)

    def findings(self) -> list[str]:
        out = []
        for kind, what in (
            ("plaintext", "plaintext value(s)"),
            ("tampered", "envelope(s) fail authentication"),
            ("tenant_mismatch", "envelope(s) under another tenant's key"),
            ("unknown_key", "envelope(s) name an unknown key id"),
        ):
            count: int = getattr(self, kind)
            if count:
                keys: list[str] = getattr(self, f"{kind}_keys")
                more = ", ..." if count > len(keys) else ""
                out.append(f"{self.column}: {count} {what} (pk {', '.join(keys)}{more})")
        if not self.migrating and self.guard != "installed":
            out.append(f"{self.column}: guard {self.guard}")
        return out


@dataclass(slots=True)
class AuditReport:
    columns: list[ColumnAudit]
    unconfigured_pii: list[str]
    master_key: bool
    rows_scanned: int = 0
    seconds: float = 0.0
    key_versions: list[KeyVersionUsage] = field(default_factory=list)

    def findings(self) -> list[str]:
        return [f for c in self.columns for f in c.findings()]

    @property
    def ok(self) -> bool:
        return not self.findings()

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "master_key": self.master_key,
            "rows_scanned": self.rows_scanned,
            "seconds": round(self.seconds, 3),
            "findings": self.findings(),
            "columns": [asdict(c) for c in self.columns],
            "key_versions": [asdict(k) for k in self.key_versions],
            "unconfigured_pii": self.unconfigured_pii,
        }


Progress = Callable[[str, int, int], None]  # table, rows scanned, estimated total


async def _key_rows(connection: asyncpg.Connection[Any]) -> dict[int, KeyRow]:
    exists = await connection.fetchval("SELECT to_regclass('pgseal.keys') IS NOT NULL")
    if not exists:
        return {}
    rows = await connection.fetch(
        "SELECT key_id, tenant, version, state FROM pgseal.keys WHERE kind = 'data'"
    )
    return {r["key_id"]: KeyRow(r["tenant"], r["version"], r["state"]) for r in rows}


async def audit(
    connection: asyncpg.Connection[Any],
    rules: Rules,
    *,
    crypto: FieldCrypto | None = None,
    listed: int = _DEFAULT_LISTED,
    progress: Progress | None = None,
) -> AuditReport:
    """Scan every configured column (see the module docstring)."""
    started = time.monotonic()
    names = sorted(rules.tables)
    live = await load_live_schema(connection, names)
    keys = await _key_rows(connection)
    known = {c.qualified for t in rules.tables.values() for c in t.columns.values()}
    known |= {
        f"{t.qualified}.{c.searchable}"
        for t in rules.tables.values()
        for c in t.columns.values()
        if c.searchable
    }
    report = AuditReport([], await pii_looking_columns(connection, known), crypto is not None)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        for name in names:
            table = rules.tables[name]
            audits = [
                ColumnAudit(c.qualified, c.storage, c.migrating, guard_status(c, live))
                for c in table.columns.values()
            ]
            report.columns.extend(audits)
            if name not in live.tables:
                for a in audits:
                    a.guard = "table missing"
                continue
            report.rows_scanned += await _scan_table(
                connection, table, live, audits, keys, crypto, listed, progress
            )
    counts: dict[str, int] = {}
    for column in report.columns:
        for version, n in column.by_key_version.items():
            counts[version] = counts.get(version, 0) + n
    report.key_versions = sorted(
        KeyVersionUsage(k.tenant, k.version, k.state, counts.get(f"{k.tenant}/v{k.version}", 0))
        for k in keys.values()
    )
    report.seconds = time.monotonic() - started
    return report


async def _scan_table(
    connection: asyncpg.Connection[Any],
    table: ProtectedTable,
    live: LiveSchema,
    audits: list[ColumnAudit],
    keys: dict[int, KeyRow],
    crypto: FieldCrypto | None,
    listed: int,
    progress: Progress | None,
) -> int:
    found = live.tables[table.qualified]
    present = [c for c in table.columns.values() if c.name in found.columns]
    pk = found.primary_key or ("ctid",)
    pk_text = " || ',' || ".join(f"{quote_ident(k)}::text" for k in pk)
    tenant = (
        f"{quote_ident(table.tenant_column)}::text"
        if table.tenant_column in found.columns
        else "NULL::text"
    )
    # Stored values are compared as they are stored: bytea as bytes, text as text.
    values = ", ".join(quote_ident(c.name) for c in present) or "NULL"
    relation = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
    total = int(
        await connection.fetchval(
            "SELECT greatest(reltuples, 0)::int8 FROM pg_class WHERE oid = $1::regclass",
            relation,
        )
        or 0
    )
    by_name = {a.column: a for a in audits}
    column_audits = [by_name[c.qualified] for c in present]
    if crypto is not None:
        for a in column_audits:
            a.authenticated = 0
    query = f"SELECT ({pk_text}), {tenant}, {values} FROM {relation}"
    cursor = await connection.cursor(query)
    scanned = 0
    while True:
        rows = await cursor.fetch(_FETCH)
        if not rows:
            break
        if crypto is not None:
            ids: set[int] = set()
            for row in rows:
                for i, column in enumerate(present):
                    stored = row[2 + i]
                    env = None if stored is None else stored_envelope(column, stored)
                    if env is not None:
                        ids.add(peek_key_id(env))
            await crypto.prefetch(ids & set(keys))
        for row in rows:
            label, row_tenant = row[0], row[1]
            for i, column in enumerate(present):
                await _classify(
                    column_audits[i], column, row[2 + i], label, row_tenant, keys, crypto, listed
                )
        scanned += len(rows)
        if progress is not None:
            progress(table.qualified, scanned, max(total, scanned))
    for a in column_audits:
        a.rows = scanned
    return scanned


async def _classify(
    audit_: ColumnAudit,
    column: ProtectedColumn,
    stored: Any,
    label: str,
    row_tenant: str | None,
    keys: dict[int, KeyRow],
    crypto: FieldCrypto | None,
    listed: int,
) -> None:
    if stored is None:
        audit_.nulls += 1
        return
    envelope = stored_envelope(column, stored)
    if envelope is None:
        audit_.note("plaintext", label, listed)
        return
    audit_.envelopes += 1
    key_id = peek_key_id(envelope)
    key = keys.get(key_id)
    if key is None:
        audit_.note("unknown_key", label, listed)
        return
    version = f"{key.tenant}/v{key.version}"
    audit_.by_key_version[version] = audit_.by_key_version.get(version, 0) + 1
    tenant = row_tenant if row_tenant is not None else "(null)"
    audit_.by_tenant[tenant] = audit_.by_tenant.get(tenant, 0) + 1
    if key.tenant != row_tenant:
        audit_.note("tenant_mismatch", label, listed)
    if crypto is None:
        return
    try:
        await crypto.open_for(column.qualified, envelope)
    except KeyDestroyed:
        audit_.destroyed_key += 1
        return
    except (EnvelopeTampered, WrongTenant):
        audit_.note("tampered", label, listed)
        return
    except UnknownKey:
        audit_.note("unknown_key", label, listed)
        return
    assert audit_.authenticated is not None
    audit_.authenticated += 1
