"""psycopg 3 through a pass-through pgseal: text/binary, prepare, pipeline, COPY, cursors."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import errors

from tests.clients.conftest import Relay


@pytest.mark.parametrize("binary", [False, True])
def test_text_and_binary_cursors(relay: Relay, binary: bool) -> None:
    with psycopg.connect(relay.conninfo()) as conn:
        cur = conn.cursor(binary=binary)
        cur.execute("SELECT %s::int, %s::text, %s::numeric, %s::bytea", (5, "é", 1.5, b"\x00\x01"))
        assert cur.fetchone() == (5, "é", 1.5, b"\x00\x01")


@pytest.mark.parametrize("prepare", [False, True])
def test_prepare_true_and_false_reuse_statements(relay: Relay, prepare: bool) -> None:
    with psycopg.connect(relay.conninfo(), prepare_threshold=0 if prepare else None) as conn:
        for i in range(300):
            row = conn.execute("SELECT %s::int + 1", (i,), prepare=prepare).fetchone()
            assert row == (i + 1,)


def test_pipeline_with_an_error_in_the_middle(relay: Relay) -> None:
    with psycopg.connect(relay.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS pl (v int)")
        conn.execute("TRUNCATE pl")

        def pipeline_with_error() -> None:
            with conn.pipeline() as p:
                conn.execute("INSERT INTO pl VALUES (1)")
                p.sync()
                conn.execute("INSERT INTO pl VALUES (2)")
                conn.execute("SELECT 1 / 0")
                conn.execute("INSERT INTO pl VALUES (3)")  # skipped up to Sync
                p.sync()

        with pytest.raises(errors.DivisionByZero):
            pipeline_with_error()
        # The connection is usable, and only the first batch's row exists.
        assert conn.execute("SELECT array_agg(v ORDER BY v) FROM pl").fetchone() == ([1],)
        with conn.pipeline():
            cursors = [conn.execute("SELECT %s::int", (i,)) for i in range(50)]
        assert [c.fetchone() for c in cursors] == [(i,) for i in range(50)]


def test_copy_in_and_out(relay: Relay) -> None:
    with psycopg.connect(relay.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS pc (id int, t text)")
        conn.execute("TRUNCATE pc")
        with conn.cursor().copy("COPY pc (id, t) FROM STDIN") as copy:
            for i in range(3000):
                copy.write_row((i, f"row {i}"))
        with conn.cursor(binary=True).copy("COPY pc (id, t) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text"])
            copy.write_row((-1, "binary"))
        assert conn.execute("SELECT count(*) FROM pc").fetchone() == (3001,)
        with conn.cursor().copy("COPY (SELECT id, t FROM pc ORDER BY id LIMIT 3) TO STDOUT") as c:
            assert list(c.rows()) == [("-1", "binary"), ("0", "row 0"), ("1", "row 1")]


def test_server_side_cursor(relay: Relay) -> None:
    with psycopg.connect(relay.conninfo()) as conn, conn.cursor(name="ssc") as cur:
        cur.itersize = 100
        cur.execute("SELECT generate_series(1, 2500)")
        assert sum(r[0] for r in cur) == 2500 * 2501 // 2


def test_cancel_interrupts_pg_sleep(relay: Relay) -> None:
    with psycopg.connect(relay.conninfo()) as conn:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 10
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)


async def test_async_connection(relay: Relay) -> None:
    async with await psycopg.AsyncConnection.connect(relay.conninfo()) as conn:
        cur = await conn.execute("SELECT %s::text", ("async",))
        assert await cur.fetchone() == ("async",)
