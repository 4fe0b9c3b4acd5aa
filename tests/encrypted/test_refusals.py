"""Every refusal class through pgseal: 0A000 naming the column and operation, the
session still usable, and the statement never seen by Postgres."""

from __future__ import annotations

import asyncpg
import psycopg
import pytest

from tests.encrypted.conftest import Stack, assert_never_reached, marker

W = "name = '{m}'"
# (SQL with {m} for a unique marker, operation the message names, column)
REFUSED = [
    ("SELECT phone FROM customers WHERE " + W + " ORDER BY phone", "ORDER BY", "phone"),
    ("SELECT phone, count(*) FROM customers WHERE " + W + " GROUP BY phone", "GROUP BY", "phone"),
    ("SELECT DISTINCT phone FROM customers WHERE " + W, "DISTINCT", "phone"),
    ("SELECT id FROM customers WHERE " + W + " AND credit > 5", "range comparison (>)", "credit"),
    ("SELECT id FROM customers WHERE " + W + " AND credit <= 5", "range comparison", "credit"),
    (
        "SELECT id FROM customers WHERE " + W + " AND credit BETWEEN 1 AND 5",
        "range comparison (BETWEEN)",
        "credit",
    ),
    ("SELECT id FROM customers WHERE " + W + " AND phone LIKE '1%'", "LIKE", "phone"),
    ("SELECT id FROM customers WHERE " + W + " AND email ILIKE 'a%'", "ILIKE", "email"),
    ("SELECT id FROM customers WHERE " + W + " AND phone ~ '^1'", "regular expression", "phone"),
    ("SELECT upper(phone) FROM customers WHERE " + W, "function upper()", "phone"),
    ("SELECT phone::int FROM customers WHERE " + W, "cast", "phone"),
    ("SELECT credit + 1 FROM customers WHERE " + W, "arithmetic", "credit"),
    (
        "SELECT c.id FROM customers c JOIN invoices i ON i.notes = c.phone WHERE c." + W,
        "JOIN ON",
        "phone",
    ),
    ("SELECT max(credit) FROM customers WHERE " + W, "aggregate max()", "credit"),
    ("SELECT sum(credit) FROM customers WHERE " + W, "aggregate sum()", "credit"),
    (
        "INSERT INTO customers (business_id, name, phone) SELECT 1, '{m}', v FROM plain",
        "INSERT ... SELECT",
        "phone",
    ),
    ("SELECT id FROM customers WHERE " + W + " AND phone = '555'", "equality (=)", "phone"),
    ("UPDATE customers SET phone = '1' WHERE " + W + " AND credit < 0", "range", "credit"),
    (  # RowDescription has no origin for a UNION's columns: envelopes would leave
        "SELECT phone FROM customers WHERE " + W + " UNION ALL SELECT phone FROM customers",
        "UNION ALL",
        "phone",
    ),
    ("SELECT to_jsonb(c.*) FROM customers c WHERE c." + W, "whole-row reference", ""),
    (  # a function in FROM sees the items before it (implicit LATERAL)
        "SELECT x FROM customers c, encode(c.phone, 'hex') x WHERE c." + W,
        "function encode()",
        "phone",
    ),
    ("DELETE FROM customers WHERE " + W + " AND phone LIKE 'x%'", "LIKE", "phone"),
]


def _assert_refusal(exc: asyncpg.PostgresError, operation: str, column: str) -> None:
    assert exc.sqlstate == "0A000"
    message = str(exc)
    assert f"{operation}" in message, message
    # a refusal about the whole table names the table ("" here), else the column
    assert f"public.customers{'.' + column if column else ''} " in message, message
    assert message.startswith("pgseal"), message


@pytest.mark.parametrize("protocol", ["simple", "extended"])
@pytest.mark.parametrize(("sql", "operation", "column"), REFUSED)
async def test_refused_never_reaches_postgres(
    stack: Stack, app: asyncpg.Connection, protocol: str, sql: str, operation: str, column: str
) -> None:
    m = marker()
    text = sql.format(m=m)
    # execute() without arguments sends a simple Query; fetch() Parse/Bind/Execute
    run = app.execute if protocol == "simple" else app.fetch
    with pytest.raises(asyncpg.PostgresError) as info:
        await run(text)
    _assert_refusal(info.value, operation, column)
    assert info.value.hint  # what to do instead
    assert await app.fetchval("SELECT 41 + 1") == 42
    await assert_never_reached(stack, m)


async def test_unparsable_statement_naming_a_protected_table(
    stack: Stack, app: asyncpg.Connection
) -> None:
    m = marker()
    with pytest.raises(asyncpg.PostgresError) as info:
        await app.execute(f"SELECT FROM customers WHERE name = '{m}' @@@ ((")
    assert info.value.sqlstate == "0A000"
    assert "could not parse" in str(info.value)
    assert "public.customers" in str(info.value)
    await assert_never_reached(stack, m)
    # the same garbage naming no protected table reaches Postgres, which rejects it
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await app.execute("SELECT FROM plain WHERE v = 'unparsed' @@@ ((")
    assert await app.fetchval("SELECT 1") == 1


async def test_multi_statement_query_with_one_refusal_runs_nothing(
    stack: Stack, app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    m = marker()
    with pytest.raises(asyncpg.PostgresError) as info:
        await app.execute(
            f"INSERT INTO plain VALUES (1, '{m}'); "
            "SELECT phone FROM customers ORDER BY phone; "
            f"INSERT INTO plain VALUES (2, '{m}')"
        )
    _assert_refusal(info.value, "ORDER BY", "phone")
    await assert_never_reached(stack, m)
    assert await raw.fetchval("SELECT count(*) FROM plain") == 0
    await app.execute("INSERT INTO plain VALUES (3, 'fine'); SELECT 1")
    assert await raw.fetchval("SELECT count(*) FROM plain") == 1


async def test_refusal_inside_a_transaction_behaves_like_an_error(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    """Like any error in a block: the transaction is aborted, then rolled back."""

    async def block() -> None:
        async with app.transaction():
            await app.execute("INSERT INTO plain VALUES (1, 'in tx')")
            await app.fetch("SELECT phone FROM customers ORDER BY phone")

    with pytest.raises(asyncpg.PostgresError):
        await block()
    assert await raw.fetchval("SELECT count(*) FROM plain") == 0
    assert await app.fetchval("SELECT 2") == 2


async def test_refusal_in_a_psycopg_pipeline_skips_to_sync(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    """A refusal mid-pipeline does what a server error there does: Postgres itself
    is the control (the same pipeline with ``1/0`` in the refused one's place)."""
    m = marker()

    async def pipeline(conninfo: str, middle: str) -> tuple[str, int]:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.execute("TRUNCATE plain")

            async def run() -> None:
                async with conn.pipeline():
                    await conn.execute("INSERT INTO plain VALUES (%s, %s)", (1, "before"))
                    await conn.execute(middle)
                    await conn.execute("INSERT INTO plain VALUES (%s, %s)", (2, m))

            with pytest.raises(psycopg.Error) as info:
                await run()
            cur = await conn.execute("SELECT count(*) FROM plain")  # the session is usable
            row = await cur.fetchone()
            assert row is not None
            return str(info.value), row[0]

    _, direct_count = await pipeline(
        f"host=127.0.0.1 port={stack.cluster.port} user=postgres dbname=postgres",
        "SELECT 1/0",
    )
    message, count = await pipeline(
        stack.conninfo(), f"SELECT phone FROM customers WHERE name = '{m}' ORDER BY phone"
    )
    assert "ORDER BY on encrypted column public.customers.phone" in message
    assert count == direct_count  # the last INSERT was skipped, the first as Postgres does
    await assert_never_reached(stack, m)
