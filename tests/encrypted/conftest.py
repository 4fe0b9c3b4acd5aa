"""A Postgres of its own (log_statement=all, so tests can grep what reached it),
a table with a protected column of every logical type, and pgseal in front."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from proxy.embedded import EmbeddedPostgres
from tests.pgseal_process import REPO_ROOT, PgsealProcess, start_pgseal

# (column, logical type) for every logical type pgseal supports.
TYPED = [
    ("c_text", "text"),
    ("c_varchar", "varchar(20)"),
    ("c_int", "integer"),
    ("c_bigint", "bigint"),
    ("c_smallint", "smallint"),
    ("c_numeric", "numeric"),
    ("c_bool", "boolean"),
    ("c_date", "date"),
    ("c_ts", "timestamp"),
    ("c_tstz", "timestamptz"),
    ("c_uuid", "uuid"),
    ("c_jsonb", "jsonb"),
    ("c_bytea", "bytea"),
]

SCHEMA = (
    "CREATE TABLE typed (id serial PRIMARY KEY, business_id int NOT NULL, "
    + ", ".join(f"{name} bytea" for name, _ in TYPED)
    + ", c_armored text);\n"
    "CREATE TABLE customers (id serial PRIMARY KEY, business_id int NOT NULL, name text,"
    " email bytea, email_bidx bytea, tax_id bytea, tax_id_bidx bytea, phone bytea,"
    " credit bytea, UNIQUE (business_id, name));\n"
    "CREATE TABLE invoices (id serial PRIMARY KEY, business_id int NOT NULL,"
    " customer_id int, total numeric, notes bytea);\n"
    "CREATE TABLE plain (id int, v text);\n"
)

RULES = (
    "tables:\n  typed:\n    tenant_column: business_id\n    columns:\n"
    + "".join(f"      {name}: {{type: {kind}}}\n" for name, kind in TYPED)
    + "      c_armored: {type: text, storage: text}\n"
    "  customers:\n    tenant_column: business_id\n    columns:\n"
    "      email: {type: text, searchable: email_bidx, normalize: [trim, casefold]}\n"
    "      tax_id: {type: text, searchable: tax_id_bidx}\n"
    "      phone: {type: text}\n"
    "      credit: {type: numeric}\n"
    "  invoices:\n    tenant_column: business_id\n    columns:\n"
    "      notes: {type: text}\n"
)


@dataclass(frozen=True)
class Stack:
    cluster: EmbeddedPostgres
    proxy: PgsealProcess
    master_key: str

    @property
    def direct_dsn(self) -> str:
        return self.cluster.dsn()

    def dsn(self, **params: str) -> str:
        return self.proxy.dsn(user="postgres", database="postgres", **params)

    def conninfo(self, **params: str) -> str:
        extra = " ".join(f"{k}={v}" for k, v in params.items())
        return f"host=127.0.0.1 port={self.proxy.port} user=postgres dbname=postgres {extra}"

    def server_log(self) -> str:
        return self.cluster.logfile.read_text(errors="replace")


#: Distinctive plaintexts the tests write through pgseal; none may appear in its log.
LOGGED_NEVER = ("555-0101", "ann@example.com", "armour me", "p-src", "555-PSQL", "sa-new")


def assert_log_clean(proxy: PgsealProcess, master_key: str) -> None:
    log = proxy.log_text()
    for secret in (*LOGGED_NEVER, master_key):
        assert secret not in log, "a plaintext or the master key reached pgseal's log"


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = Path(tempfile.mkdtemp(prefix="pgseal-enc-"))
    # pgseal's log outlives the package: tests/test_zz_secrets.py scans it too.
    logs = tmp_path_factory.mktemp("pgseal-enc")
    cluster = EmbeddedPostgres(datadir=base / "data", settings={"log_statement": "'all'"})
    cluster.start()
    try:

        async def schema() -> None:
            conn = await asyncpg.connect(cluster.dsn())
            try:
                await conn.execute(SCHEMA)
            finally:
                await conn.close()

        asyncio.run(schema())
        subprocess.run(
            [sys.executable, "-m", "proxy", "keys", "init", "--dsn", cluster.dsn()],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        key = base64.b64encode(os.urandom(32)).decode()
        proxy = start_pgseal(
            logs,
            f"postgresql://127.0.0.1:{cluster.port}/postgres",
            f"service_dsn: {cluster.dsn()}\nmaster_key: env:PGSEAL_MK\n{RULES}",
            {"PGSEAL_MK": key},
        )
        try:
            yield Stack(cluster, proxy, key)
        finally:
            proxy.stop()
        assert_log_clean(proxy, key)
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def raw(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection (the auditor's view); the tables start empty."""
    conn = await asyncpg.connect(stack.direct_dsn)
    try:
        await conn.execute("TRUNCATE typed, customers, invoices, plain")
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def app(stack: Stack, raw: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """An application connection through pgseal."""
    conn = await asyncpg.connect(stack.dsn())
    try:
        yield conn
    finally:
        await conn.close()


def assert_envelope(value: object, *plaintexts: str) -> None:
    """A raw stored value is a v1 envelope (bytea) and contains no plaintext."""
    assert isinstance(value, bytes)
    assert value[0] == 1
    assert len(value) >= 37
    for text in plaintexts:
        raw = text.encode()
        # Random ciphertext holds any given 1-3 bytes by chance often enough
        # ('t' in a 38-byte envelope: 14 %): only longer plaintexts say anything.
        if len(raw) >= 4:
            assert raw not in value


async def assert_never_reached(stack: Stack, *markers: str) -> None:
    """No statement containing ``markers`` reached Postgres (log_statement=all).

    A control statement sent directly afterwards must show up in the log first,
    so an absent marker means "never sent", not "not written yet".
    """
    control = f"pgseal_control_{os.urandom(6).hex()}"
    conn = await asyncpg.connect(stack.direct_dsn)
    try:
        await conn.execute(f"SELECT '{control}'")
    finally:
        await conn.close()
    for _ in range(200):
        log = stack.server_log()
        if control in log:
            break
        await asyncio.sleep(0.025)
    else:
        raise AssertionError("the control statement never reached the server log")
    for marker in markers:
        assert marker not in log, f"{marker!r} reached Postgres"


def marker() -> str:
    """A unique token to put in a statement and look for in the server log."""
    return f"mk_{os.urandom(6).hex()}"
