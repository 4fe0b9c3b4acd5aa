"""COPY on a protected table through pgseal, with asyncpg and psql, in every format.

Each test checks what the client sees and, with a direct connection, that the raw
columns hold envelopes and never the plaintext.
"""

from __future__ import annotations

import datetime
import decimal
import io
import os
import subprocess
from pathlib import Path
from typing import Literal

import asyncpg
import pytest

from tests.copy.conftest import Encrypted, psql_path

COLUMNS = ["business_id", "name", "phone", "tax_id", "credit", "born", "note"]


def records(n: int, tenant: int = 7) -> list[tuple[object, ...]]:
    return [
        (
            tenant,
            f"name-{i}",
            f"+44 {i:04d}\ttab\\slash\nline",
            f"  GB-{i}  ",
            decimal.Decimal(i) / 4,
            datetime.date(1990, 1, 1 + i % 28),
            f'note, "{i}"',
        )
        for i in range(n)
    ]


async def assert_sealed(direct: asyncpg.Connection, plaintexts: list[str]) -> None:
    raw = await direct.fetch("SELECT phone, tax_id, credit, born, note FROM customers")
    assert raw
    for row in raw:
        for column in ("phone", "tax_id", "credit", "born"):
            value = row[column]
            assert value is None or (value[0] == 1 and len(value) >= 37), column
        assert row["note"] is None or row["note"].startswith("pgseal1:")
    blob = repr([tuple(r) for r in raw]).encode()
    for text in plaintexts:
        assert text.encode() not in blob


async def test_copy_records_binary_roundtrip(
    client: asyncpg.Connection, direct: asyncpg.Connection
) -> None:
    rows = records(500)
    result = await client.copy_records_to_table("customers", records=rows, columns=COLUMNS)
    assert result == "COPY 500"
    got = await client.fetch(
        "SELECT business_id, name, phone, tax_id, credit, born, note FROM customers ORDER BY id"
    )
    assert [tuple(r) for r in got] == rows
    await assert_sealed(direct, ["tab\\slash", "GB-1", "note, "])
    # The blind index was written by COPY: equality search finds the row.
    found = await client.fetch(
        "SELECT name FROM customers WHERE tax_id = $1 AND business_id = 7", "gb-42"
    )
    assert [r["name"] for r in found] == ["name-42"]


@pytest.mark.parametrize("fmt", ["text", "csv", "binary"])
async def test_copy_out_every_format(
    client: asyncpg.Connection,
    direct: asyncpg.Connection,
    fmt: Literal["text", "csv", "binary"],
) -> None:
    rows = records(50)
    await client.copy_records_to_table("customers", records=rows, columns=COLUMNS)
    out = io.BytesIO()
    await client.copy_from_table(
        "customers", output=out, columns=["name", "phone", "note"], format=fmt
    )
    # Reading the stream back through pgseal into a plain table proves it is
    # exactly what Postgres would have produced for plaintext columns.
    await direct.execute("CREATE TEMP TABLE back (name text, phone text, note text)")
    out.seek(0)
    await direct.copy_to_table("back", source=out, format=fmt)
    back = await direct.fetch("SELECT name, phone, note FROM back ORDER BY name")
    expected = sorted((r[1], r[2], r[6]) for r in rows)
    assert sorted(tuple(r) for r in back) == expected


async def test_copy_query_to_stdout(client: asyncpg.Connection) -> None:
    await client.copy_records_to_table("customers", records=records(3), columns=COLUMNS)
    out = io.BytesIO()
    await client.copy_from_query(
        "SELECT name, credit FROM customers WHERE business_id = 7 ORDER BY name", output=out
    )
    assert out.getvalue() == b"name-0\t0\nname-1\t0.25\nname-2\t0.5\n"


async def test_copy_without_tenant_is_refused_and_writes_nothing(
    client: asyncpg.Connection, direct: asyncpg.Connection
) -> None:
    with pytest.raises(asyncpg.PostgresError) as info:
        await client.copy_records_to_table(
            "customers", records=[("n", "555")], columns=["name", "phone"]
        )
    assert info.value.sqlstate == "42501"
    assert "cannot tell which business" in str(info.value)
    assert await direct.fetchval("SELECT count(*) FROM customers") == 0
    assert await client.fetchval("SELECT 1") == 1  # the connection is usable


async def test_copy_with_session_tenant(encrypted: Encrypted, direct: asyncpg.Connection) -> None:
    conn = await asyncpg.connect(encrypted.dsn(), server_settings={"options": "-c pgseal.tenant=9"})
    try:
        await conn.copy_records_to_table(
            "customers", records=[(9, "n", "555-0009")], columns=["business_id", "name", "phone"]
        )
        with pytest.raises(asyncpg.PostgresError) as info:
            await conn.copy_records_to_table(
                "customers", records=[(8, "x", "1")], columns=["business_id", "name", "phone"]
            )
        assert info.value.sqlstate == "42501"
        # Without the tenant column pgseal appends it and fills in the session's
        # tenant (binary here, text and CSV below), as it does for INSERT, so
        # every row names the business its envelopes belong to.
        await conn.copy_records_to_table(
            "customers", records=[("m", "555-0010")], columns=["name", "phone"]
        )
        formats: tuple[tuple[Literal["text", "csv"], bytes], ...] = (
            ("text", b"t\t555-0011\n"),
            ("csv", b"name,phone\nc,555-0012\n"),
        )
        for fmt, data in formats:
            await conn.copy_to_table(
                "customers",
                source=io.BytesIO(data),
                columns=["name", "phone"],
                format=fmt,
                header=fmt == "csv",
            )
        phones = await conn.fetch("SELECT name, phone FROM customers ORDER BY id")
        assert [tuple(r) for r in phones] == [
            ("n", "555-0009"), ("m", "555-0010"), ("t", "555-0011"), ("c", "555-0012"),
        ]  # fmt: skip
    finally:
        await conn.close()
    rows = await direct.fetch("SELECT business_id, phone FROM customers ORDER BY id")
    assert [r["business_id"] for r in rows] == [9, 9, 9, 9]
    await assert_sealed(direct, ["555-0009", "555-0010", "555-0011", "555-0012"])


async def test_copy_option_pgseal_cannot_interpret_is_refused(
    client: asyncpg.Connection,
) -> None:
    with pytest.raises(asyncpg.PostgresError) as info:
        await client.execute("COPY customers (business_id, phone) FROM STDIN (DELIMITER '|')")
    assert info.value.sqlstate == "0A000"
    assert "DELIMITER" in str(info.value)


async def test_invalid_value_in_copy_fails_the_copy(
    client: asyncpg.Connection, direct: asyncpg.Connection
) -> None:
    data = io.BytesIO(b"7\tnot-a-number\n")
    with pytest.raises(asyncpg.PostgresError) as info:
        await client.copy_to_table(
            "customers", source=data, columns=["business_id", "credit"], format="text"
        )
    assert info.value.sqlstate == "22P02"
    assert "public.customers.credit" in str(info.value)
    assert "not-a-number" not in str(info.value)
    assert await direct.fetchval("SELECT count(*) FROM customers") == 0


def run_psql(encrypted: Encrypted, *commands: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PGHOST": encrypted.proxy.host,
        "PGPORT": str(encrypted.proxy.port),
        "PGUSER": encrypted.user,
        "PGDATABASE": encrypted.direct_dsn.rsplit("/", 1)[1],
    }
    args = [str(psql_path()), "-X", "-v", "ON_ERROR_STOP=1", "-At"]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)


async def test_psql_copy_csv_with_header_in_small_chunks(
    encrypted: Encrypted, direct: asyncpg.Connection, tmp_path: Path
) -> None:
    lines = ["business_id,phone,tax_id"] + [f'8,"555,{i} ""q""",TAX{i}' for i in range(2000)]
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n")
    result = run_psql(
        encrypted,
        f"\\copy customers (business_id, phone, tax_id) from '{path}' with (format csv, header)",
        "SELECT phone FROM customers WHERE tax_id = 'tax1999' AND business_id = 8",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == '555,1999 "q"'
    assert await direct.fetchval("SELECT count(*) FROM customers") == 2000
    await assert_sealed(direct, ["555,1999", "TAX1999"])


async def test_psql_copy_text_to_stdout(encrypted: Encrypted, client: asyncpg.Connection) -> None:
    await client.copy_records_to_table("customers", records=records(2), columns=COLUMNS)
    result = run_psql(
        encrypted, "\\copy (SELECT name, phone FROM customers ORDER BY name) to stdout"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "name-0\t+44 0000\\ttab\\\\slash\\nline"
