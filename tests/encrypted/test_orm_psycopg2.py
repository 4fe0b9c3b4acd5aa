"""psycopg2 through pgseal on protected columns.

psycopg2 binds on the client: every value reaches pgseal as a SQL literal inside a
simple Query (``'2024-02-29'::date``, ``'\\x00ff'::bytea``, ``ARRAY['a','b']``,
``('a', 'b')``), so these tests drive pgseal's literal sealing the way an app on
psycopg2 does. Every write is checked on the raw table with a direct connection.
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
import uuid
from collections.abc import Iterator

import asyncpg
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import pytest

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached, marker

UTC = datetime.UTC
# every protected column of ``typed`` (c_armored is text storage) and a psycopg2 value
TYPED_VALUES: list[tuple[str, object, object]] = [
    # (column, value sent, value read back as text)
    ("c_text", "pg2 it's \\ ✓", "pg2 it's \\ ✓"),
    ("c_varchar", "pg2-short", "pg2-short"),
    ("c_int", -2147483648, "-2147483648"),
    ("c_bigint", 9223372036854775807, "9223372036854775807"),
    ("c_smallint", 32767, "32767"),
    ("c_numeric", decimal.Decimal("-1234567890.0123456789"), "-1234567890.0123456789"),
    ("c_bool", True, "t"),
    ("c_date", datetime.date(2024, 2, 29), "2024-02-29"),
    ("c_ts", datetime.datetime(2026, 2, 28, 23, 59, 59, 999999), "2026-02-28 23:59:59.999999"),
    (
        "c_tstz",
        datetime.datetime(1999, 12, 31, 23, 0, 0, 1, tzinfo=UTC),
        "1999-12-31 23:00:00.000001+00",
    ),
    (
        "c_uuid",
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "12345678-1234-5678-1234-567812345678",
    ),
    ("c_jsonb", psycopg2.extras.Json({"pg2": [1, 2.5, None]}), '{"pg2": [1, 2.5, null]}'),
    ("c_bytea", b"\x00\x01\xff pg2", "\\x0001ff20706732"),
    ("c_armored", "pg2 armoured", "pg2 armoured"),
]
TYPED_COLUMNS = ", ".join(name for name, _, _ in TYPED_VALUES)


def _as_text(value: str | bytes | None, cursor: psycopg2.extensions.cursor) -> object:
    return value


@pytest.fixture
def pg2(stack: Stack, raw: asyncpg.Connection) -> Iterator[psycopg2.extensions.connection]:
    """A psycopg2 connection through pgseal (autocommit off, psycopg2's default).

    Results are read as text (no typecasters for dates, numbers, ...), so what the
    test sees is exactly the text pgseal put in the DataRow."""
    conn = psycopg2.connect(stack.conninfo())
    psycopg2.extras.register_uuid(conn_or_curs=conn)  # type: ignore[no-untyped-call]
    text = psycopg2.extensions.new_type(
        (1082, 1114, 1184, 1700, 16, 20, 21, 23, 2950, 3802, 17), "PGSEAL_TEXT", _as_text
    )
    psycopg2.extensions.register_type(text, conn)
    try:
        yield conn
    finally:
        conn.close()


def _one(cur: psycopg2.extensions.cursor) -> tuple[object, ...]:
    row = cur.fetchone()
    assert row is not None
    return tuple(row)


def _id(cur: psycopg2.extensions.cursor) -> int:
    (row_id,) = _one(cur)
    assert isinstance(row_id, str)
    return int(row_id)


async def test_every_logical_type_as_a_literal(
    pg2: psycopg2.extensions.connection, raw: asyncpg.Connection
) -> None:
    placeholders = ", ".join("%s" for _ in TYPED_VALUES)
    with pg2.cursor() as cur:
        sql = cur.mogrify(
            f"INSERT INTO typed (business_id, {TYPED_COLUMNS}) VALUES (%s, {placeholders})"
            " RETURNING id",
            (21, *(value for _, value, _ in TYPED_VALUES)),
        ).decode()
        # the shapes psycopg2 sends: pgseal must seal each literal form
        assert "'2024-02-29'::date" in sql
        assert "::timestamptz" in sql
        assert "'::bytea" in sql
        assert "'::uuid" in sql
        cur.execute(sql)
        row_id = _id(cur)
        cur.execute(f"SELECT {TYPED_COLUMNS} FROM typed WHERE id = %s", (row_id,))
        back = _one(cur)
    pg2.commit()
    for (name, _, want), have in zip(TYPED_VALUES, back, strict=True):
        if name == "c_jsonb":
            assert isinstance(have, str)
            assert json.loads(have) == json.loads(str(want)), name
        else:
            assert have == want, (name, have)
    stored = await raw.fetchrow(f"SELECT {TYPED_COLUMNS} FROM typed WHERE id = $1", row_id)
    assert stored is not None
    for (name, _, want), value in zip(TYPED_VALUES, stored.values(), strict=True):
        if name == "c_armored":
            assert value.startswith("pgseal1:")
            assert "armoured" not in value
        else:
            assert_envelope(value, str(want), "pg2")


async def test_null_and_none_stay_null(
    pg2: psycopg2.extensions.connection, raw: asyncpg.Connection
) -> None:
    with pg2.cursor() as cur:
        cur.execute(
            "INSERT INTO typed (business_id, c_text, c_date, c_bytea) VALUES (%s, %s, %s, %s)"
            " RETURNING id",
            (22, None, None, None),
        )
        row_id = _id(cur)
        cur.execute("SELECT c_text, c_date, c_bytea FROM typed WHERE id = %s", (row_id,))
        assert _one(cur) == (None, None, None)
    pg2.commit()
    stored = await raw.fetchrow("SELECT c_text, c_date, c_bytea FROM typed WHERE id = $1", row_id)
    assert stored is not None
    assert tuple(stored.values()) == (None, None, None)


async def test_memoryview_and_bytea_escape_forms(
    pg2: psycopg2.extensions.connection, raw: asyncpg.Connection
) -> None:
    with pg2.cursor() as cur:
        cur.execute(
            "INSERT INTO typed (business_id, c_bytea, c_text) VALUES (%s, %s, %s) RETURNING id",
            (23, memoryview(b"\xde\xad\xbe\xef"), "mv-pg2"),
        )
        row_id = _id(cur)
        cur.execute("SELECT c_bytea FROM typed WHERE id = %s", (row_id,))
        assert _one(cur) == ("\\xdeadbeef",)
    pg2.commit()
    stored = await raw.fetchval("SELECT c_bytea FROM typed WHERE id = $1", row_id)
    assert_envelope(stored)
    assert b"\xde\xad\xbe\xef" not in stored


async def test_executemany_execute_values_and_searchable_equality(
    pg2: psycopg2.extensions.connection, raw: asyncpg.Connection
) -> None:
    with pg2.cursor() as cur:
        cur.executemany(
            "INSERT INTO customers (business_id, name, email, phone, credit)"
            " VALUES (%s, %s, %s, %s, %s)",
            [
                (24, f"em{i}", f"em{i}@pg2.x", f"555-EM{i}", decimal.Decimal(i) / 4)
                for i in range(5)
            ],
        )
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO customers (business_id, name, email, tax_id, phone) VALUES %s",
            [(24, f"ev{i}", f"ev{i}@pg2.x", f"EVTAX-{i}", f"555-EV{i}") for i in range(120)],
            page_size=50,  # three multi-row VALUES statements
        )
        returned = psycopg2.extras.execute_values(
            cur,
            "INSERT INTO customers (business_id, name, phone) VALUES %s RETURNING name, phone",
            [(24, f"evr{i}", f"555-EVR{i}") for i in range(3)],
            fetch=True,
        )
        assert sorted(returned) == [(f"evr{i}", f"555-EVR{i}") for i in range(3)]
        cur.execute(
            "SELECT name, phone, credit FROM customers WHERE business_id = %s AND email = %s",
            (24, "  EM3@PG2.X "),  # normalize: trim, casefold
        )
        assert cur.fetchall() == [("em3", "555-EM3", "0.75")]
        cur.execute(
            "SELECT name FROM customers WHERE business_id = %s AND email = ANY(%s) ORDER BY name",
            (24, ["ev7@pg2.x", "EV9@pg2.x", "nobody@pg2.x"]),
        )
        assert cur.fetchall() == [("ev7",), ("ev9",)]
        cur.execute(
            "SELECT name FROM customers WHERE business_id = %s AND tax_id IN %s ORDER BY name",
            (24, ("EVTAX-1", "EVTAX-119")),
        )
        assert cur.fetchall() == [("ev1",), ("ev119",)]
        cur.execute("SELECT count(*) FROM customers WHERE business_id = %s", (24,))
        assert _one(cur) == ("128",)
    pg2.commit()
    rows = await raw.fetch(
        "SELECT name, email, email_bidx, tax_id, phone FROM customers WHERE business_id = 24"
    )
    assert len(rows) == 128
    for row in rows:
        if row["name"].startswith("evr"):
            assert_envelope(row["phone"], "555-EVR")
            continue
        assert_envelope(row["email"], "@pg2.x")
        assert_envelope(row["phone"], "555-E")
        assert row["email_bidx"] is not None
        if row["name"].startswith("ev"):
            assert_envelope(row["tax_id"], "EVTAX")


async def test_refused_statement_then_rollback_keeps_the_connection(
    stack: Stack, pg2: psycopg2.extensions.connection, raw: asyncpg.Connection
) -> None:
    m, refused = marker(), marker()
    with pg2.cursor() as cur:
        cur.execute("INSERT INTO plain VALUES (%s, %s)", (1, m))
        with pytest.raises(psycopg2.errors.FeatureNotSupported) as info:
            cur.execute(
                "SELECT phone FROM customers WHERE name = %s AND phone LIKE %s", (refused, "555%")
            )
        assert info.value.pgcode == "0A000"
        assert "LIKE on encrypted column public.customers.phone" in str(info.value)
        # like any error in a transaction block: aborted until rollback
        with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
            cur.execute("SELECT 1")
    pg2.rollback()
    with pg2.cursor() as cur:
        cur.execute("SELECT 40 + 2")
        assert _one(cur) == ("42",)
    pg2.commit()
    await assert_never_reached(stack, refused)
    assert await raw.fetchval("SELECT count(*) FROM plain WHERE v = $1", m) == 0


async def test_autocommit_on_and_off(
    pg2: psycopg2.extensions.connection, raw: asyncpg.Connection
) -> None:
    with pg2.cursor() as cur:
        cur.execute(
            "INSERT INTO customers (business_id, name, phone) VALUES (%s, %s, %s)",
            (25, "tx-off", "555-TXOFF"),
        )
    # not committed yet: invisible to another connection
    assert await raw.fetchval("SELECT count(*) FROM customers WHERE business_id = 25") == 0
    pg2.rollback()
    assert await raw.fetchval("SELECT count(*) FROM customers WHERE business_id = 25") == 0
    pg2.autocommit = True
    with pg2.cursor() as cur:
        cur.execute(
            "INSERT INTO customers (business_id, name, phone) VALUES (%s, %s, %s)",
            (25, "tx-on", "555-TXON"),
        )
    stored = await raw.fetch("SELECT name, phone FROM customers WHERE business_id = 25")
    assert [r["name"] for r in stored] == ["tx-on"]
    assert_envelope(stored[0]["phone"], "555-TXON")
    with pg2.cursor() as cur:  # a protected UPDATE and DELETE in autocommit
        cur.execute(
            "UPDATE customers SET phone = %s WHERE business_id = %s AND name = %s",
            ("555-TXUPD", 25, "tx-on"),
        )
        assert cur.rowcount == 1
        cur.execute("SELECT phone FROM customers WHERE business_id = %s", (25,))
        assert cur.fetchall() == [("555-TXUPD",)]
    assert_envelope(
        await raw.fetchval("SELECT phone FROM customers WHERE business_id = 25"), "555-TXUPD"
    )


async def test_copy_expert_from_stdin(
    pg2: psycopg2.extensions.connection, raw: asyncpg.Connection
) -> None:
    data = "".join(f"26\tcp2-{i}\t555-CP2-{i}\tcp2{i}@x\n" for i in range(50))
    with pg2.cursor() as cur:
        cur.copy_expert(
            "COPY customers (business_id, name, phone, email) FROM STDIN", io.StringIO(data)
        )
        cur.execute(
            "SELECT name, phone FROM customers WHERE business_id = %s AND email = %s",
            (26, "cp217@x"),
        )
        assert cur.fetchall() == [("cp2-17", "555-CP2-17")]
        out = io.StringIO()
        cur.copy_expert(
            "COPY (SELECT name, phone FROM customers WHERE business_id = 26 AND name = 'cp2-3')"
            " TO STDOUT",
            out,
        )
        assert out.getvalue() == "cp2-3\t555-CP2-3\n"
    pg2.commit()
    rows = await raw.fetch("SELECT phone, email FROM customers WHERE business_id = 26")
    assert len(rows) == 50
    for row in rows:
        assert_envelope(row["phone"], "555-CP2")
        assert_envelope(row["email"], "@x")


async def test_named_cursor_declare_fetch(
    pg2: psycopg2.extensions.connection, raw: asyncpg.Connection
) -> None:
    """A named (server-side) cursor: DECLARE ... CURSOR FOR SELECT, then FETCH."""
    with pg2.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO customers (business_id, name, phone) VALUES %s",
            [(27, f"nc{i:03}", f"555-NC{i:03}") for i in range(30)],
        )
    pg2.commit()
    with pg2.cursor(name="pg2_named") as named:
        named.itersize = 7  # several FETCH FORWARD 7 round trips
        named.execute(
            "SELECT name, phone FROM customers WHERE business_id = %s ORDER BY name", (27,)
        )
        got = list(named)
    pg2.commit()
    assert got == [(f"nc{i:03}", f"555-NC{i:03}") for i in range(30)]
    for row in await raw.fetch("SELECT phone FROM customers WHERE business_id = 27"):
        assert_envelope(row["phone"], "555-NC")


async def test_escape_string_literals_when_standard_conforming_strings_is_off(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    """With standard_conforming_strings off psycopg2 quotes as E'...' (backslashes doubled)."""
    conn = psycopg2.connect(stack.conninfo(options="'-c standard_conforming_strings=off'"))
    try:
        value = "scs\\off 'q' ✓"
        with conn.cursor() as cur:
            sql = cur.mogrify(
                "INSERT INTO customers (business_id, name, phone, email) VALUES (%s, %s, %s, %s)",
                (28, "scs", value, "scs\\off@x"),
            ).decode()
            assert "E'scs\\\\off" in sql
            cur.execute(sql)
            cur.execute(
                "SELECT phone, email FROM customers WHERE business_id = %s AND email = %s",
                (28, "scs\\off@x"),
            )
            assert cur.fetchall() == [(value, "scs\\off@x")]
        conn.commit()
    finally:
        conn.close()
    stored = await raw.fetchrow("SELECT phone, email FROM customers WHERE business_id = 28")
    assert stored is not None
    assert_envelope(stored["phone"], "scs")
    assert_envelope(stored["email"], "scs")
