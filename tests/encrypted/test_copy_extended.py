"""COPY on encrypted tables through the extended query protocol, message by message.

pg8000 and tokio-postgres send COPY as Parse/Bind/Execute
(tests/encrypted/test_pg8000.py, test_rust.py); a client may also pipeline the
CopyData right behind the Execute, before the CopyInResponse, and the COPY
behind other round trips still in flight. Every stored value is checked raw.
"""

from __future__ import annotations

import socket

import asyncpg

from proxy import codec
from tests.encrypted.conftest import Stack, assert_envelope
from tests.wire import messages_until_ready


def _connect(stack: Stack) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=10)
    startup = codec.StartupMessage(codec.PROTOCOL_3_0, {"user": "postgres", "database": "postgres"})
    sock.sendall(startup.encode())
    _until_ready(sock)
    return sock


def _until_ready(sock: socket.socket, count: int = 1) -> list[tuple[str, bytes]]:
    """Messages up to the ``count``-th ReadyForQuery: (type letter, body)."""
    return [(chr(kind), body) for kind, body in messages_until_ready(sock, count)]


def _extended(sql: str) -> bytes:
    return codec.encode_parse("", sql) + codec.encode_bind("", "", [], [], []) + _execute()


def _execute() -> bytes:
    return codec.message(b"E", b"\x00" + (0).to_bytes(4, "big"))


def _errors(messages: list[tuple[str, bytes]]) -> list[dict[str, str]]:
    return [codec.decode_error_fields(body) for kind, body in messages if kind == "E"]


async def test_copy_data_pipelined_behind_the_execute(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    rows = b"".join(b"41\tpipe%d\tpipe%d@copy.x\t555-PIPE%d\n" % (i, i, i) for i in range(10))
    with _connect(stack) as sock:
        sock.sendall(
            _extended("COPY customers (business_id, name, email, phone) FROM STDIN")
            + codec.message(b"d", rows[:50])  # a row split across two CopyData
            + codec.message(b"d", rows[50:])
            + codec.message(b"c")  # CopyDone
            + codec.SYNC
        )
        answer = _until_ready(sock)
        assert not _errors(answer)
        kinds = "".join(kind for kind, _ in answer)
        assert kinds == "12GCZ"  # ParseComplete BindComplete CopyInResponse CommandComplete
        (tag,) = [body for kind, body in answer if kind == "C"]
        assert codec.command_tag(tag) == "COPY 10"
        # CopyInResponse shows the client's four columns, not the blind index pgseal added
        (copy_in,) = [body for kind, body in answer if kind == "G"]
        assert int.from_bytes(copy_in[1:3], "big") == 4
        sock.sendall(codec.TERMINATE)
    stored = await raw.fetch(
        "SELECT email, email_bidx, phone FROM customers WHERE business_id = 41 ORDER BY id"
    )
    assert len(stored) == 10
    for row in stored:
        assert_envelope(row["email"], "@copy.x", "pipe")
        assert_envelope(row["phone"], "555-PIPE")
        assert row["email_bidx"] is not None


async def test_copy_pipelined_behind_a_round_trip_in_flight(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    with _connect(stack) as sock:
        sock.sendall(
            _extended("SELECT 41 + 1")
            + codec.SYNC
            + _extended("COPY customers (business_id, name, phone) FROM STDIN")
            + codec.message(b"d", b"42\tinflight\t555-INFLIGHT\n")
            + codec.message(b"c")
            + codec.SYNC
            + _extended("COPY (SELECT name, phone FROM customers WHERE business_id = 42) TO STDOUT")
            + codec.SYNC
        )
        answer = _until_ready(sock, 3)
        assert not _errors(answer)
        (row,) = [body for kind, body in answer if kind == "D"]
        assert codec.decode_data_row(row) == [b"42"]
        # the COPY TO, behind two round trips, opened its row in the stream
        assert [body for kind, body in answer if kind == "d"] == [b"inflight\t555-INFLIGHT\n"]
        sock.sendall(codec.TERMINATE)
    assert_envelope(
        await raw.fetchval("SELECT phone FROM customers WHERE name = 'inflight'"), "555-INFLIGHT"
    )


async def test_a_failing_copy_stores_nothing_and_the_next_one_works(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    with _connect(stack) as sock:
        # the second row has a field too many: the COPY fails as a whole
        sock.sendall(
            _extended("COPY customers (business_id, name, phone) FROM STDIN")
            + codec.message(b"d", b"43\tgood\t555-GOOD\n43\tbad\t555-BAD\textra\n")
            + codec.message(b"c")
            + codec.SYNC
        )
        answer = _until_ready(sock)
        (error,) = _errors(answer)
        assert error["C"] in ("22P04", "0A000")  # Postgres's bad COPY data, or pgseal's
        assert "555-GOOD" not in str(error)
        assert "555-BAD" not in str(error)
        sock.sendall(
            _extended("COPY customers (business_id, name, phone) FROM STDIN")
            + codec.message(b"d", b"43\tnext\t555-NEXT\n")
            + codec.message(b"c")
            + codec.SYNC
        )
        assert not _errors(_until_ready(sock))
        # COPY TO through the extended protocol opens the values in the stream
        sock.sendall(
            _extended("COPY (SELECT name, phone FROM customers WHERE business_id = 43) TO STDOUT")
            + codec.SYNC
        )
        answer = _until_ready(sock)
        assert not _errors(answer)
        data = [body for kind, body in answer if kind == "d"]
        assert data == [b"next\t555-NEXT\n"]
        sock.sendall(codec.TERMINATE)
    stored = await raw.fetch("SELECT name, phone FROM customers WHERE business_id = 43")
    assert [row["name"] for row in stored] == ["next"]
    assert_envelope(stored[0]["phone"], "555-NEXT")


async def test_copy_without_the_tenant_column_takes_the_session_tenant(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    copy = _extended("COPY customers (name, phone) FROM STDIN") + codec.message(
        b"d", b"notenant\t555-NOTENANT\n"
    )
    with _connect(stack) as sock:
        # no session tenant: whose key would seal it? Refused at the Parse.
        sock.sendall(copy + codec.message(b"c") + codec.SYNC)
        (error,) = _errors(_until_ready(sock))
        assert error["C"] == "42501"
        assert "public.customers" in error["M"]
        sock.sendall(codec.message(b"Q", b"SET pgseal.tenant = '44'\x00"))
        _until_ready(sock)
        sock.sendall(copy + codec.message(b"c") + codec.SYNC)
        assert not _errors(_until_ready(sock))
        sock.sendall(codec.TERMINATE)
    stored = await raw.fetch("SELECT business_id, phone FROM customers WHERE name = 'notenant'")
    assert [row["business_id"] for row in stored] == [44]
    assert_envelope(stored[0]["phone"], "555-NOTENANT")
