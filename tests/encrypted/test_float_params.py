"""real / double precision parameters into encrypted numeric and integer columns.

Postgres reads such a parameter as a float, then applies the assignment cast
(15 significant digits for numeric, round half to even for the integers, NaN
and infinities out of range for them). pgseal must store exactly what Postgres
would: each value is checked against Postgres's own cast of the same parameter.
"""

from __future__ import annotations

import math
from decimal import Decimal

import asyncpg
import psycopg
import pytest

from tests.encrypted.conftest import Stack, assert_envelope

VALUES = [
    0.1, 1.2345678901234567, 2.5, 3.5, -2.5, 0.5, 1e20, 1e-7, 123456789.123456789,
    -0.0, 1e300, 2.0**53 + 1, 4.4e9, math.nan, math.inf, -math.inf,
]  # fmt: skip


TARGETS = [("c_numeric", "numeric"), ("c_int", "integer"), ("c_bigint", "bigint")]


def _same(value: object) -> object:
    """NaN equals itself here, so the two answers can be compared with ==."""
    return "NaN" if isinstance(value, Decimal) and value.is_nan() else value


async def _postgres(direct: str, value: float, target: str, placeholder: str) -> object:
    """Postgres's own answer: the value, or the SQLSTATE it refuses it with."""
    async with await psycopg.AsyncConnection.connect(direct, autocommit=True) as conn:
        try:
            cur = await conn.execute(f"SELECT CAST({placeholder} AS {target})", (value,))
        except psycopg.Error as exc:
            return exc.sqlstate
        row = await cur.fetchone()
    assert row is not None
    return _same(row[0])


async def _pgseal(
    conn: psycopg.AsyncConnection[tuple[object, ...]], value: float, column: str, placeholder: str
) -> tuple[object, int | None]:
    """What pgseal stored (read back through it), or the SQLSTATE; and the row's id."""
    try:
        cur = await conn.execute(
            f"INSERT INTO typed (business_id, {column}) VALUES (41, {placeholder}) RETURNING id",
            (value,),
        )
    except psycopg.Error as exc:
        return exc.sqlstate, None
    row = await cur.fetchone()
    assert row is not None
    row_id = row[0]
    assert isinstance(row_id, int)
    cur = await conn.execute(f"SELECT {column} FROM typed WHERE id = %s", (row_id,))
    back = await cur.fetchone()
    assert back is not None
    return _same(back[0]), row_id


@pytest.mark.parametrize("placeholder", ["%s", "%b"], ids=["text", "binary"])
@pytest.mark.parametrize(("column", "target"), TARGETS)
async def test_as_postgres_casts_them(
    stack: Stack, raw: asyncpg.Connection, column: str, target: str, placeholder: str
) -> None:
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        for value in VALUES:
            want = await _postgres(stack.direct_dsn, value, target, placeholder)
            have, row_id = await _pgseal(conn, value, column, placeholder)
            assert have == want, value
            if row_id is not None:
                stored = await raw.fetchval(f"SELECT {column} FROM typed WHERE id = $1", row_id)
                assert_envelope(stored)


async def test_into_other_types_refused(stack: Stack) -> None:
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as conn:
        for placeholder in ("%s", "%b"):
            with pytest.raises(psycopg.Error) as refused:
                await conn.execute(
                    f"INSERT INTO typed (business_id, c_text) VALUES (41, {placeholder})", (1.25,)
                )
            assert refused.value.sqlstate == "0A000"
            assert "double precision" in str(refused.value)
