"""A temporary table named like an encrypted one would take its place in the session.

pg_temp comes first in every search_path, so after ``CREATE TEMP TABLE customers``
the bare name ``customers`` is the temporary table for that session: pgseal would
seal values written to it and, its table OID not being configured, pass its
envelopes to the app unopened. pgseal refuses to create it.
"""

from __future__ import annotations

import asyncpg
import psycopg
import pytest

from tests.encrypted.conftest import Stack, assert_never_reached, marker


async def test_a_temporary_table_cannot_shadow_an_encrypted_one(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    m = marker()
    with psycopg.connect(stack.conninfo(), autocommit=True) as conn:
        conn.execute("SET pgseal.tenant = '71'")
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(f"CREATE TEMP TABLE customers (id int, phone bytea) -- {m}")
        assert refused.value.sqlstate == "0A000"
        assert "temporary table named like it on encrypted table public.customers" in str(
            refused.value
        )
        # the bare name still means the encrypted table: written sealed, read opened
        conn.execute(
            "INSERT INTO customers (business_id, name, phone) VALUES (71, 'tmp', '555-TMP')"
        )
        assert conn.execute("SELECT phone FROM customers WHERE name = 'tmp'").fetchall() == [
            ("555-TMP",)
        ]
        # a temporary table of another name is Postgres's business
        conn.execute("CREATE TEMP TABLE customers_stage (id int, phone text)")
        conn.execute("INSERT INTO customers_stage VALUES (1, 'plain')")
        assert conn.execute("SELECT phone FROM customers_stage").fetchall() == [("plain",)]
    await assert_never_reached(stack, m)
    assert await raw.fetchval("SELECT count(*) FROM customers WHERE name = 'tmp'") == 1
