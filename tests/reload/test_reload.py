"""The catalog map follows DDL made through pgseal; column rules reload on SIGHUP.

Both without dropping the connections that are open.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PgServer
from tests.pgseal_process import REPO_ROOT, PgsealProcess, start_pgseal

RULES = """
tables:
  people:
    tenant_column: business_id
    columns:
      phone: {type: text}
"""
MORE_RULES = RULES + "      email: {type: text, searchable: email_bidx}\n"


async def _database(pg_server: PgServer) -> str:
    name = "reload_" + secrets.token_hex(4)
    admin = await asyncpg.connect(pg_server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    db = await asyncpg.connect(pg_server.dsn(name))
    try:
        await db.execute(
            "CREATE TABLE people (id serial PRIMARY KEY, business_id int NOT NULL,"
            " phone bytea, email bytea, email_bidx bytea, filler text)"
        )
    finally:
        await db.close()
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "proxy", "keys", "init", "--dsn", pg_server.dsn(name)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    return name


@pytest.fixture
async def setup(pg_server: PgServer, tmp_path: Path) -> AsyncIterator[tuple[PgsealProcess, str]]:
    name = await _database(pg_server)
    direct = pg_server.dsn(name)
    proxy = await asyncio.to_thread(
        start_pgseal,
        tmp_path,
        f"postgresql://{pg_server.host}:{pg_server.port}/{name}",
        f"service_dsn: {direct}\nmaster_key: env:MK\n{RULES}",
        {"MK": base64.b64encode(os.urandom(32)).decode()},
    )
    try:
        yield proxy, direct
    finally:
        proxy.stop()


def _user(dsn: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(dsn).username or "postgres"


async def test_ddl_through_pgseal_refreshes_the_catalog(
    setup: tuple[PgsealProcess, str],
) -> None:
    proxy, direct = setup
    database = direct.rsplit("/", 1)[1]
    conn = await asyncpg.connect(proxy.dsn(user=_user(direct), database=database))
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
    setup: tuple[PgsealProcess, str],
) -> None:
    proxy, direct = setup
    database = direct.rsplit("/", 1)[1]
    conn = await asyncpg.connect(proxy.dsn(user=_user(direct), database=database))
    try:
        # email is not protected yet: pgseal passes the statement through.
        await conn.execute("INSERT INTO people (business_id, email) VALUES (2, 'a@x')")
        text = proxy.config_path.read_text().replace(RULES, MORE_RULES)
        proxy.config_path.write_text(text)
        proxy.signal(signal.SIGHUP)
        for _ in range(100):
            if "column rules reloaded" in proxy.log_text():
                break
            await asyncio.sleep(0.05)
        assert "column rules reloaded" in proxy.log_text()
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
    setup: tuple[PgsealProcess, str],
) -> None:
    proxy, direct = setup
    database = direct.rsplit("/", 1)[1]
    text = proxy.config_path.read_text().replace(RULES, RULES + "      nosuch: {type: text}\n")
    proxy.config_path.write_text(text)
    proxy.signal(signal.SIGHUP)
    for _ in range(100):
        if "new column rules not applied" in proxy.log_text():
            break
        await asyncio.sleep(0.05)
    assert "nosuch does not exist" in proxy.log_text()
    conn = await asyncpg.connect(proxy.dsn(user=_user(direct), database=database))
    try:
        await conn.execute("INSERT INTO people (business_id, phone) VALUES (3, '555-3')")
        assert await conn.fetchval("SELECT phone FROM people WHERE business_id = 3") == "555-3"
    finally:
        await conn.close()


async def _sighup_and_wait(proxy: PgsealProcess, line: str) -> None:
    before = proxy.log_text().count(line)
    proxy.signal(signal.SIGHUP)
    for _ in range(100):
        if proxy.log_text().count(line) > before:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {line!r} in pgseal's log after SIGHUP")


async def test_sighup_rereads_the_catalog_after_direct_ddl(
    setup: tuple[PgsealProcess, str],
) -> None:
    proxy, direct = setup
    database = direct.rsplit("/", 1)[1]
    raw = await asyncpg.connect(direct)
    conn = await asyncpg.connect(proxy.dsn(user=_user(direct), database=database))
    try:
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
    finally:
        await conn.close()
        await raw.close()


async def test_sighup_keeps_the_running_map_when_the_catalog_disagrees(
    setup: tuple[PgsealProcess, str],
) -> None:
    proxy, direct = setup
    database = direct.rsplit("/", 1)[1]
    raw = await asyncpg.connect(direct)
    conn = await asyncpg.connect(proxy.dsn(user=_user(direct), database=database))
    try:
        await conn.execute("INSERT INTO people (business_id, phone) VALUES (5, '555-5')")
        await raw.execute("ALTER TABLE people RENAME COLUMN phone TO phone_old")
        await _sighup_and_wait(proxy, "catalog map not re-read, keeping the running one")
        assert "phone does not exist" in proxy.log_text()
        # Renamed back: same attnum, so the map kept from before is right again.
        await raw.execute("ALTER TABLE people RENAME COLUMN phone_old TO phone")
        assert await conn.fetchval("SELECT phone FROM people WHERE business_id = 5") == "555-5"
    finally:
        await conn.close()
        await raw.close()
