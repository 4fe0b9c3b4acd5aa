"""pgseal's refusals against a real Postgres: the server's transaction follows.

The session replaces a refused message with one that fails on the server
(tests/proxy/test_session.py has the scripts), so the server rolls back what
the client was told failed. These tests check that on a real server, with the
encrypted table of tests/copy.
"""

from __future__ import annotations

import asyncpg
import psycopg
import pytest
from psycopg import errors

from tests.copy.conftest import Encrypted, direct, encrypted

__all__ = ["direct", "encrypted"]  # fixtures used here

REFUSED = "SELECT id FROM customers ORDER BY phone"


async def test_a_refused_statement_rolls_its_pipeline_back(
    encrypted: Encrypted, direct: asyncpg.Connection
) -> None:
    async def pipeline(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        async with conn.pipeline():
            await conn.execute("INSERT INTO customers (business_id, name) VALUES (1, 'a')")
            await conn.execute(REFUSED)
            await conn.execute("INSERT INTO customers (business_id, name) VALUES (1, 'b')")

    async with await psycopg.AsyncConnection.connect(encrypted.dsn(), autocommit=True) as conn:
        with pytest.raises(errors.FeatureNotSupported, match="phone"):
            await pipeline(conn)
        # The whole implicit transaction failed, as it would on Postgres itself.
        assert await direct.fetchval("SELECT count(*) FROM customers") == 0
        cur = await conn.execute("SELECT 41 + 1")
        assert await cur.fetchone() == (42,)


async def test_a_refused_query_fails_the_transaction_block(
    encrypted: Encrypted, direct: asyncpg.Connection
) -> None:
    conn = await asyncpg.connect(encrypted.dsn())
    try:
        await conn.execute("BEGIN")
        await conn.execute("INSERT INTO customers (business_id, name) VALUES (1, 'a')")
        with pytest.raises(asyncpg.FeatureNotSupportedError, match="phone"):
            await conn.execute(REFUSED)
        with pytest.raises(asyncpg.InFailedSQLTransactionError):
            await conn.execute("SELECT 1")
        await conn.execute("COMMIT")  # becomes a rollback, as after any error
        assert await direct.fetchval("SELECT count(*) FROM customers") == 0
        assert await conn.fetchval("SELECT 7") == 7
    finally:
        await conn.close()
