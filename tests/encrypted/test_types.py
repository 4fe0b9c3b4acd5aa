"""Every logical type round-trips through pgseal in text and binary format."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid

import asyncpg
import psycopg
import pytest

from tests.encrypted.conftest import TYPED, Stack, assert_envelope

UTC = datetime.UTC
ROWS: list[tuple[object, ...]] = [
    (
        "plain text ✓ 漢字",
        "short",
        -2147483648,
        9223372036854775807,
        -32768,
        decimal.Decimal("-12345678901234567890.123456789"),
        True,
        datetime.date(1, 1, 1),
        datetime.datetime(2026, 2, 28, 23, 59, 59, 999999),
        datetime.datetime(1999, 12, 31, 23, 0, 0, 1, tzinfo=UTC),
        uuid.UUID("00000000-0000-0000-0000-000000000001"),
        '{"a": [1, 2.5, null], "b": {"c": "d"}}',
        b"\x00\x01\xff binary",
    ),
    (
        "",
        "x" * 20,
        0,
        -1,
        0,
        decimal.Decimal("NaN"),
        False,
        datetime.date(9999, 12, 31),
        datetime.datetime(1970, 1, 1),
        datetime.datetime(2100, 6, 15, 12, 30, tzinfo=UTC),
        uuid.uuid4(),
        "[]",
        b"",
    ),
    tuple(None for _ in TYPED),
]
COLUMNS = ", ".join(name for name, _ in TYPED)


def _same(a: object, b: object) -> bool:
    if isinstance(a, decimal.Decimal) and isinstance(b, decimal.Decimal) and a.is_nan():
        return b.is_nan()
    if isinstance(a, str) and isinstance(b, str) and a.startswith(("{", "[")):
        return bool(json.loads(a) == json.loads(b))
    return a == b


async def test_asyncpg_binary_round_trip_of_every_type(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    placeholders = ", ".join(f"${i + 2}" for i in range(len(TYPED)))
    for row in ROWS:
        await app.execute(
            f"INSERT INTO typed (business_id, {COLUMNS}) VALUES ($1, {placeholders})", 1, *row
        )
    got = await app.fetch(f"SELECT {COLUMNS} FROM typed ORDER BY id")
    assert len(got) == len(ROWS)
    for expected, record in zip(ROWS, got, strict=True):
        for (name, _), want, have in zip(TYPED, expected, tuple(record), strict=True):
            assert _same(want, have), (name, want, have)
    stored = await raw.fetch(f"SELECT {COLUMNS} FROM typed ORDER BY id")
    for record in stored[:2]:
        for value in record:
            assert_envelope(value, "plain text", "short")
    assert all(v is None for v in stored[2])


async def test_describe_reports_logical_types(app: asyncpg.Connection) -> None:
    stmt = await app.prepare(f"SELECT {COLUMNS} FROM typed WHERE business_id = $1")
    names = [a.type.name for a in stmt.get_attributes()]
    assert names == [
        "text", "varchar", "int4", "int8", "int2", "numeric", "bool", "date",
        "timestamp", "timestamptz", "uuid", "jsonb", "bytea",
    ]  # fmt: skip
    insert = await app.prepare("INSERT INTO typed (business_id, c_int, c_date) VALUES ($1, $2, $3)")
    assert [t.name for t in insert.get_parameters()] == ["int4", "int4", "date"]


@pytest.mark.parametrize("binary", [False, True])
async def test_psycopg_text_and_binary(stack: Stack, raw: asyncpg.Connection, binary: bool) -> None:
    values = (
        "psycopg ✓",
        7,
        decimal.Decimal("3.25"),
        datetime.date(2024, 2, 29),
        datetime.datetime(2024, 1, 1, 8, 0, tzinfo=UTC),
        True,
    )
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        cur = conn.cursor(binary=binary)
        await cur.execute(
            "INSERT INTO typed (business_id, c_text, c_int, c_numeric, c_date, c_tstz, c_bool)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (2, *values),
        )
        await cur.execute(
            "SELECT c_text, c_int, c_numeric, c_date, c_tstz, c_bool FROM typed"
            " WHERE business_id = %s",
            (2,),
        )
        assert await cur.fetchone() == values
    stored = await raw.fetchrow("SELECT c_text, c_int FROM typed WHERE business_id = 2")
    assert stored is not None
    assert_envelope(stored["c_text"], "psycopg")
    assert_envelope(stored["c_int"])


async def test_armored_text_storage(app: asyncpg.Connection, raw: asyncpg.Connection) -> None:
    await app.execute("INSERT INTO typed (business_id, c_armored) VALUES (3, $1)", "armour me")
    assert await app.fetchval("SELECT c_armored FROM typed WHERE business_id = 3") == "armour me"
    stored = await raw.fetchval("SELECT c_armored FROM typed WHERE business_id = 3")
    assert stored.startswith("pgseal1:")
    assert "armour" not in stored


async def test_varchar_length_is_enforced_before_sealing(app: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.StringDataRightTruncationError):
        await app.execute("INSERT INTO typed (business_id, c_varchar) VALUES (1, $1)", "y" * 21)
    with pytest.raises(asyncpg.NumericValueOutOfRangeError):
        await app.execute("INSERT INTO typed (business_id, c_smallint) VALUES (1, 99999)")
    assert await app.fetchval("SELECT 1") == 1
