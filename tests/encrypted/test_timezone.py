"""timestamptz text without an offset on a session whose TimeZone is not UTC.

Postgres reads such a value in the session's TimeZone; pgseal canonicalises a
protected value before Postgres sees it. Rather than store it shifted, pgseal
refuses it (0A000) unless the session's TimeZone is UTC; values with an offset,
binary values and UTC sessions are read as before.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import psycopg
import pytest

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached

BERLIN_WINTER = timezone(timedelta(hours=1))
INSERT = "INSERT INTO typed (business_id, c_varchar, c_tstz) VALUES"


def _needs_offset(exc: psycopg.Error) -> None:
    assert exc.sqlstate == "0A000"
    assert "public.typed.c_tstz" in str(exc)
    assert "without a UTC offset" in str(exc)


async def test_berlin_session(stack: Stack, raw: asyncpg.Connection) -> None:
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        await conn.execute("SET TimeZone = 'Europe/Berlin'")
        for sql, args in [
            (f"{INSERT} (31, 'no', '2031-01-01 10:00')", None),
            (f"{INSERT} (31, 'no', '2031-01-01 10:00'::timestamptz)", None),
            (f"{INSERT} (%s, %s, %s)", (31, "no", "2031-01-01 10:00")),
        ]:
            with pytest.raises(psycopg.Error) as refused:
                await conn.execute(sql, args)
            _needs_offset(refused.value)
        async with conn.cursor() as cur:
            with pytest.raises(psycopg.Error) as copied:
                async with cur.copy("COPY typed (business_id, c_tstz) FROM STDIN") as copy:
                    await copy.write_row((31, "2031-01-01 10:00"))
        _needs_offset(copied.value)
        # With an offset, or as an aware datetime: read as Postgres reads it.
        await conn.execute(f"{INSERT} (31, 'tz-lit', '2031-01-01 10:00+01')")
        await conn.execute(
            f"{INSERT} (%s, %s, %s)",
            (31, "tz-param", datetime(2031, 1, 1, 10, 0, tzinfo=BERLIN_WINTER)),
        )
        cur = await conn.execute(
            "SELECT c_varchar, c_tstz FROM typed WHERE business_id = 31 ORDER BY id"
        )
        rows = await cur.fetchall()
    instant = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)
    assert rows == [("tz-lit", instant), ("tz-param", instant)]
    await assert_never_reached(stack, "2031-01-01 10:00")
    stored = await raw.fetch("SELECT c_tstz FROM typed WHERE business_id = 31")
    assert len(stored) == 2
    for row in stored:
        assert_envelope(row["c_tstz"], "2031-01-01")


async def test_utc_session_reads_utc_and_changes_are_followed(stack: Stack) -> None:
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        await conn.execute("SET TimeZone = 'UTC'")
        await conn.execute(f"{INSERT} (32, 'tz-utc', '2032-01-01 10:00')")
        # A prepared statement is read by the rules of the moment it is bound.
        prepared = f"{INSERT} (%s, %s, %s)"
        await conn.execute(prepared, (34, "tz-prep", "2034-01-01 10:00"), prepare=True)
        await conn.execute("SET TimeZone = 'Europe/Berlin'")
        with pytest.raises(psycopg.Error) as rebound:
            await conn.execute(prepared, (34, "tz-prep", "2034-01-01 10:00"), prepare=True)
        _needs_offset(rebound.value)
        await conn.execute(prepared, (34, "tz-prep2", "2034-01-01 11:00+01"), prepare=True)
        await conn.execute("SET TimeZone = 'UTC'")
        # A SET in flight: the value's zone is unknown to pgseal until Postgres answers.
        with pytest.raises(psycopg.Error) as in_flight:
            await conn.execute(
                "SET TimeZone = 'America/New_York'; "
                "INSERT INTO typed (business_id, c_tstz) VALUES (32, '2032-01-01 10:00')"
            )
        _needs_offset(in_flight.value)
        cur = await conn.execute("SHOW TimeZone")
        assert await cur.fetchone() == ("UTC",)  # the refused Query ran nothing
        await conn.execute("SELECT set_config('TimeZone', 'America/New_York', false)")
        with pytest.raises(psycopg.Error) as after:
            await conn.execute("INSERT INTO typed (business_id, c_tstz) VALUES (32, '2032-01-01')")
        _needs_offset(after.value)
        await conn.execute("RESET TimeZone")  # the server's default: UTC on the test server
        await conn.execute(f"{INSERT} (32, 'tz-reset', '2032-01-01 10:00')")
        cur = await conn.execute(
            "SELECT c_varchar, c_tstz FROM typed WHERE business_id = 32 ORDER BY id"
        )
        instant = datetime(2032, 1, 1, 10, 0, tzinfo=UTC)
        assert await cur.fetchall() == [("tz-utc", instant), ("tz-reset", instant)]


async def test_startup_timezone_and_binary(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.dsn(), server_settings={"TimeZone": "Asia/Kolkata"})
    try:
        # asyncpg sends timestamptz in binary: an instant, whatever the TimeZone.
        when = datetime(2033, 5, 1, 12, 30, tzinfo=UTC)
        row_id = await conn.fetchval(f"{INSERT} (33, 'tz-bin', $1) RETURNING id", when)
        assert await conn.fetchval("SELECT c_tstz FROM typed WHERE id = $1", row_id) == when
        with pytest.raises(asyncpg.PostgresError) as refused:
            await conn.execute(
                "INSERT INTO typed (business_id, c_tstz) VALUES (33, '2033-05-01 12:30')"
            )
        assert refused.value.sqlstate == "0A000"
        assert "without a UTC offset" in str(refused.value)
    finally:
        await conn.close()
