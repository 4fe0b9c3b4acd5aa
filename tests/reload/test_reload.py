"""The catalog map follows DDL made through pgseal; column rules reload on SIGHUP.

Both without dropping the connections that are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import PgServer
from tests.pgseal_process import PgsealProcess
from tests.stacks import EncryptedDatabase, encrypted_database

RULES = """tables:
  people:
    tenant_column: business_id
    columns:
      phone: {type: text}
"""
MORE_RULES = RULES + "      email: {type: text, searchable: email_bidx}\n"


@pytest.fixture
async def setup(
    pg_server: PgServer, fresh_db: str, tmp_path: Path
) -> AsyncIterator[EncryptedDatabase]:
    encrypted = await encrypted_database(
        pg_server,
        fresh_db,
        tmp_path,
        table_sql="CREATE TABLE people (id serial PRIMARY KEY, business_id int NOT NULL,"
        " phone bytea, email bytea, email_bidx bytea, filler text)",
        rules=RULES,
    )
    try:
        yield encrypted
    finally:
        encrypted.proxy.stop()


async def _sighup_and_wait(proxy: PgsealProcess, line: str) -> None:
    before = proxy.log_text().count(line)
    proxy.signal(signal.SIGHUP)
    for _ in range(100):
        if proxy.log_text().count(line) > before:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {line!r} in pgseal's log after SIGHUP")


async def test_ddl_through_pgseal_refreshes_the_catalog(
    setup: EncryptedDatabase,
) -> None:
    proxy, direct = setup.proxy, setup.direct
    conn = await asyncpg.connect(setup.dsn())
    try:
        await conn.execute("INSERT INTO people (business_id, phone) VALUES (1, '555-1')")
        # Moving the protected column changes its attribute number.
        await conn.execute("ALTER TABLE people DROP COLUMN phone")
        await conn.execute("ALTER TABLE people ADD COLUMN phone bytea")
        await conn.execute("INSERT INTO people (business_id, phone) VALUES (1, '555-2')")
        rows = await conn.fetch("SELECT phone FROM people WHERE phone IS NOT NULL")
        assert [r["phone"] for r in rows] == ["555-2"]
    finally:
        await conn.close()
    raw = await asyncpg.connect(direct)
    try:
        value = await raw.fetchval("SELECT phone FROM people WHERE phone IS NOT NULL")
        assert value[0] == 1
        assert b"555-2" not in value
    finally:
        await raw.close()
    assert "catalog map refreshed" in proxy.log_text()


async def test_sighup_reloads_column_rules_keeping_connections(
    setup: EncryptedDatabase,
) -> None:
    proxy, direct = setup.proxy, setup.direct
    conn = await asyncpg.connect(setup.dsn())
    try:
        # email is not protected yet: pgseal passes the statement through.
        await conn.execute("INSERT INTO people (business_id, email) VALUES (2, 'a@x')")
        text = proxy.config_path.read_text().replace(RULES, MORE_RULES)
        proxy.config_path.write_text(text)
        await _sighup_and_wait(proxy, "column rules reloaded")
        # The same connection now writes email sealed, with its blind index.
        await conn.execute("INSERT INTO people (business_id, email) VALUES (2, 'b@x')")
        found = await conn.fetch(
            "SELECT id FROM people WHERE email = $1 AND business_id = 2", "b@x"
        )
        assert len(found) == 1
    finally:
        await conn.close()
    raw = await asyncpg.connect(direct)
    try:
        stored = await raw.fetchval("SELECT email FROM people WHERE email_bidx IS NOT NULL")
        assert stored[0] == 1
        assert b"b@x" not in stored
    finally:
        await raw.close()


async def test_sighup_with_a_broken_rule_keeps_the_running_rules(
    setup: EncryptedDatabase,
) -> None:
    proxy = setup.proxy
    text = proxy.config_path.read_text().replace(RULES, RULES + "      nosuch: {type: text}\n")
    proxy.config_path.write_text(text)
    await _sighup_and_wait(proxy, "new column rules not applied")
    assert "nosuch does not exist" in proxy.log_text()
    conn = await asyncpg.connect(setup.dsn())
    try:
        await conn.execute("INSERT INTO people (business_id, phone) VALUES (3, '555-3')")
        assert await conn.fetchval("SELECT phone FROM people WHERE business_id = 3") == "555-3"
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _direct_and_through(
    setup: EncryptedDatabase,
) -> AsyncIterator[tuple[asyncpg.Connection[Any], asyncpg.Connection[Any]]]:
    """A connection straight to Postgres (for DDL pgseal cannot see) and one through pgseal."""
    raw = await asyncpg.connect(setup.direct)
    try:
        conn = await asyncpg.connect(setup.dsn())
        try:
            yield raw, conn
        finally:
            await conn.close()
    finally:
        await raw.close()


async def test_sighup_rereads_the_catalog_after_direct_ddl(
    setup: EncryptedDatabase,
) -> None:
    proxy = setup.proxy
    async with _direct_and_through(setup) as (raw, conn):
        # DDL straight on Postgres, which pgseal cannot see: phone's attnum moves.
        await raw.execute("ALTER TABLE people DROP COLUMN phone")
        await raw.execute("ALTER TABLE people ADD COLUMN phone bytea")
        # Same config.yaml: SIGHUP is the DBA's way to say the schema moved.
        await _sighup_and_wait(proxy, "catalog map re-read on reload")
        await conn.execute("INSERT INTO people (business_id, phone) VALUES (4, '555-4')")
        # With the old map the new attnum is not a protected column and the
        # envelope would reach the client as bytes.
        assert await conn.fetchval("SELECT phone FROM people WHERE business_id = 4") == "555-4"
        stored = await raw.fetchval("SELECT phone FROM people WHERE business_id = 4")
        assert stored[0] == 1
        assert b"555-4" not in stored


async def test_sighup_keeps_the_running_map_when_the_catalog_disagrees(
    setup: EncryptedDatabase,
) -> None:
    proxy = setup.proxy
    async with _direct_and_through(setup) as (raw, conn):
        await conn.execute("INSERT INTO people (business_id, phone) VALUES (5, '555-5')")
        await raw.execute("ALTER TABLE people RENAME COLUMN phone TO phone_old")
        await _sighup_and_wait(proxy, "catalog map not re-read, keeping the running one")
        assert "phone does not exist" in proxy.log_text()
        # Renamed back: same attnum, so the map kept from before is right again.
        await raw.execute("ALTER TABLE people RENAME COLUMN phone_old TO phone")
        assert await conn.fetchval("SELECT phone FROM people WHERE business_id = 5") == "555-5"
