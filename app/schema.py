"""Applying the app's SQL migrations (``python -m app migrate``).

Migrations are the numbered ``app/migrations/NNNN_name.sql`` files, applied in
order over a direct connection (as a DBA would, not through pgseal), each in its
own transaction, and recorded in ``schema_migrations`` with a checksum of the
file. Running ``migrate`` again applies only what is new, so it is idempotent; a
transaction-level advisory lock makes concurrent runs take turns.

Storage mode. ``{{enc:T}}`` in a file marks an encrypted column of logical type
T. ``EncryptedStorage.BYTEA`` (the default, a pgseal deployment) renders it as
``bytea``, where pgseal keeps its envelopes. ``EncryptedStorage.PLAINTEXT``
(``--plaintext-baseline``) renders it as T: an ordinary schema for running the
app straight against Postgres (the benchmark's baseline, and the leak scan's
own test, which must find plaintext there). The mode is recorded with every migration and a
database cannot be migrated in the other mode later.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources

import asyncpg

from app.errors import MigrationChanged, MigrationError, MigrationModeMismatch

__all__ = [
    "LOGICAL_TYPES",
    "EncryptedStorage",
    "Migration",
    "applied_migrations",
    "load_migrations",
    "migrate",
    "render",
]

#: The logical types pgseal can encrypt (``rules.model.LOGICAL_TYPES``, copied:
#: the app imports nothing from pgseal).
LOGICAL_TYPES = frozenset(
    {
        "text",
        "varchar",
        "integer",
        "bigint",
        "smallint",
        "numeric",
        "boolean",
        "date",
        "timestamp",
        "timestamptz",
        "uuid",
        "jsonb",
        "bytea",
    }
)

_PLACEHOLDER = re.compile(r"\{\{\s*enc:(\w+)\s*\}\}")
_FILENAME = re.compile(r"^(\d{4})_(\w+)\.sql$")
# Any number will do as long as it is the app's own: it names the lock.
_ADVISORY_LOCK = 0x1A5EA1


class EncryptedStorage(StrEnum):
    """How ``{{enc:T}}`` columns are created."""

    BYTEA = "bytea"  # pgseal deployment: ciphertext envelopes
    PLAINTEXT = "plaintext"  # baseline: the logical type itself


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str  # as shipped, with placeholders

    @property
    def checksum(self) -> str:
        # Identifies the file's content for change detection; not a security measure.
        return hashlib.sha256(self.sql.encode()).hexdigest()


def render(sql: str, storage: EncryptedStorage) -> str:
    """Replace every ``{{enc:T}}`` outside ``--`` comments for the storage mode.

    >>> render("email {{enc:text}} NOT NULL", EncryptedStorage.BYTEA)
    'email bytea NOT NULL'
    >>> render("miles {{enc:numeric}}", EncryptedStorage.PLAINTEXT)
    'miles numeric'
    """

    def replace(match: re.Match[str]) -> str:
        logical = match.group(1).lower()
        if logical not in LOGICAL_TYPES:
            raise MigrationError(f"unknown logical type in {match.group(0)}")
        return "bytea" if storage is EncryptedStorage.BYTEA else logical

    lines = []
    for line in sql.splitlines(keepends=True):
        # Comments may mention placeholders; only code is rendered. (The
        # migrations put no "--" inside string literals.)
        code, dashes, comment = line.partition("--")
        code = _PLACEHOLDER.sub(replace, code)
        if "{{" in code:
            raise MigrationError(f"malformed placeholder (expected {{{{enc:TYPE}}}}): {line!r}")
        lines.append(code + dashes + comment)
    return "".join(lines)


def load_migrations() -> list[Migration]:
    """The migrations shipped in ``app/migrations``, in version order."""
    found = []
    for entry in resources.files("app").joinpath("migrations").iterdir():
        match = _FILENAME.match(entry.name)
        if match:
            found.append(Migration(match.group(1), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version: {versions}")
    return found


_HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    storage    text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def applied_migrations(
    conn: asyncpg.Connection[asyncpg.Record],
) -> dict[str, asyncpg.Record]:
    """The rows of ``schema_migrations`` by version (empty before the first run)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum, storage FROM schema_migrations")
    return {r["version"]: r for r in rows}


async def migrate(
    dsn: str, *, storage: EncryptedStorage = EncryptedStorage.BYTEA
) -> list[Migration]:
    """Apply the migrations not yet applied; return those it applied."""
    conn = await asyncpg.connect(dsn)
    try:
        return await _migrate(conn, storage)
    finally:
        await conn.close()


async def _migrate(
    conn: asyncpg.Connection[asyncpg.Record], storage: EncryptedStorage
) -> list[Migration]:
    applied: list[Migration] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK)
        await conn.execute(_HISTORY_DDL)
    for migration in load_migrations():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK)
            # Re-read under the lock: another migrate may have run meanwhile.
            history = await applied_migrations(conn)
            done = history.get(migration.version)
            if done is not None:
                if done["storage"] != storage.value:
                    raise MigrationModeMismatch(
                        f"the database was migrated with {done['storage']} storage for"
                        f" encrypted columns, not {storage.value}"
                    )
                if done["checksum"] != migration.checksum:
                    raise MigrationChanged(
                        f"migration {migration.version}_{migration.name} has changed since"
                        " it was applied; add a new migration instead of editing it"
                    )
                continue
            await conn.execute(render(migration.sql, storage))
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, storage)"
                " VALUES ($1, $2, $3, $4)",
                migration.version,
                migration.name,
                migration.checksum,
                storage.value,
            )
            applied.append(migration)
    return applied
