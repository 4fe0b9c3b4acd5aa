"""The fix rules.catalog proposes for a column not stored as its storage type.

``pgseal serve`` refuses to start on such a column and prints this hint; it must
never be a statement that wipes the column (``USING NULL``), and the statement
it offers for an empty column must keep values, which a real Postgres checks.
"""

from __future__ import annotations

import asyncpg
import pytest

from rules.catalog import CatalogError, build_catalog
from rules.model import ProtectedColumn, ProtectedTable, Rules
from tests.conftest import PgServer

PHONE = ProtectedColumn("public", "customers", "phone", "text")
RULES = Rules(
    {"public.customers": ProtectedTable("public", "customers", "business_id", {"phone": PHONE})}
)


def _problem(phone_type: str) -> str:
    rows = [
        ("public", "customers", 16400, "business_id", 1, "bigint", 20),
        ("public", "customers", 16400, "phone", 2, phone_type, 1043),
    ]
    with pytest.raises(CatalogError) as caught:
        build_catalog(RULES, rows)
    (problem,) = caught.value.problems
    return problem


def test_type_mismatch_points_at_migrate_never_at_using_null() -> None:
    problem = _problem("character varying(20)")
    assert "USING NULL" not in problem
    assert problem.startswith(
        "public.customers.phone is character varying(20), but an encrypted column with "
        "storage bytea must be bytea; fix: mark it migrating: true and run `pgseal migrate"
    ), problem
    assert "`pgseal rules check --config PATH`" in problem
    assert problem.endswith(
        "only if it holds no values yet: ALTER TABLE public.customers ALTER COLUMN phone "
        "TYPE bytea USING convert_to(phone, 'UTF8');"
    ), problem


async def test_the_empty_column_statement_keeps_values(pg_server: PgServer) -> None:
    # Even run on a column that does hold a value, the offered statement loses nothing.
    statement = _problem("integer").rsplit("only if it holds no values yet: ", 1)[1]
    con = await asyncpg.connect(pg_server.dsn())
    try:
        async with con.transaction():
            await con.execute(
                "CREATE TEMP TABLE customers (business_id bigint, phone integer);"
                "INSERT INTO customers VALUES (1, 5550100), (1, NULL)"
            )
            await con.execute(statement.replace("public.customers", "pg_temp.customers"))
            rows = await con.fetch("SELECT phone FROM pg_temp.customers ORDER BY phone NULLS LAST")
    finally:
        await con.close()
    assert [r["phone"] for r in rows] == [b"5550100", None]
