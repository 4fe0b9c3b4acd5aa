"""COPY on a protected table pipelined with other requests.

The COPY's transform used to live in one slot that the ReadyForQuery of a
Query pipelined ahead of it cleared: COPY TO then relayed the raw envelopes to
the client, and COPY FROM dropped every row the client sent (and reported
``COPY 0``). Each COPY is now tied to its own request's answers, a Query's or
an Execute's. Raw protocol bytes: no driver sends these pipelines on its own.
"""

from __future__ import annotations

import asyncio
import os
import struct

import asyncpg

from tests.encrypted.conftest import Stack, assert_envelope
from tests.proxy import wire


async def pipeline(stack: Stack, messages: bytes, queries: int) -> list[tuple[bytes, bytes]]:
    """Send ``messages`` in one write; every message until ``queries`` ReadyForQuery."""
    reader, writer = await asyncio.open_connection(stack.proxy.host, stack.proxy.port)
    try:
        writer.write(wire.startup({"user": "postgres", "database": "postgres"}))
        answers: list[tuple[bytes, bytes]] = []
        ready = -1  # the startup's
        while ready < queries:
            head = await asyncio.wait_for(reader.readexactly(5), 30)
            body = await reader.readexactly(struct.unpack("!I", head[1:])[0] - 4)
            if ready == -1 and head[:1] == b"Z":
                writer.write(messages)
            elif ready >= 0:
                answers.append((head[:1], body))
            ready += head[:1] == b"Z"
        writer.write(wire.terminate())
        return answers
    finally:
        writer.close()


async def test_copy_to_behind_a_query_opens_the_values(
    stack: Stack, app: asyncpg.Connection
) -> None:
    tenant, phone = 7301, f"555-{os.urandom(4).hex()}"
    await app.execute(
        "INSERT INTO customers (business_id, name, phone) VALUES ($1, 'pipelined', $2)",
        tenant,
        phone,
    )
    copy = f"COPY (SELECT phone FROM customers WHERE business_id = {tenant}) TO STDOUT"
    answers = await pipeline(stack, wire.query("SELECT 1") + wire.query(copy), 2)
    assert [body for kind, body in answers if kind == b"d"] == [f"{phone}\n".encode()]
    assert (b"C", b"COPY 1\x00") in answers


async def test_copy_to_ahead_of_a_query_opens_the_values(
    stack: Stack, app: asyncpg.Connection
) -> None:
    tenant, phone = 7302, f"555-{os.urandom(4).hex()}"
    await app.execute(
        "INSERT INTO customers (business_id, name, phone) VALUES ($1, 'pipelined', $2)",
        tenant,
        phone,
    )
    copy = f"COPY (SELECT phone FROM customers WHERE business_id = {tenant}) TO STDOUT"
    answers = await pipeline(stack, wire.query(copy) + wire.query("SELECT 1"), 2)
    assert [body for kind, body in answers if kind == b"d"] == [f"{phone}\n".encode()]


async def test_copy_from_behind_a_query_seals_every_row(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    tenant, phone = 7303, f"555-{os.urandom(4).hex()}"
    copy = "COPY customers (business_id, name, phone) FROM STDIN"
    answers = await pipeline(
        stack,
        wire.query("SELECT 1")
        + wire.query(copy)
        + wire.copy_data(f"{tenant}\tpipelined\t{phone}\n".encode())
        + wire.copy_done(),
        2,
    )
    assert (b"C", b"COPY 1\x00") in answers
    rows = await raw.fetch("SELECT name, phone FROM customers WHERE business_id = $1", tenant)
    assert [r["name"] for r in rows] == ["pipelined"]
    assert_envelope(rows[0]["phone"], phone)


def extended(sql: str) -> bytes:
    return wire.parse("", sql) + wire.bind() + wire.execute()


async def test_copy_to_skipped_after_an_error_leaves_the_next_one_opened(
    stack: Stack, app: asyncpg.Connection
) -> None:
    tenant, phone = 7304, f"555-{os.urandom(4).hex()}"
    await app.execute(
        "INSERT INTO customers (business_id, name, phone) VALUES ($1, 'pipelined', $2)",
        tenant,
        phone,
    )
    copy = f"COPY (SELECT phone FROM customers WHERE business_id = {tenant}) TO STDOUT"
    answers = await pipeline(
        stack,
        # Postgres skips the first COPY (the error before it), then runs the second.
        extended("SELECT 1/0") + extended(copy) + wire.sync() + extended(copy) + wire.sync(),
        2,
    )
    assert [body for kind, body in answers if kind == b"d"] == [f"{phone}\n".encode()]
    assert [kind for kind, _ in answers].count(b"E") == 1
