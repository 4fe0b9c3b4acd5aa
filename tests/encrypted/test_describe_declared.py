"""Describe of a statement whose Parse declared parameter types, through pgseal.

Postgres reports a declared type as it is; only an unspecified (0) one is
inferred. pgjdbc declares varchar for setString and refuses to go on when the
ParameterDescription names another type ("Can't change resolved type"), so
pgseal must not replace a declared type with the protected column's logical one.
"""

from __future__ import annotations

import psycopg

from tests.encrypted.conftest import Stack

VARCHAR, TEXT, INT4, NUMERIC = 1043, 25, 23, 1700


def test_declared_parameter_types_are_reported_as_declared(stack: Stack) -> None:
    with psycopg.connect(stack.conninfo(), autocommit=True) as conn:
        pg = conn.pgconn
        sql = (
            "INSERT INTO customers (business_id, name, phone, tax_id, credit)"
            " VALUES ($1, $2, $3, $4, $5)"
        )
        declared = [INT4, VARCHAR, VARCHAR, 0, 0]
        pg.prepare(b"declared", sql.encode(), declared)
        described = pg.describe_prepared(b"declared")
        assert described.status == psycopg.pq.ExecStatus.COMMAND_OK, described.error_message
        got = [described.param_type(i) for i in range(described.nparams)]
        # phone declared varchar stays varchar; tax_id and credit unspecified: logical types.
        assert got == [INT4, VARCHAR, VARCHAR, TEXT, NUMERIC]
        search = b"SELECT name FROM customers WHERE business_id = $1 AND email = $2"
        pg.prepare(b"search", search, [INT4, VARCHAR])
        described = pg.describe_prepared(b"search")
        assert [described.param_type(i) for i in range(described.nparams)] == [INT4, VARCHAR]
