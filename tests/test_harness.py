"""The test harness itself reaches a real server."""

import asyncpg

from tests.conftest import PgServer


async def test_server_answers(pg_server: PgServer) -> None:
    conn = await asyncpg.connect(pg_server.dsn())
    try:
        assert await conn.fetchval("SELECT 6 * 7") == 42
    finally:
        await conn.close()


async def test_fresh_db_is_empty(fresh_db: str) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        count = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert count == 0
    finally:
        await conn.close()
