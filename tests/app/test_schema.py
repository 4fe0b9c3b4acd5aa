"""The migrations, the storage modes, and their agreement with the root config.yaml."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.errors import MigrationChanged, MigrationError, MigrationModeMismatch
from app.schema import EncryptedStorage, Migration, load_migrations, migrate, render
from tests.app.plaintexts import encrypted_columns
from tests.conftest import PgServer

_COLUMNS = """
SELECT c.table_name, c.column_name, c.data_type
FROM information_schema.columns c
JOIN information_schema.tables t USING (table_schema, table_name)
WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
"""


async def _columns(dsn: str) -> dict[tuple[str, str], str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(_COLUMNS)
    finally:
        await conn.close()
    return {(f"public.{r['table_name']}", r["column_name"]): r["data_type"] for r in rows}


@pytest.fixture
async def second_db(pg_server: PgServer) -> AsyncIterator[str]:
    name = "t_" + secrets.token_hex(6)
    admin = await asyncpg.connect(pg_server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg_server.dsn(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_bytea_schema_matches_the_pgseal_rules(fresh_db: str) -> None:
    applied = await migrate(fresh_db)  # the default: a pgseal deployment
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    columns = await _columns(fresh_db)
    rules = encrypted_columns()
    assert rules, "no rules parsed"
    for table, specs in rules.items():
        for name, spec in specs.items():
            assert columns.get((table, name)) == "bytea", f"{table}.{name}"
            index = spec.get("searchable")
            if index is not None:
                assert columns.get((table, index)) == "bytea", f"{table}.{index}"
    # Every protected table has its tenant column.
    for table in rules:
        assert (table, "business_id") in columns, table


async def test_every_table_carries_business_id(fresh_db: str) -> None:
    await migrate(fresh_db)
    columns = await _columns(fresh_db)
    tables = {table for table, _ in columns}
    infrastructure = {"public.schema_migrations", "public.businesses"}
    missing = {t for t in tables - infrastructure if (t, "business_id") not in columns}
    assert not missing
    assert len(tables - infrastructure) == 13


async def test_placeholders_and_yaml_agree_both_ways(fresh_db: str, second_db: str) -> None:
    """The columns whose type differs between the two modes are exactly the YAML's."""
    await migrate(fresh_db, storage=EncryptedStorage.BYTEA)
    await migrate(second_db, storage=EncryptedStorage.PLAINTEXT)
    bytea_schema, plain_schema = await _columns(fresh_db), await _columns(second_db)
    assert bytea_schema.keys() == plain_schema.keys()
    differing = {
        key: plain_schema[key] for key in bytea_schema if bytea_schema[key] != plain_schema[key]
    }
    rules = encrypted_columns()
    expected = {
        (table, name): spec["type"]
        for table, specs in rules.items()
        for name, spec in specs.items()
    }
    assert differing.keys() == expected.keys()
    for key, logical in expected.items():
        assert differing[key] == logical, key
    # Blind-index columns exist in both modes (pgseal owns them; unused on the baseline).
    for table, specs in rules.items():
        for spec in specs.values():
            if "searchable" in spec:
                assert plain_schema[(table, spec["searchable"])] == "bytea"


async def test_migrate_is_idempotent_and_records_history(fresh_db: str) -> None:
    first = await migrate(fresh_db, storage=EncryptedStorage.PLAINTEXT)
    assert first
    assert await migrate(fresh_db, storage=EncryptedStorage.PLAINTEXT) == []
    conn = await asyncpg.connect(fresh_db)
    try:
        rows = await conn.fetch("SELECT version, checksum, storage FROM schema_migrations")
    finally:
        await conn.close()
    assert [(r["version"], r["storage"]) for r in rows] == [
        (m.version, "plaintext") for m in load_migrations()
    ]
    assert rows[0]["checksum"] == load_migrations()[0].checksum


async def test_migrate_refuses_the_other_storage_mode(fresh_db: str) -> None:
    await migrate(fresh_db, storage=EncryptedStorage.BYTEA)
    with pytest.raises(MigrationModeMismatch):
        await migrate(fresh_db, storage=EncryptedStorage.PLAINTEXT)


async def test_migrate_refuses_an_edited_migration(fresh_db: str) -> None:
    await migrate(fresh_db)
    conn = await asyncpg.connect(fresh_db)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited'")
    finally:
        await conn.close()
    with pytest.raises(MigrationChanged):
        await migrate(fresh_db)


def test_render_modes_and_errors() -> None:
    sql = "a {{enc:text}},\nb {{ enc:numeric }} -- {{enc:T}} in a comment stays\n"
    assert render(sql, EncryptedStorage.BYTEA) == (
        "a bytea,\nb bytea -- {{enc:T}} in a comment stays\n"
    )
    assert render(sql, EncryptedStorage.PLAINTEXT).startswith("a text,\nb numeric ")
    with pytest.raises(MigrationError, match="unknown logical type"):
        render("x {{enc:money}}", EncryptedStorage.BYTEA)
    with pytest.raises(MigrationError, match="malformed placeholder"):
        render("x {{enc text}}", EncryptedStorage.BYTEA)


def test_migrations_are_numbered_and_checksummed() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert migrations[0].version == "0001"
    assert Migration("1", "a", "x").checksum != Migration("1", "a", "y").checksum
