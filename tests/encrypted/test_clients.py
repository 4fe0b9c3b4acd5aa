"""Real clients through pgseal on protected columns: asyncpg (a prepared statement
reused thousands of times, executemany, copy_records_to_table), psycopg 3
(prepare=False, pipeline), psql and SQLAlchemy Core. Each checks the raw columns."""

from __future__ import annotations

import asyncio
import decimal
import os
import subprocess

import asyncpg
import psycopg
import sqlalchemy as sa

from proxy.embedded import find_binaries
from tests.encrypted.conftest import Stack, assert_envelope


async def test_asyncpg_prepared_statement_reused_thousands_of_times(
    stack: Stack, app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    insert = await app.prepare(
        "INSERT INTO customers (business_id, name, phone, email, credit)"
        " VALUES ($1, $2, $3, $4, $5)"
    )
    for i in range(2000):
        await insert.fetch(1 + i % 2, f"n{i}", f"555-{i:04}", f"u{i}@x", decimal.Decimal(i) / 4)
    lookup = await app.prepare(
        "SELECT name, phone, credit FROM customers WHERE business_id = $1 AND email = $2"
    )
    for i in range(2000):
        row = await lookup.fetchrow(1 + i % 2, f"U{i}@X")  # email normalize: casefold
        assert row is not None
        assert tuple(row) == (f"n{i}", f"555-{i:04}", decimal.Decimal(i) / 4)
    stored = await raw.fetch("SELECT phone, email FROM customers ORDER BY id")
    assert len(stored) == 2000
    assert len({r["phone"] for r in stored}) == 2000  # fresh nonce for every value
    for i in (0, 999, 1999):
        assert_envelope(stored[i]["phone"], f"555-{i:04}")
        assert_envelope(stored[i]["email"], f"u{i}@x")


async def test_asyncpg_executemany_and_copy_records(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    await app.executemany(
        "INSERT INTO customers (business_id, name, phone, tax_id) VALUES ($1, $2, $3, $4)",
        [(3, f"m{i}", f"ph-{i}", f"TAX-{i}") for i in range(200)],
    )
    await app.copy_records_to_table(
        "customers",
        records=[(3, f"c{i}", f"cp-{i}", f"CTAX-{i}", decimal.Decimal(i)) for i in range(300)],
        columns=["business_id", "name", "phone", "tax_id", "credit"],
    )
    assert await app.fetchval("SELECT count(*) FROM customers WHERE business_id = 3") == 500
    assert (
        await app.fetchval(
            "SELECT phone FROM customers WHERE business_id = 3 AND tax_id = 'CTAX-7'"
        )
        == "cp-7"
    )
    assert (
        await app.fetchval("SELECT phone FROM customers WHERE business_id = 3 AND tax_id = 'TAX-7'")
        == "ph-7"
    )
    rows = await raw.fetch("SELECT name, phone, tax_id, tax_id_bidx, credit FROM customers")
    for row in rows:
        assert_envelope(row["phone"], "ph-", "cp-")
        assert_envelope(row["tax_id"], "TAX-")
        assert row["tax_id_bidx"] is not None
    assert all(r["credit"] is None for r in rows if r["name"].startswith("m"))
    for r in rows:
        if r["name"].startswith("c"):
            assert_envelope(r["credit"])


async def test_psycopg_prepare_false_and_pipeline(stack: Stack, raw: asyncpg.Connection) -> None:
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        for i in range(5):  # prepare=False: unnamed statements, planned from the cache
            await conn.execute(
                "INSERT INTO customers (business_id, name, phone) VALUES (%s, %s, %s)",
                (4, f"nf{i}", f"np-{i}"),
                prepare=False,
            )
        async with conn.pipeline():
            for i in range(20):
                await conn.execute(
                    "INSERT INTO customers (business_id, name, phone, email)"
                    " VALUES (%s, %s, %s, %s)",
                    (4, f"pl{i}", f"pp-{i}", f"pl{i}@x"),
                )
            cur = await conn.execute(
                "SELECT name, phone FROM customers WHERE business_id = %s AND email = %s",
                (4, "pl13@x"),
            )
        assert await cur.fetchall() == [("pl13", "pp-13")]
        binary = conn.cursor(binary=True)
        await binary.execute(
            "SELECT phone FROM customers WHERE business_id = %s AND name = %s",
            (4, "nf3"),
            prepare=True,
        )
        assert await binary.fetchall() == [("np-3",)]
    rows = await raw.fetch("SELECT phone FROM customers WHERE business_id = 4")
    assert len(rows) == 25
    for row in rows:
        assert_envelope(row["phone"], "np-", "pp-")


async def test_psql_script(stack: Stack, raw: asyncpg.Connection) -> None:
    script = (
        "INSERT INTO customers (business_id, name, phone, email)"
        " VALUES (5, 'psql', '555-PSQL', 'p@x');\n"
        "SET pgseal.tenant = '5';\n"
        "SELECT name, phone FROM customers WHERE email = 'P@X';\n"
        "\\copy customers (business_id, name, phone) FROM stdin\n"
        "5\tcopied\t555-COPY\n"
        "\\.\n"
        "SELECT phone FROM customers WHERE name = 'copied';\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGHOST": "127.0.0.1",
        "PGPORT": str(stack.proxy.port),
        "PGUSER": "postgres",
        "PGDATABASE": "postgres",
    }
    psql = str(find_binaries().bin_dir / "psql")
    done = await asyncio.to_thread(
        subprocess.run,
        [psql, "-X", "-v", "ON_ERROR_STOP=1", "-At"],
        input=script,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "psql|555-PSQL" in lines
    assert lines[-1] == "555-COPY"
    refused = await asyncio.to_thread(
        subprocess.run,
        [psql, "-X", "-At", "-c", "SELECT phone FROM customers ORDER BY phone"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "ORDER BY on encrypted column public.customers.phone" in refused.stderr
    for row in await raw.fetch("SELECT phone FROM customers WHERE business_id = 5"):
        assert_envelope(row["phone"], "PSQL", "COPY")


def test_sqlalchemy_core(stack: Stack, raw: asyncpg.Connection) -> None:
    """SQLAlchemy Core on psycopg 3 (the sync engine: greenlet is not installed)."""
    meta = sa.MetaData()
    customers = sa.Table(
        "customers",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("business_id", sa.Integer),
        sa.Column("name", sa.Text),
        sa.Column("phone", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("credit", sa.Numeric),
    )
    engine = sa.create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{stack.proxy.port}/postgres"
    )
    try:
        with engine.begin() as conn:
            conn.execute(
                customers.insert(),
                [
                    {"business_id": 6, "name": f"sa-{i}", "phone": f"sa-{i}",
                     "email": f"sa{i}@x", "credit": decimal.Decimal("1.5") * i}
                    for i in range(3)
                ],
            )  # fmt: skip
            got = conn.execute(
                sa.select(customers.c.name, customers.c.phone, customers.c.credit).where(
                    customers.c.business_id == 6, customers.c.email == "SA2@x"
                )
            )
            assert got.all() == [("sa-2", "sa-2", decimal.Decimal("3.0"))]
            updated = conn.execute(
                customers.update()
                .where(customers.c.business_id == 6, customers.c.name == "sa-1")
                .values(phone="sa-new")
                .returning(customers.c.phone)
            )
            assert updated.scalar_one() == "sa-new"
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(customers)
                .where(customers.c.business_id == 6, customers.c.email.in_(["sa0@x", "sa1@x"]))
            )
            assert count.scalar_one() == 2
        with psycopg.connect(stack.direct_dsn) as direct:
            rows = direct.execute(
                "SELECT phone, email FROM customers WHERE business_id = 6"
            ).fetchall()
    finally:
        engine.dispose()
    assert len(rows) == 3
    for phone, email in rows:
        assert_envelope(phone, "sa-")
        assert_envelope(email, "@x")
