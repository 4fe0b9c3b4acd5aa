"""asyncpg through a pass-through pgseal: everything a real application does."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import io
import json
import time
import uuid

import asyncpg
import pytest

from tests.clients.conftest import Relay


async def test_prepared_statement_reused_many_times(relay: Relay) -> None:
    conn = await asyncpg.connect(relay.dsn())
    try:
        stmt = await conn.prepare("SELECT $1::int * 2, $2::text || '!'")
        for i in range(2000):
            row = await stmt.fetchrow(i, str(i))
            assert row is not None
            assert tuple(row) == (i * 2, f"{i}!")
    finally:
        await conn.close()


async def test_binary_codecs_round_trip(relay: Relay) -> None:
    conn = await asyncpg.connect(relay.dsn())
    values = (
        12345678901234,
        decimal.Decimal("-1234.5678"),
        datetime.datetime(2026, 11, 24, 1, 2, 3, 456789, tzinfo=datetime.UTC),
        datetime.date(1999, 12, 31),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        b"\x00\xff" * 1000,
        {"k": [1, 2, {"x": None}]},
        [1, 2, 3],
        True,
        "unicode ✓ ü 漢字",
    )
    try:
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        row = await conn.fetchrow(
            "SELECT $1::int8, $2::numeric, $3::timestamptz, $4::date, $5::uuid, $6::bytea,"
            " $7::jsonb, $8::int[], $9::bool, $10::text",
            *values,
        )
        assert row is not None
        assert tuple(row) == values
    finally:
        await conn.close()


async def test_executemany_and_an_error_in_the_middle(relay: Relay) -> None:
    conn = await asyncpg.connect(relay.dsn())
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS em (id int PRIMARY KEY, v text)")
        await conn.execute("TRUNCATE em")
        await conn.executemany("INSERT INTO em VALUES ($1, $2)", [(i, f"v{i}") for i in range(500)])
        assert await conn.fetchval("SELECT count(*) FROM em") == 500
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.executemany("INSERT INTO em VALUES ($1, $2)", [(1000, "a"), (1, "dup")])
        # executemany is atomic: the first row of the failed batch is not there.
        assert await conn.fetchval("SELECT count(*) FROM em WHERE id = 1000") == 0
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_copy_records_and_copy_out(relay: Relay) -> None:
    conn = await asyncpg.connect(relay.dsn())
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS cp (id int, name text, at date)")
        await conn.execute("TRUNCATE cp")
        rows = [(i, f"n\t{i}", datetime.date(2020, 1, 1 + i % 28)) for i in range(5000)]
        assert await conn.copy_records_to_table("cp", records=rows) == "COPY 5000"
        got = await conn.fetch("SELECT id, name, at FROM cp ORDER BY id")
        assert [tuple(r) for r in got] == rows
        out = io.BytesIO()
        assert await conn.copy_from_table("cp", output=out, format="csv") == "COPY 5000"
        assert out.getvalue().count(b"\n") == 5000
    finally:
        await conn.close()


async def test_cursor_in_a_transaction(relay: Relay) -> None:
    conn = await asyncpg.connect(relay.dsn())
    try:
        async with conn.transaction():
            seen = [r[0] async for r in conn.cursor("SELECT generate_series(1, 1000)", prefetch=7)]
        assert seen == list(range(1, 1001))
    finally:
        await conn.close()


async def test_transactions_commit_and_rollback(relay: Relay) -> None:
    conn = await asyncpg.connect(relay.dsn())
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS tx (v int)")
        await conn.execute("TRUNCATE tx")
        async with conn.transaction():
            await conn.execute("INSERT INTO tx VALUES (1)")
        tx = conn.transaction()
        await tx.start()
        await conn.execute("INSERT INTO tx VALUES (2)")
        await tx.rollback()
        assert [r[0] for r in await conn.fetch("SELECT v FROM tx")] == [1]
    finally:
        await conn.close()


async def test_cancellation_by_timeout_interrupts_the_query(relay: Relay) -> None:
    conn = await asyncpg.connect(relay.dsn())
    try:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await conn.fetchval("SELECT pg_sleep(30)", timeout=0.5)
        assert time.monotonic() - started < 10
        # asyncpg sent a CancelRequest through pgseal; the backend is free again.
        assert await conn.fetchval("SELECT 7") == 7
        direct = await asyncpg.connect(relay.direct_dsn)
        try:
            sleeping = await direct.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'"
                " AND state = 'active'"
            )
        finally:
            await direct.close()
        assert sleeping == 0
    finally:
        await conn.close()


async def test_listen_notify_through_pgseal(relay: Relay) -> None:
    listener = await asyncpg.connect(relay.dsn())
    sender = await asyncpg.connect(relay.dsn())
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener("pgseal_chan", lambda *args: received.put_nowait(args[3]))
        await sender.execute("NOTIFY pgseal_chan, 'hello through pgseal'")
        assert await asyncio.wait_for(received.get(), 10) == "hello through pgseal"
    finally:
        await listener.close()
        await sender.close()


async def test_pool_of_connections(relay: Relay) -> None:
    pool = await asyncpg.create_pool(relay.dsn(), min_size=2, max_size=8)
    try:
        results = await asyncio.gather(
            *(pool.fetchval("SELECT $1::int + pg_backend_pid() * 0", i) for i in range(200))
        )
        assert results == list(range(200))
    finally:
        await pool.close()
