"""Text input read as the server behind pgseal reads it, whatever its version.

pgseal converts a protected value itself, so Postgres never parses it. PostgreSQL
16 added to the input syntax (``0x1F``, ``1_000``, ``+infinity``): in front of an
older server pgseal must refuse those too, or an app would see writes succeed
through pgseal that its database refuses everywhere else. Each literal is sent
through pgseal into a protected column and directly into a plaintext column of
the same type, on the pip-installed PostgreSQL 18 and on the system's
(Debian's, 15 on this kind of machine); both must agree.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
import pytest
from psycopg.types.string import TextLoader

from proxy.embedded import EmbeddedPostgres, find_binaries
from tests.pgseal_process import REPO_ROOT, PgsealProcess, start_pgseal

COLUMNS = [("c_int", "integer"), ("c_num", "numeric"), ("c_date", "date"), ("c_ts", "timestamp")]
LITERALS = [
    ("c_int", "0x1F"),
    ("c_int", "1_000"),
    ("c_int", "-0b101"),
    ("c_int", " 42 "),
    ("c_num", "0o17"),
    ("c_num", "1_000.000_1"),
    ("c_num", "1e1_0"),
    ("c_num", "-12.5e3"),
    ("c_date", "+infinity"),
    ("c_date", "-infinity"),
    ("c_ts", "+infinity"),
    ("c_ts", "2024-02-29 12:00"),
]


@pytest.fixture(scope="module", params=["pip", "system"])
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[EmbeddedPostgres, PgsealProcess]]:
    """A server (PostgreSQL 18 from pip, or the system's) with pgseal in front."""
    binaries = find_binaries(need_ssl=request.param == "system")
    base = Path(tempfile.mkdtemp(prefix="pgseal-version-"))
    cluster = EmbeddedPostgres(datadir=base / "data", binaries=binaries)
    cluster.start()
    try:
        schema = (
            "CREATE TABLE sealed (id serial PRIMARY KEY, business_id int NOT NULL, "
            + ", ".join(f"{name} bytea" for name, _ in COLUMNS)
            + "); CREATE TABLE plain (id serial, "
            + ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
            + ");"
        )

        async def create() -> None:
            conn = await asyncpg.connect(cluster.dsn())
            try:
                await conn.execute(schema)
            finally:
                await conn.close()

        asyncio.run(create())
        subprocess.run(
            [sys.executable, "-m", "proxy", "keys", "init", "--dsn", cluster.dsn()],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        rules = "tables:\n  sealed:\n    tenant_column: business_id\n    columns:\n" + "".join(
            f"      {name}: {{type: {kind}}}\n" for name, kind in COLUMNS
        )
        proxy = start_pgseal(
            tmp_path_factory.mktemp(f"pgseal-{request.param}"),
            f"postgresql://127.0.0.1:{cluster.port}/postgres",
            f"service_dsn: {cluster.dsn()}\nmaster_key: env:PGSEAL_MK\n{rules}",
            {"PGSEAL_MK": base64.b64encode(os.urandom(32)).decode()},
        )
        try:
            yield cluster, proxy
        finally:
            proxy.stop()
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


def _outcome(conninfo: str, sql: str, value: str) -> tuple[str, str]:
    """(the value stored, as the server's text, or the SQLSTATE of the refusal; the message)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name, _ in COLUMNS:  # the text as it came ('-infinity' has no Python date)
            conn.adapters.register_loader(dict(COLUMNS)[name], TextLoader)
        try:
            row = conn.execute(sql, (value,)).fetchone()
        except psycopg.Error as exc:
            return f"error {exc.sqlstate}", str(exc)
    assert row is not None
    return str(row[0]), ""


@pytest.mark.parametrize(("column", "literal"), LITERALS)
def test_pgseal_accepts_what_the_server_accepts(
    servers: tuple[EmbeddedPostgres, PgsealProcess], column: str, literal: str
) -> None:
    cluster, proxy = servers
    through = (
        f"host=127.0.0.1 port={proxy.port} user=postgres dbname=postgres"
        " options='-c pgseal.tenant=1'"
    )
    # str parameters go as text of no declared type: each side reads them as the column's
    sealed = _outcome(
        through,
        f"INSERT INTO sealed (business_id, {column}) VALUES (1, %s) RETURNING {column}",
        literal,
    )
    direct = _outcome(
        cluster.dsn(), f"INSERT INTO plain ({column}) VALUES (%s) RETURNING {column}", literal
    )
    assert sealed[0] == direct[0], (cluster.binaries.version, column, literal)
    assert literal.strip() not in sealed[1]  # pgseal's errors never quote a value
