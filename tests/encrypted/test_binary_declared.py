"""A binary parameter declared as a type pgseal cannot read, for a protected column.

Read as the column's own type its bytes would be another value (a float8 1.25
as bigint 4608308318706860032, which pgseal once stored): such a parameter is
refused, nothing reaches the table. real/double precision are read as floats
and cast as Postgres casts them (tests/encrypted/test_float_params.py); here a
type pgseal has no reader for at all (money, OID 790).
"""

from __future__ import annotations

import struct

import asyncpg
import psycopg

from tests.encrypted.conftest import Stack

INT4, MONEY, BPCHAR = 23, 790, 1042


async def test_binary_money_for_a_protected_bigint_is_refused_not_misread(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    sql = b"INSERT INTO typed (business_id, c_bigint, c_text) VALUES ($1, $2, $3)"
    one = struct.pack("!i", 77)
    with psycopg.connect(stack.conninfo(), autocommit=True) as conn:
        pg = conn.pgconn
        pg.prepare(b"floaty", sql, [INT4, MONEY, BPCHAR])
        for _ in range(2):  # the first Bind and the prepared fast path after it
            res = pg.exec_prepared(
                b"floaty", [one, struct.pack("!q", 125), b"bp"], param_formats=[1, 1, 1]
            )
            assert res.status == psycopg.pq.ExecStatus.FATAL_ERROR
            assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"0A000"
            assert b"binary value of type OID 790" in (res.error_message or b"")
        # The connection goes on; a binary int4 (a logical type) and bpchar are read right.
        pg.prepare(b"inty", sql, [INT4, INT4, BPCHAR])
        res = pg.exec_prepared(b"inty", [one, struct.pack("!i", 5), b"bp"], param_formats=[1, 1, 1])
        assert res.status == psycopg.pq.ExecStatus.COMMAND_OK, res.error_message
        got = conn.execute("SELECT c_bigint, c_text FROM typed WHERE business_id = 77").fetchall()
    assert got == [(5, "bp")]
    assert await raw.fetchval("SELECT count(*) FROM typed WHERE business_id = 77") == 1
