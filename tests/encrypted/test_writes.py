"""INSERT / UPDATE / DELETE / ON CONFLICT / RETURNING through pgseal: what the
client sees, and the raw columns holding envelopes; envelopes not sealed twice;
tampered values and destroyed keys answered with an error naming the column."""

from __future__ import annotations

import asyncio
import decimal
import json
import os
import subprocess
import sys

import asyncpg
import psycopg
import pytest

from tests.encrypted.conftest import Stack, assert_envelope
from tests.pgseal_process import REPO_ROOT


async def _raw_row(raw: asyncpg.Connection, name: str, business: int = 1) -> asyncpg.Record:
    row = await raw.fetchrow(
        "SELECT * FROM customers WHERE business_id = $1 AND name = $2", business, name
    )
    assert row is not None
    return row


async def test_multi_row_insert_with_literals_params_default_null_returning(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    rows = await app.fetch(
        "INSERT INTO customers (business_id, name, phone, credit, email) VALUES"
        " (1, 'a', '555-1', 10.50, $1), (1, 'b', $2, DEFAULT, NULL), ($3, 'c', NULL, $4, 'C@x')"
        " RETURNING name, phone, credit, email",
        "A@x",
        "555-2",
        1,
        decimal.Decimal("-3"),
    )
    assert [tuple(r) for r in rows] == [
        ("a", "555-1", decimal.Decimal("10.50"), "A@x"),
        ("b", "555-2", None, None),
        ("c", None, decimal.Decimal("-3"), "C@x"),
    ]
    a, b, c = [await _raw_row(raw, n) for n in "abc"]
    assert_envelope(a["phone"], "555-1")
    assert_envelope(a["credit"], "10.5")
    assert_envelope(a["email"], "A@x")
    assert a["email_bidx"] is not None
    assert_envelope(b["phone"], "555-2")
    assert b["credit"] is None
    assert b["email"] is None
    assert b["email_bidx"] is None
    assert c["phone"] is None
    assert_envelope(c["email"], "C@x")
    # the blind index of 'C@x' is that of 'c@x' (normalize: casefold)
    assert (
        await app.fetchval("SELECT name FROM customers WHERE business_id = 1 AND email = 'c@X'")
        == "c"
    )


async def test_update_set_literal_param_null_with_where_and_returning(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    await app.execute(
        "INSERT INTO customers (business_id, name, phone, email) VALUES (1, 'u', '1', 'old@x')"
    )
    before = await _raw_row(raw, "u")
    got = await app.fetchrow(
        "UPDATE customers SET phone = $1, email = 'new@x' WHERE business_id = 1 AND name = $2"
        " RETURNING phone, email",
        "555-9999",
        "u",
    )
    assert got is not None
    assert tuple(got) == ("555-9999", "new@x")
    after = await _raw_row(raw, "u")
    assert_envelope(after["phone"], "555-9999")
    assert after["phone"] != before["phone"]
    assert after["email_bidx"] != before["email_bidx"]  # the index follows the value
    assert (
        await app.fetchval(
            "SELECT count(*) FROM customers WHERE business_id = 1 AND email = 'new@x'"
        )
        == 1
    )
    assert (
        await app.fetchval(
            "SELECT count(*) FROM customers WHERE business_id = 1 AND email = 'old@x'"
        )
        == 0
    )
    await app.execute("UPDATE customers SET phone = NULL, email = NULL WHERE business_id = 1")
    cleared = await _raw_row(raw, "u")
    assert cleared["phone"] is None
    assert cleared["email_bidx"] is None


async def test_update_and_delete_by_searchable_column(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    await app.executemany(
        "INSERT INTO customers (business_id, name, tax_id, phone) VALUES ($1, $2, $3, $4)",
        [(1, "d1", "TX-1", "p1"), (1, "d2", "TX-2", "p2"), (2, "d3", "TX-1", "p3")],
    )
    await app.execute("SET pgseal.tenant = '1'")
    status = await app.execute("UPDATE customers SET phone = $1 WHERE tax_id = $2", "p1b", "TX-1")
    assert status == "UPDATE 1"  # business 2's TX-1 has another blind index
    assert_envelope((await _raw_row(raw, "d1"))["phone"], "p1b")
    deleted = await app.fetch("DELETE FROM customers WHERE tax_id = ANY($1) RETURNING name, phone",
                              ["TX-1", "TX-2"])  # fmt: skip
    assert sorted(tuple(r) for r in deleted) == [("d1", "p1b"), ("d2", "p2")]
    await app.execute("RESET pgseal.tenant")
    assert [r["name"] for r in await raw.fetch("SELECT name FROM customers")] == ["d3"]


async def test_on_conflict_do_update_excluded(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    sql = (
        "INSERT INTO customers (business_id, name, phone, email) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (business_id, name) DO UPDATE SET phone = EXCLUDED.phone,"
        " email = EXCLUDED.email RETURNING phone, email"
    )
    first = await app.fetchrow(sql, 1, "oc", "111", "one@x")
    second = await app.fetchrow(sql, 1, "oc", "222", "two@x")
    assert first is not None
    assert second is not None
    assert tuple(first) == ("111", "one@x")
    assert tuple(second) == ("222", "two@x")
    row = await _raw_row(raw, "oc")
    assert_envelope(row["phone"], "222")
    assert await raw.fetchval("SELECT count(*) FROM customers") == 1
    assert (
        await app.fetchval("SELECT phone FROM customers WHERE business_id = 1 AND email = 'two@x'")
        == "222"
    )
    with pytest.raises(asyncpg.PostgresError) as info:  # conflict target on a protected column
        await app.execute(
            "INSERT INTO customers (business_id, name, phone) VALUES (1, 'z', '1')"
            " ON CONFLICT (phone) DO NOTHING"
        )
    assert info.value.sqlstate == "0A000"
    assert "public.customers.phone" in str(info.value)


async def test_an_envelope_is_not_sealed_twice(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    await app.execute("INSERT INTO customers (business_id, name, phone) VALUES (1, 'src', 'p-src')")
    envelope = (await _raw_row(raw, "src"))["phone"]
    # a tool copying raw values writes the envelope back through pgseal as hex text
    await app.execute(
        "INSERT INTO customers (business_id, name, phone) VALUES (1, 'copy', $1)",
        "\\x" + envelope.hex(),
    )
    await app.execute(
        f"INSERT INTO customers (business_id, name, phone) VALUES (1, 'lit', '\\x{envelope.hex()}')"
    )
    for name in ("copy", "lit"):
        assert (await _raw_row(raw, name))["phone"] == envelope
    got = await app.fetch("SELECT phone FROM customers WHERE business_id = 1 ORDER BY id")
    assert [r["phone"] for r in got] == ["p-src"] * 3
    # an envelope of another column (other AAD) is a value like any other: sealed
    await app.execute(
        "INSERT INTO customers (business_id, name, email) VALUES (1, 'other', $1)",
        "\\x" + envelope.hex(),
    )
    other = await _raw_row(raw, "other")
    assert other["email"] != envelope
    assert (
        await app.fetchval("SELECT email FROM customers WHERE name = 'other'")
        == "\\x" + envelope.hex()
    )


@pytest.mark.parametrize("where", ["tag", "key id", "key id high bit", "version"])
async def test_tampered_envelope_is_an_error_naming_the_column(
    app: asyncpg.Connection, raw: asyncpg.Connection, where: str
) -> None:
    await app.execute("INSERT INTO customers (business_id, name, phone) VALUES (1, 't', 'p-t')")
    envelope = bytearray((await _raw_row(raw, "t"))["phone"])
    position, flip = {
        "tag": (len(envelope) - 1, 0x40),
        "key id": (5, 0x40),
        "key id high bit": (1, 0x80),  # an id no bigint key_id can be
        "version": (0, 0x40),
    }[where]
    envelope[position] ^= flip
    await raw.execute("UPDATE customers SET phone = $1 WHERE name = 't'", bytes(envelope))
    for run in (app.fetch, app.execute):  # binary results; a simple Query (text)
        with pytest.raises(asyncpg.PostgresError) as info:
            await run("SELECT phone FROM customers WHERE name = 't'")
        assert info.value.sqlstate == "XX001"
        assert "public.customers.phone" in str(info.value)
        assert bytes(envelope).hex()[:16] not in str(info.value)
    assert await app.fetchval("SELECT name FROM customers WHERE name = 't'") == "t"


async def test_shredded_business_is_an_error_not_ciphertext(
    stack: Stack, app: asyncpg.Connection
) -> None:
    await app.execute("INSERT INTO customers (business_id, name, phone) VALUES (77, 's', 'p-s')")
    await app.execute("INSERT INTO customers (business_id, name, phone) VALUES (78, 'k', 'p-k')")
    assert await app.fetchval("SELECT phone FROM customers WHERE business_id = 77") == "p-s"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "proxy", "keys", "shred", "--tenant", "77", "--yes", "--no-vacuum",
         "--dsn", stack.direct_dsn, "--master-key", "env:PGSEAL_MK"],
        cwd=REPO_ROOT, capture_output=True, text=True, env={"PGSEAL_MK": stack.master_key,
        "PATH": "/usr/bin:/bin"}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        error: psycopg.Error | None = None
        for _ in range(100):  # until the NOTIFY reaches the running pgseal
            try:
                await conn.execute("SELECT phone FROM customers WHERE business_id = 77")
            except psycopg.errors.ObjectNotInPrerequisiteState as exc:
                error = exc
                break
            await asyncio.sleep(0.05)
        assert error is not None, "a shredded business's value still opened"
        assert "public.customers.phone" in str(error)
        assert "destroyed" in str(error)
        cur = await conn.execute("SELECT phone FROM customers WHERE business_id = 78")
        assert await cur.fetchall() == [("p-k",)]


async def test_values_that_only_look_like_envelopes_are_sealed(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    """Byte 0x01 and 37+ bytes, naming a key the store does not have: binary jsonb
    (its version byte is 0x01) and such a bytea. Sealed as values, at once (the
    key lookup used to be retried forever)."""
    document = '{"note": "binary jsonb starts with 0x01", "n": [1, 2, 3]}'
    fakes = [  # a key id the store could hold but does not, and one it never could
        b"\x01" + (12345).to_bytes(8, "big") + os.urandom(40),
        b"\x01" + b"\xff" * 8 + os.urandom(40),
    ]
    for i, fake in enumerate(fakes):
        await asyncio.wait_for(
            app.execute(
                "INSERT INTO typed (id, business_id, c_bytea, c_jsonb) VALUES ($1, 1, $2, $3)",
                i + 1,
                fake,
                document,
            ),
            timeout=10,
        )
    rows = await app.fetch("SELECT c_bytea, c_jsonb FROM typed ORDER BY id")
    assert [r["c_bytea"] for r in rows] == fakes
    assert all(json.loads(r["c_jsonb"]) == json.loads(document) for r in rows)
    for stored in await raw.fetch("SELECT c_bytea, c_jsonb FROM typed ORDER BY id"):
        assert_envelope(stored["c_bytea"])
        assert stored["c_bytea"] not in fakes
        assert_envelope(stored["c_jsonb"], "binary jsonb")


async def test_insert_for_the_session_tenant_writes_the_tenant_column(
    app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    """Without the tenant column the row would not say which business its envelopes
    belong to (NOT NULL failed; a column default could name another business)."""
    await app.execute("SET pgseal.tenant = '9'")
    await app.execute("INSERT INTO customers (name, phone) VALUES ($1, $2)", "nt1", "p-nt1")
    await app.execute("INSERT INTO customers (name, phone, email) VALUES ('nt2', 'p-nt2', 'e@x')")
    rows = await raw.fetch("SELECT business_id, name, phone FROM customers ORDER BY name")
    assert [(r["business_id"], r["name"]) for r in rows] == [(9, "nt1"), (9, "nt2")]
    for row in rows:
        assert_envelope(row["phone"], "p-nt")
    got = await app.fetch("SELECT name, phone FROM customers WHERE email = 'e@x'")
    assert [tuple(r) for r in got] == [("nt2", "p-nt2")]
    await app.execute("RESET pgseal.tenant")
    with pytest.raises(asyncpg.PostgresError) as info:  # no tenant at all: refused
        await app.execute("INSERT INTO customers (name, phone) VALUES ('nt3', 'p-nt3')")
    assert "cannot tell which business owns this write" in str(info.value)
