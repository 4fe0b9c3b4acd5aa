"""Casts on parameters and literals for encrypted columns, through pgseal.

Postgres types ``$2::integer`` as integer and converts it to the column's type
(or fails, 42804); pgseal does the same on the plaintext before sealing. asyncpg
sends binary parameters in the type ParameterDescription names, psycopg text.
"""

from __future__ import annotations

import datetime
import decimal

import asyncpg
import psycopg
import pytest

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached, marker


async def test_asyncpg_binary_parameters_typed_as_their_casts(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    stmt = await app.prepare(
        "INSERT INTO typed (business_id, c_numeric, c_bigint, c_varchar, c_ts, c_text)"
        " VALUES ($1, $2::integer, $3::int4, $4::text, $5::date, $6::bigint) RETURNING id"
    )
    # ParameterDescription says what Postgres would: the casts' types
    assert [t.name for t in stmt.get_parameters()] == [
        "int4",
        "int4",
        "int4",
        "text",
        "date",
        "int8",
    ]
    row_id = await stmt.fetchval(1, 12, 7, "cast-ann", datetime.date(2024, 2, 3), 9000000000)
    stored = await raw.fetchrow(
        "SELECT c_numeric, c_bigint, c_varchar, c_ts, c_text FROM typed WHERE id = $1", row_id
    )
    assert stored is not None
    for value in stored.values():
        assert_envelope(value, "cast-ann")
    back = await app.fetchrow(
        "SELECT c_numeric, c_bigint, c_varchar, c_ts, c_text FROM typed WHERE id = $1", row_id
    )
    assert back is not None
    assert tuple(back.values()) == (
        decimal.Decimal("12"),
        7,
        "cast-ann",
        datetime.datetime(2024, 2, 3),
        "9000000000",
    )


async def test_psycopg_text_parameters_and_cast_literals(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO customers (business_id, name, credit, phone, tax_id)"
            " VALUES (%s, 'ps', %s::integer, %s::varchar, %s::text)",
            (1, 41, "555-CAST", "T-CAST"),
        )
        # literals with casts, in a simple Query and in the extended protocol
        await conn.execute(
            "INSERT INTO customers (business_id, name, credit, phone)"
            " VALUES (1, 'lit', '2.5'::numeric, 77::bigint)",
            prepare=False,
        )
        await conn.execute(
            "UPDATE customers SET credit = 3::smallint WHERE business_id = 1 AND name = 'ps'"
        )
        cur = await conn.execute(
            "SELECT name, credit, phone, tax_id FROM customers WHERE business_id = 1 ORDER BY name"
        )
        rows = await cur.fetchall()
        # the blind index written from the cast parameter finds the row
        cur = await conn.execute(
            "SELECT name FROM customers WHERE business_id = 1 AND tax_id = %s", ("T-CAST",)
        )
        assert await cur.fetchall() == [("ps",)]
    assert rows == [
        ("lit", decimal.Decimal("2.5"), "77", None),
        ("ps", decimal.Decimal("3"), "555-CAST", "T-CAST"),
    ]
    stored = await raw.fetchrow("SELECT credit, phone, tax_id FROM customers WHERE name = 'ps'")
    assert stored is not None
    for value in stored.values():
        assert_envelope(value, "555-CAST", "T-CAST")


async def test_numeric_with_precision_and_scale_rounds_like_postgres(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    # SQLAlchemy's Numeric(10, 2) renders $n::NUMERIC(10, 2)
    sql = "INSERT INTO typed (business_id, c_numeric) VALUES (1, $1::NUMERIC(10, 2)) RETURNING id"
    value = decimal.Decimal("-1.005")
    row_id = await app.fetchval(sql, value)
    assert await app.fetchval("SELECT c_numeric FROM typed WHERE id = $1", row_id) == (
        await raw.fetchval("SELECT $1::numeric(10, 2)", value)
    )
    assert_envelope(await raw.fetchval("SELECT c_numeric FROM typed WHERE id = $1", row_id))
    with pytest.raises(asyncpg.PostgresError) as info:
        await app.fetchval(sql, decimal.Decimal("123456789.5"))
    assert info.value.sqlstate == "22003"


async def test_search_with_a_cast_finds_the_row(stack: Stack, app: asyncpg.Connection) -> None:
    await app.execute(
        "INSERT INTO customers (business_id, name, tax_id, email) VALUES"
        " (1, 'found', 'T-77', 'ann@example.com'), (1, 'other', 'T-78', 'bob@example.com')"
    )
    stmt = await app.prepare(
        "SELECT name FROM customers WHERE business_id = $1 AND tax_id = $2::varchar"
    )
    assert [t.name for t in stmt.get_parameters()] == ["int4", "varchar"]
    assert await stmt.fetchval(1, "T-77") == "found"
    # the blind index is computed on the normalised value (trim, casefold)
    assert (
        await app.fetchval(
            "SELECT name FROM customers WHERE business_id = 1 AND email = $1::varchar",
            "  ANN@Example.com ",
        )
        == "found"
    )
    assert (
        await app.fetchval(
            "SELECT name FROM customers WHERE business_id = 1 AND tax_id = 'T-78'::varchar"
        )
        == "other"
    )
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT name FROM customers WHERE business_id = %s AND tax_id = %s::text", (1, "T-77")
        )
        assert await cur.fetchall() == [("found",)]


async def _postgres_sqlstate(raw: asyncpg.Connection, sql: str, *args: object) -> str:
    """What Postgres itself answers for the same cast into a plain column."""
    with pytest.raises(asyncpg.PostgresError) as info:
        await raw.execute(sql, *args)
    return str(info.value.sqlstate)


async def test_cast_postgres_would_reject_is_refused_before_postgres(
    stack: Stack, app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    await raw.execute("CREATE TEMP TABLE ctl (credit numeric, v varchar(20))")
    control = await _postgres_sqlstate(raw, "INSERT INTO ctl (credit) VALUES ($1::text)", "1")
    assert control == "42804"
    m = marker()
    sql = f"INSERT INTO customers (business_id, name, credit) VALUES ($1, '{m}', $2::text)"
    with pytest.raises(asyncpg.PostgresError) as info:
        await app.execute(sql, 1, "12")
    assert info.value.sqlstate == control
    message = str(info.value)
    assert "public.customers.credit is of type numeric" in message, message
    assert "expression is of type text" in message, message
    with pytest.raises(asyncpg.PostgresError) as info:  # a literal, simple Query
        await app.execute(
            f"INSERT INTO customers (business_id, name, credit) VALUES (1, '{m}', '12'::text)"
        )
    assert info.value.sqlstate == "42804"
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as pinfo:
            await conn.execute(
                f"UPDATE customers SET credit = %s::text WHERE business_id = 1 AND name = '{m}'",
                ("12",),
            )
        assert pinfo.value.sqlstate == "42804"
    assert await app.fetchval("SELECT 1") == 1
    await assert_never_reached(stack, m)


async def test_cast_pgseal_cannot_convert_exactly_is_refused(
    stack: Stack, app: asyncpg.Connection
) -> None:
    m = marker()
    for cast in ("timestamp", "date"):  # converted by the session TimeZone in Postgres
        with pytest.raises(asyncpg.PostgresError) as info:
            await app.execute(
                f"INSERT INTO typed (business_id, c_text, c_tstz) VALUES (1, '{m}', $1::{cast})",
                datetime.date(2024, 1, 1),
            )
        assert info.value.sqlstate == "0A000"
        assert "public.typed.c_tstz" in str(info.value)
    with pytest.raises(asyncpg.PostgresError) as info:  # comparison that would narrow
        await app.fetch(
            f"SELECT id FROM customers WHERE name = '{m}' AND business_id = 1"
            " AND tax_id = $1::integer",
            5,
        )
    assert info.value.sqlstate == "0A000"
    with pytest.raises(asyncpg.PostgresError) as info:  # a cast of the column stays refused
        await app.fetch(f"SELECT id FROM customers WHERE name = '{m}' AND tax_id::text = $1", "T-1")
    assert info.value.sqlstate == "0A000"
    assert "cast" in str(info.value)
    await assert_never_reached(stack, m)


async def test_value_too_long_for_varchar_after_the_cast(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    await raw.execute("CREATE TEMP TABLE ctl (v varchar(20))")
    long = "x" * 21
    control = await _postgres_sqlstate(raw, "INSERT INTO ctl (v) VALUES ($1::text)", long)
    with pytest.raises(asyncpg.PostgresError) as info:
        await app.execute("INSERT INTO typed (business_id, c_varchar) VALUES (1, $1::text)", long)
    assert info.value.sqlstate == control == "22001"
    # an explicit varchar(n) cast truncates instead, as in Postgres
    await app.execute(
        "INSERT INTO typed (business_id, c_varchar) VALUES (1, $1::varchar(3))", "abcdef"
    )
    assert await app.fetchval("SELECT c_varchar FROM typed WHERE business_id = 1") == "abc"
    assert await raw.fetchval("SELECT count(*) FROM typed") == 1


async def test_typed_null_follows_postgres(
    stack: Stack, app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    """``NULL::text`` is still text: Postgres refuses it for a numeric column."""
    await raw.execute("CREATE TEMP TABLE ctl_null (credit numeric, note text)")
    control = await _postgres_sqlstate(raw, "INSERT INTO ctl_null (credit) VALUES (NULL::text)")
    assert control == "42804"
    await raw.execute("INSERT INTO ctl_null (note) VALUES (NULL::date)")  # date -> text: fine
    m = marker()
    with pytest.raises(asyncpg.PostgresError) as info:
        await app.execute(
            f"INSERT INTO customers (business_id, name, credit) VALUES (1, '{m}', NULL::text)"
        )
    assert info.value.sqlstate == control
    assert "public.customers.credit is of type numeric" in str(info.value)
    # NULLs of a type Postgres assigns are stored as NULL, cast or not
    row_id = await app.fetchval(
        "INSERT INTO typed (business_id, c_text, c_numeric) VALUES (1, NULL::date, NULL::integer)"
        " RETURNING id"
    )
    stored = await raw.fetchrow("SELECT c_text, c_numeric FROM typed WHERE id = $1", row_id)
    assert stored is not None
    assert tuple(stored.values()) == (None, None)
    assert await app.fetchval("SELECT 1") == 1
    await assert_never_reached(stack, m)
