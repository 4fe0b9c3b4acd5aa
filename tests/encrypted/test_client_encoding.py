"""client_encoding other than UTF8 on an encrypted session: refused, never mis-encoded.

pgseal seals and opens text as UTF-8 and Postgres converts only the plaintext it
sees, so under LATIN1 an opened value would reach the client as UTF-8 bytes and
a client's LATIN1 bytes would be sealed as if they were UTF-8. Every statement
on an encrypted table is refused instead (0A000) while the session's encoding
is not UTF8, including the rows of a statement that was planned just before a
pipelined SET took effect.
"""

from __future__ import annotations

import asyncpg
import psycopg
import pytest

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached, marker


def _refused(exc: psycopg.Error, what: str) -> None:
    assert exc.sqlstate == "0A000"
    assert exc.diag.message_primary is not None
    assert "client_encoding LATIN1" in exc.diag.message_primary
    assert what in exc.diag.message_primary
    assert exc.diag.message_hint is not None
    assert "UTF8" in exc.diag.message_hint


async def test_latin1_session_is_refused_and_utf8_works_again(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    secret = marker()
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        await conn.execute("SET client_encoding = 'LATIN1'")
        with pytest.raises(psycopg.Error) as write:
            await conn.execute(
                "INSERT INTO customers (business_id, name, phone) VALUES (%s, %s, %s)",
                (21, "enc-latin", f"café {secret}"),
            )
        _refused(write.value, "public.customers")
        with pytest.raises(psycopg.Error) as read:
            await conn.execute("SELECT phone FROM customers WHERE business_id = 21")
        _refused(read.value, "public.customers")
        # Tables without encrypted columns are Postgres's business: converted as usual.
        cur = await conn.execute("SELECT 'café'::text")
        assert await cur.fetchone() == ("café",)
        await conn.execute("SET client_encoding = 'UTF8'")
        await conn.execute(
            "INSERT INTO customers (business_id, name, phone) VALUES (%s, %s, %s)",
            (21, "enc-utf8", "café 21"),
        )
        cur = await conn.execute(
            "SELECT phone FROM customers WHERE business_id = 21 AND name = 'enc-utf8'"
        )
        assert await cur.fetchall() == [("café 21",)]
    await assert_never_reached(stack, secret)
    stored = await raw.fetchval("SELECT phone FROM customers WHERE name = 'enc-utf8'")
    assert_envelope(stored, "café")
    assert await raw.fetchval("SELECT count(*) FROM customers WHERE name = 'enc-latin'") == 0


async def test_a_set_in_flight_refuses_what_follows_it(stack: Stack) -> None:
    """Postgres reports a new client_encoding only at ReadyForQuery, so pgseal
    cannot know the encoding of rows that follow a SET in the same Query or
    pipeline: statements on encrypted tables are refused until it knows."""
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO customers (business_id, name, phone) VALUES (22, 'enc-race', 'é 22')"
        )
        with pytest.raises(psycopg.Error) as query:
            await conn.execute(
                "SET client_encoding = 'LATIN1'; SELECT phone FROM customers WHERE business_id = 22"
            )
        assert query.value.sqlstate == "0A000"
        assert "client_encoding in flight" in str(query.value)
        assert conn.info.encoding == "utf-8"  # the whole Query was refused, the SET too

        async def pipelined() -> None:
            async with conn.pipeline():
                await conn.execute("SELECT set_config('client_encoding', 'LATIN1', false)")
                await conn.execute("SELECT phone FROM customers WHERE business_id = %s", (22,))

        with pytest.raises(psycopg.Error) as in_pipeline:
            await pipelined()
        assert in_pipeline.value.sqlstate == "0A000"
        assert "client_encoding in flight" in str(in_pipeline.value)
        # As in Postgres the error rolled the pipeline's implicit transaction
        # back, the set_config with it.
        cur = await conn.execute("SELECT phone FROM customers WHERE business_id = 22")
        assert await cur.fetchall() == [("é 22",)]
        # On its own it takes effect, and pgseal learns it from Postgres.
        await conn.execute("SELECT set_config('client_encoding', 'LATIN1', false)")
        assert conn.info.encoding == "iso8859-1"
        with pytest.raises(psycopg.Error) as after:
            await conn.execute("SELECT phone FROM customers WHERE business_id = 22")
        _refused(after.value, "public.customers")
        # A column merely named like the words is no change of encoding.
        await conn.execute("RESET client_encoding")
        await conn.execute("SELECT 1")
        cur = await conn.execute(
            "SELECT phone AS names FROM customers WHERE business_id = 22 AND name <> 'all'"
        )
        assert await cur.fetchall() == [("é 22",)]


async def test_latin1_from_the_startup_packet(stack: Stack) -> None:
    async with await psycopg.AsyncConnection.connect(
        stack.conninfo(client_encoding="LATIN1"), autocommit=True
    ) as conn:
        assert conn.info.encoding == "iso8859-1"
        with pytest.raises(psycopg.Error) as read:
            await conn.execute("SELECT phone FROM customers WHERE business_id = 22")
        _refused(read.value, "public.customers")
        cur = await conn.execute("SELECT 1")
        assert await cur.fetchone() == (1,)
