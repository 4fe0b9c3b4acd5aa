"""One database with a protected table, key schema and a pgseal in front of it."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PgServer
from tests.pgseal_process import REPO_ROOT, PgsealProcess, start_pgseal

SCHEMA = """
CREATE TABLE customers (
    id serial PRIMARY KEY,
    business_id bigint NOT NULL,
    name text,
    phone bytea,
    tax_id bytea,
    tax_id_bidx bytea,
    credit bytea,
    born bytea,
    note text
);
"""

TABLES = """
tables:
  customers:
    tenant_column: business_id
    columns:
      phone: {type: text}
      tax_id: {type: text, searchable: tax_id_bidx, normalize: [trim, casefold]}
      credit: {type: numeric}
      born: {type: date}
      note: {type: text, storage: text}
"""


@dataclass(frozen=True)
class Encrypted:
    """pgseal with the customers table protected, and a direct DSN for raw checks."""

    proxy: PgsealProcess
    direct_dsn: str
    user: str
    database: str

    def dsn(self, **params: str) -> str:
        return self.proxy.dsn(user=self.user, database=self.database, **params)


@pytest.fixture(scope="module")
def encrypted(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Encrypted]:
    import asyncio

    name = "copy_" + secrets.token_hex(4)

    async def setup() -> None:
        admin = await asyncpg.connect(pg_server.dsn())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        db = await asyncpg.connect(pg_server.dsn(name))
        try:
            await db.execute(SCHEMA)
        finally:
            await db.close()

    asyncio.run(setup())
    direct = pg_server.dsn(name)
    subprocess.run(
        [sys.executable, "-m", "proxy", "keys", "init", "--dsn", direct],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    key = base64.b64encode(os.urandom(32)).decode()
    proxy = start_pgseal(
        tmp_path_factory.mktemp("pgseal"),
        f"postgresql://{pg_server.host}:{pg_server.port}/{name}",
        f"service_dsn: {direct}\nmaster_key: env:PGSEAL_TEST_MK\n{TABLES}",
        env={"PGSEAL_TEST_MK": key},
    )
    user = asyncpg_user(direct)
    try:
        yield Encrypted(proxy, direct, user, name)
    finally:
        proxy.stop()


def asyncpg_user(dsn: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(dsn).username or "postgres"


@pytest.fixture
async def direct(encrypted: Encrypted) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(encrypted.direct_dsn)
    try:
        await conn.execute("TRUNCATE customers")
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def client(
    encrypted: Encrypted, direct: asyncpg.Connection
) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(encrypted.dsn())
    try:
        yield conn
    finally:
        await conn.close()


def psql_path() -> Path:
    from proxy.embedded import find_binaries

    return find_binaries().bin_dir / "psql"
