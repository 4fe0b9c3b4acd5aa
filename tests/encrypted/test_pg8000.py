"""pg8000 (a pure-Python driver with its own protocol code) through pgseal on protected columns.

pg8000 speaks the extended protocol its own way: an unnamed statement is parsed
in a round trip of its own (Parse, Flush, Sync), described in a second (Describe
statement, Sync) and run in a third (Bind, Flush, Execute, Flush, Sync); every
parameter is sent as text with an unspecified type unless the caller names
one, and every result is asked for as text and converted by the OID in the
RowDescription. ``Connection.prepare`` makes named statements
(``pg8000_statement_N``) that are Closed when the caller closes them. Every
write is checked on the raw table with a direct connection.
"""

from __future__ import annotations

import datetime
import decimal
import io
import uuid
from collections.abc import Iterator

import asyncpg
import pg8000.dbapi
import pg8000.native
import pytest

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached, marker

UTC = datetime.UTC
PLUS_5 = datetime.timezone(datetime.timedelta(hours=5))
# (column, value sent, value pg8000 reads back)
TYPED_VALUES: list[tuple[str, object, object]] = [
    ("c_text", "p8k it's \\ ✓", "p8k it's \\ ✓"),
    ("c_varchar", "p8k-short", "p8k-short"),
    ("c_int", -2147483648, -2147483648),
    ("c_bigint", 9223372036854775807, 9223372036854775807),
    ("c_smallint", -32768, -32768),
    ("c_numeric", decimal.Decimal("-98765.43210"), decimal.Decimal("-98765.43210")),
    ("c_bool", False, False),
    ("c_date", datetime.date(2028, 2, 29), datetime.date(2028, 2, 29)),
    (
        "c_ts",
        datetime.datetime(2026, 12, 31, 23, 59, 59, 123456),
        datetime.datetime(2026, 12, 31, 23, 59, 59, 123456),
    ),
    (
        "c_tstz",
        datetime.datetime(2001, 2, 3, 4, 5, 6, 7, tzinfo=PLUS_5),
        datetime.datetime(2001, 2, 2, 23, 5, 6, 7, tzinfo=UTC),  # the same instant
    ),
    (
        "c_uuid",
        uuid.UUID("87654321-4321-8765-4321-876543218765"),
        uuid.UUID("87654321-4321-8765-4321-876543218765"),
    ),
    ("c_jsonb", {"p8k": [1, 2.5, None, "x"]}, {"p8k": [1, 2.5, None, "x"]}),
    ("c_bytea", b"\x00\x01\xff p8k", b"\x00\x01\xff p8k"),
    ("c_armored", "p8k armoured", "p8k armoured"),
]
TYPED_COLUMNS = ", ".join(name for name, _, _ in TYPED_VALUES)


@pytest.fixture
def p8k(stack: Stack, raw: asyncpg.Connection) -> Iterator[pg8000.native.Connection]:
    """A pg8000 native connection through pgseal (autocommit, pg8000.native's way)."""
    conn = pg8000.native.Connection(
        "postgres", host="127.0.0.1", port=stack.proxy.port, database="postgres"
    )
    try:
        yield conn
    finally:
        conn.close()


async def test_every_logical_type_as_text_parameters(
    p8k: pg8000.native.Connection, raw: asyncpg.Connection
) -> None:
    names = [name for name, _, _ in TYPED_VALUES]
    params = {name: value for name, value, _ in TYPED_VALUES}
    rows = p8k.run(
        f"INSERT INTO typed (business_id, {TYPED_COLUMNS})"
        f" VALUES (:tenant, {', '.join(':' + n for n in names)}) RETURNING id",
        tenant=31,
        **params,
    )
    row_id = rows[0][0]
    back = p8k.run(f"SELECT {TYPED_COLUMNS} FROM typed WHERE id = :id", id=row_id)[0]
    for (name, _, want), have in zip(TYPED_VALUES, back, strict=True):
        assert have == want, (name, have)
    # pg8000 converts by the RowDescription's OIDs: pgseal reported the logical types
    oids = {column["name"]: column["type_oid"] for column in p8k.columns or []}
    assert oids["c_int"] == 23
    assert oids["c_tstz"] == 1184
    assert oids["c_jsonb"] == 3802
    assert oids["c_bytea"] == 17
    stored = await raw.fetchrow(f"SELECT {TYPED_COLUMNS} FROM typed WHERE id = $1", row_id)
    assert stored is not None
    for (name, sent, _), value in zip(TYPED_VALUES, stored.values(), strict=True):
        if name == "c_armored":
            assert value.startswith("pgseal1:")
            assert "armoured" not in value
        else:
            assert_envelope(value, str(sent), "p8k")


async def test_nulls_and_declared_parameter_types(
    p8k: pg8000.native.Connection, raw: asyncpg.Connection
) -> None:
    # ``types`` makes pg8000 declare the parameters' OIDs in Parse (int8, text)
    rows = p8k.run(
        "INSERT INTO typed (business_id, c_int, c_text, c_date) VALUES (:t, :i, :s, :d)"
        " RETURNING id",
        types={"t": 20, "i": 20, "s": 25, "d": -1},  # -1: unspecified
        t=32,
        i=77,
        s="declared p8k",
        d=None,
    )
    row_id = rows[0][0]
    back = p8k.run("SELECT c_int, c_text, c_date FROM typed WHERE id = :id", id=row_id)
    assert back == [[77, "declared p8k", None]]
    stored = await raw.fetchrow("SELECT c_int, c_text, c_date FROM typed WHERE id = $1", row_id)
    assert stored is not None
    assert_envelope(stored["c_int"])
    assert_envelope(stored["c_text"], "declared p8k")
    assert stored["c_date"] is None


async def test_prepared_statements_search_and_close(
    p8k: pg8000.native.Connection, raw: asyncpg.Connection
) -> None:
    insert = p8k.prepare(
        "INSERT INTO customers (business_id, name, email, tax_id, phone, credit)"
        " VALUES (:t, :name, :email, :tax, :phone, :credit)"
    )
    for i in range(40):
        insert.run(
            t=33,
            name=f"p8k{i}",
            email=f"P8K{i}@Example.X",
            tax=f"P8KTAX-{i}",
            phone=f"555-P8K{i}",
            credit=decimal.Decimal(i) / 8,
        )
    insert.close()
    find = p8k.prepare(
        "SELECT name, phone, credit FROM customers WHERE business_id = :t AND email = :email"
    )
    assert find.run(t=33, email="  p8k7@example.x ") == [
        ["p8k7", "555-P8K7", decimal.Decimal("0.875")]
    ]
    assert find.run(t=33, email="p8k39@EXAMPLE.x") == [
        ["p8k39", "555-P8K39", decimal.Decimal("4.875")]
    ]
    assert find.run(t=33, email="nobody@example.x") == []
    find.close()
    rows = p8k.run(
        "SELECT name FROM customers WHERE business_id = :t AND tax_id = ANY(:taxes) ORDER BY name",
        t=33,
        taxes=["P8KTAX-3", "P8KTAX-30", "P8KTAX-999"],
    )
    assert rows == [["p8k3"], ["p8k30"]]
    rows = p8k.run(
        "SELECT name FROM customers WHERE business_id = 33 AND tax_id IN (:a, :b) ORDER BY name",
        a="P8KTAX-1",
        b="P8KTAX-11",
    )
    assert rows == [["p8k1"], ["p8k11"]]
    stored = await raw.fetch(
        "SELECT email, email_bidx, tax_id, phone, credit FROM customers WHERE business_id = 33"
    )
    assert len(stored) == 40
    for row in stored:
        assert_envelope(row["email"], "Example.X", "P8K")
        assert_envelope(row["tax_id"], "P8KTAX")
        assert_envelope(row["phone"], "555-P8K")
        assert_envelope(row["credit"])
        assert row["email_bidx"] is not None


async def test_refusal_keeps_the_connection(
    stack: Stack, p8k: pg8000.native.Connection, raw: asyncpg.Connection
) -> None:
    refused = marker()
    with pytest.raises(pg8000.native.DatabaseError) as info:
        p8k.run("SELECT name FROM customers WHERE name = :m ORDER BY phone", m=refused)
    error = info.value.args[0]
    assert error["C"] == "0A000"
    assert "ORDER BY on encrypted column public.customers.phone" in error["M"]
    assert p8k.run("SELECT 40 + 2") == [[42]]
    # and in a transaction block: aborted until ROLLBACK, like any error
    p8k.run("BEGIN")
    p8k.run("INSERT INTO customers (business_id, name, phone) VALUES (34, 'tx', '555-P8KTX')")
    with pytest.raises(pg8000.native.DatabaseError) as info:
        p8k.run(
            "SELECT phone FROM customers WHERE phone LIKE :p AND name = :m", p="555%", m=refused
        )
    assert info.value.args[0]["C"] == "0A000"
    with pytest.raises(pg8000.native.DatabaseError) as info:
        p8k.run("SELECT 1")
    assert info.value.args[0]["C"] == "25P02"
    p8k.run("ROLLBACK")
    assert p8k.run("SELECT count(*) FROM customers WHERE business_id = 34") == [[0]]
    await assert_never_reached(stack, refused)
    assert await raw.fetchval("SELECT count(*) FROM customers WHERE business_id = 34") == 0


async def test_copy_in_and_out_streams(
    p8k: pg8000.native.Connection, raw: asyncpg.Connection
) -> None:
    lines = "".join(f"35\tcp{i}\tcp{i}@p8k.x\t555-CP{i}\n" for i in range(25))
    p8k.run(
        "COPY customers (business_id, name, email, phone) FROM STDIN",
        stream=io.StringIO(lines),
    )
    assert p8k.run(
        "SELECT name FROM customers WHERE business_id = 35 AND email = :e", e="CP24@p8k.x"
    ) == [["cp24"]]
    out = io.StringIO()
    p8k.run(
        "COPY (SELECT name, email, phone FROM customers WHERE business_id = 35 ORDER BY id)"
        " TO STDOUT WITH (FORMAT csv)",
        stream=out,
    )
    assert out.getvalue().splitlines() == [f"cp{i},cp{i}@p8k.x,555-CP{i}" for i in range(25)]
    stored = await raw.fetch("SELECT email, phone FROM customers WHERE business_id = 35")
    assert len(stored) == 25
    for row in stored:
        assert_envelope(row["email"], "@p8k.x")
        assert_envelope(row["phone"], "555-CP")


async def test_session_tenant_isolation(
    stack: Stack, p8k: pg8000.native.Connection, raw: asyncpg.Connection
) -> None:
    p8k.run(
        "INSERT INTO customers (business_id, name, phone)"
        " VALUES (36, 'mine', :p), (37, 'theirs', :q)",
        p="555-MINE",
        q="555-THEIRS",
    )
    p8k.run("SET pgseal.tenant = '36'")
    assert p8k.run("SELECT phone FROM customers WHERE name = 'mine'") == [["555-MINE"]]
    with pytest.raises(pg8000.native.DatabaseError) as info:
        p8k.run("SELECT phone FROM customers WHERE name = 'theirs'")
    assert "public.customers.phone" in info.value.args[0]["M"]
    assert "555-THEIRS" not in str(info.value)
    with pytest.raises(pg8000.native.DatabaseError) as info:
        p8k.run(
            "INSERT INTO customers (business_id, name, phone) VALUES (:t, 'moved', :p)",
            t=37,
            p="555-MOVED",
        )
    assert info.value.args[0]["C"] == "42501"  # another business than the session's
    assert "public.customers.phone" in info.value.args[0]["M"]
    p8k.run("RESET pgseal.tenant")
    assert p8k.run("SELECT phone FROM customers WHERE name = 'theirs'") == [["555-THEIRS"]]
    assert await raw.fetchval("SELECT count(*) FROM customers WHERE name = 'moved'") == 0


async def test_dbapi_executemany_and_transactions(stack: Stack, raw: asyncpg.Connection) -> None:
    conn = pg8000.dbapi.connect(
        user="postgres", host="127.0.0.1", port=stack.proxy.port, database="postgres"
    )
    try:
        cur = conn.cursor()
        cur.executemany(
            "INSERT INTO invoices (business_id, customer_id, total, notes) VALUES (%s, %s, %s, %s)",
            [(38, i, decimal.Decimal(i) * 10, f"p8k note {i} ✓") for i in range(30)],
        )
        # not committed yet: invisible to another connection
        assert await raw.fetchval("SELECT count(*) FROM invoices WHERE business_id = 38") == 0
        conn.commit()
        cur.execute(
            "SELECT customer_id, notes FROM invoices WHERE business_id = %s ORDER BY customer_id",
            (38,),
        )
        assert list(cur.fetchall()) == [[i, f"p8k note {i} ✓"] for i in range(30)]
        cur.execute("UPDATE invoices SET notes = %s WHERE business_id = %s AND customer_id = %s",
                    ("rolled back", 38, 3))  # fmt: skip
        conn.rollback()
        cur.execute("SELECT notes FROM invoices WHERE business_id = 38 AND customer_id = 3")
        assert list(cur.fetchall()) == [["p8k note 3 ✓"]]
        conn.commit()
    finally:
        conn.close()
    stored = await raw.fetch("SELECT notes FROM invoices WHERE business_id = 38")
    assert len(stored) == 30
    for row in stored:
        assert_envelope(row["notes"], "p8k note")
