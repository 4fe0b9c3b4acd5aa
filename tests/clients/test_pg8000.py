"""pg8000, a pure-Python driver with protocol code of its own, through a pass-through pgseal.

Its habits differ from libpq's and asyncpg's: an unnamed statement takes three
round trips (Parse+Flush+Sync, Describe+Sync, Bind+Flush+Execute+Flush+Sync),
Flush messages everywhere, COPY through the extended protocol with a Sync that
the server ignores in copy-in mode, every value in text. Each result through
pgseal is compared with the same call made directly against Postgres.
"""

from __future__ import annotations

import datetime
import decimal
import io
import uuid
from collections.abc import Callable, Iterator

import pg8000.dbapi
import pg8000.native
import pytest

from tests.clients.conftest import Relay


def _connect(relay: Relay, port: int | None = None) -> pg8000.native.Connection:
    host = relay.proxy.host if port is None else relay.server.host
    return pg8000.native.Connection(
        relay.user,
        host=host,
        port=relay.proxy.port if port is None else port,
        database=relay.database,
    )


@pytest.fixture
def both(relay: Relay) -> Iterator[tuple[pg8000.native.Connection, pg8000.native.Connection]]:
    """(through pgseal, direct) pg8000 connections to the module's database."""
    through = _connect(relay)
    direct = _connect(relay, relay.server.port)
    try:
        yield through, direct
    finally:
        through.close()
        direct.close()


Scenario = Callable[[pg8000.native.Connection], object]


def _same(both: tuple[pg8000.native.Connection, pg8000.native.Connection], run: Scenario) -> object:
    through, direct = both
    seen = run(through)
    assert seen == run(direct)
    return seen


def test_parameters_and_results_of_many_types(
    both: tuple[pg8000.native.Connection, pg8000.native.Connection],
) -> None:
    def run(conn: pg8000.native.Connection) -> object:
        return conn.run(
            "SELECT :i::int2, :b::int8, :n::numeric, :t, :y::bool, :f::float8, :d::date,"
            " :ts::timestamp, :tz::timestamptz, :u::uuid, :j::jsonb, :a::int4[], :x::bytea,"
            " :nothing::text",
            i=-32768,
            b=2**62,
            n=decimal.Decimal("12345.678900"),
            t="pg8000 ✓ 'quoted'",
            y=True,
            f=0.1,
            d=datetime.date(2024, 2, 29),
            ts=datetime.datetime(2026, 1, 2, 3, 4, 5, 678901),
            tz=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
            u=uuid.UUID("00000000-0000-4000-8000-000000000001"),
            j={"k": [1, None]},
            a=[1, 2, 3],
            x=b"\x00\xff",
            nothing=None,
        )

    rows = _same(both, run)
    assert rows == [
        [
            -32768,
            2**62,
            decimal.Decimal("12345.678900"),
            "pg8000 ✓ 'quoted'",
            True,
            0.1,
            datetime.date(2024, 2, 29),
            datetime.datetime(2026, 1, 2, 3, 4, 5, 678901),
            datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
            uuid.UUID("00000000-0000-4000-8000-000000000001"),
            {"k": [1, None]},
            [1, 2, 3],
            b"\x00\xff",
            None,
        ]
    ]


def test_prepared_statements_errors_and_transactions(
    both: tuple[pg8000.native.Connection, pg8000.native.Connection],
) -> None:
    def run(conn: pg8000.native.Connection) -> object:
        seen: list[object] = []
        conn.run("CREATE TEMP TABLE p8k_pt (id int PRIMARY KEY, v text)")
        insert = conn.prepare("INSERT INTO p8k_pt VALUES (:id, :v)")
        for i in range(20):
            insert.run(id=i, v=f"v{i}")
        with pytest.raises(pg8000.native.DatabaseError) as info:
            insert.run(id=3, v="duplicate")
        seen.append(info.value.args[0]["C"])
        insert.close()
        conn.run("BEGIN")
        conn.run("UPDATE p8k_pt SET v = 'changed' WHERE id < 10")
        conn.run("SAVEPOINT s")
        with pytest.raises(pg8000.native.DatabaseError) as info:
            conn.run("SELECT 1 / 0")
        seen.append(info.value.args[0]["C"])
        conn.run("ROLLBACK TO SAVEPOINT s")
        conn.run("COMMIT")
        seen.append(conn.run("SELECT count(*) FROM p8k_pt WHERE v = 'changed'"))
        seen.append(conn.run("SELECT v FROM p8k_pt WHERE id = :id", id=15))
        conn.run("DROP TABLE p8k_pt")
        return seen

    assert _same(both, run) == ["23505", "22012", [[10]], [["v15"]]]


def test_copy_through_the_extended_protocol(
    both: tuple[pg8000.native.Connection, pg8000.native.Connection],
) -> None:
    def run(conn: pg8000.native.Connection) -> object:
        conn.run("CREATE TEMP TABLE p8k_copy (id int, v text)")
        lines = "".join(f"{i}\tline {i}\n" for i in range(2000))
        conn.run("COPY p8k_copy FROM STDIN", stream=io.StringIO(lines))
        out = io.BytesIO()
        conn.run("COPY p8k_copy TO STDOUT WITH (FORMAT binary)", stream=out)
        conn.run("TRUNCATE p8k_copy")
        out.seek(0)
        conn.run("COPY p8k_copy FROM STDIN WITH (FORMAT binary)", stream=out)
        with pytest.raises(pg8000.native.DatabaseError) as info:
            conn.run("COPY p8k_copy FROM STDIN", stream=io.StringIO("1\tok\nnot a number\tx\n"))
        counted = conn.run("SELECT count(*), sum(id) FROM p8k_copy")
        conn.run("DROP TABLE p8k_copy")
        return info.value.args[0]["C"], counted

    assert _same(both, run) == ("22P02", [[2000, 1999000]])


def test_listen_notify_and_dbapi(relay: Relay) -> None:
    listener = _connect(relay)
    try:
        listener.run("LISTEN p8k_channel")
        conn = pg8000.dbapi.connect(
            user=relay.user, host=relay.proxy.host, port=relay.proxy.port, database=relay.database
        )
        try:
            cur = conn.cursor()
            cur.execute("CREATE TEMP TABLE p8k_db (id int, v text)")
            cur.executemany("INSERT INTO p8k_db VALUES (%s, %s)", [(i, f"d{i}") for i in range(50)])
            cur.execute("SELECT pg_notify('p8k_channel', %s)", ("hello through pgseal",))
            conn.commit()
            cur.execute("SELECT count(*) FROM p8k_db")
            assert cur.fetchone() == [50]
            conn.rollback()
        finally:
            conn.close()
        listener.run("SELECT 1")  # notifications arrive with the next answer
        channels = [(channel, payload) for _, channel, payload in listener.notifications]
        assert channels == [("p8k_channel", "hello through pgseal")]
    finally:
        listener.close()
