"""A bare table name in a session whose search_path finds another schema's table first.

Schema-per-tenant apps put the tenant's schema before ``public``. pgseal reads a
bare ``customers`` as ``public.customers``; with ``sp_tenant.customers`` first in
the search_path the statement would run on that table: pgseal would seal its
values and, its table OID not being configured, return its envelopes unopened.
PostgreSQL 18 reports search_path (ParameterStatus), and pgseal refuses bare
names while they mean another table; schema-qualified names keep working.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import psycopg
import pytest

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached, marker


@pytest.fixture
async def tenant_schema(stack: Stack, raw: asyncpg.Connection) -> AsyncIterator[None]:
    """sp_tenant.customers, created through pgseal (so it refreshes its catalog)."""
    with psycopg.connect(stack.direct_dsn) as direct:
        if direct.info.parameter_status("search_path") is None:  # PGSEAL_TEST_PG_VERSION=15
            pytest.skip("the server does not report search_path (PostgreSQL < 18)")
    with psycopg.connect(stack.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA sp_tenant")
        conn.execute("CREATE TABLE sp_tenant.customers (id int, business_id int, phone bytea)")
    try:
        yield
    finally:
        await raw.execute("DROP SCHEMA sp_tenant CASCADE")


@pytest.mark.usefixtures("tenant_schema")
async def test_bare_names_are_refused_while_they_mean_another_schemas_table(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    m = marker()
    with psycopg.connect(stack.conninfo(), autocommit=True) as conn:
        conn.execute("SET pgseal.tenant = '81'")
        conn.execute("SET search_path = sp_tenant, public")
        for sql in (
            f"INSERT INTO customers (business_id, name, phone) VALUES (81, '{m}', '555-SP')",
            f"SELECT phone FROM customers WHERE name = '{m}'",
        ):
            with pytest.raises(psycopg.Error) as refused:
                conn.execute(sql)
            assert refused.value.sqlstate == "0A000"
            assert (
                "a bare table name on encrypted table public.customers is not supported while "
                "this session's search_path finds sp_tenant.customers first"
            ) in str(refused.value)
        # schema-qualified, the statement says which table it means
        conn.execute(
            "INSERT INTO public.customers (business_id, name, phone) VALUES (81, 'sp-q', %s)",
            ("555-SPQ",),
        )
        assert conn.execute(
            "SELECT phone FROM public.customers WHERE name = 'sp-q'"
        ).fetchall() == [("555-SPQ",)]
        # with public first the bare name means public.customers again
        conn.execute("SET search_path = public, sp_tenant")
        assert conn.execute("SELECT phone FROM customers WHERE name = 'sp-q'").fetchall() == [
            ("555-SPQ",)
        ]
    await assert_never_reached(stack, m)
    assert await raw.fetchval("SELECT count(*) FROM sp_tenant.customers") == 0
    assert_envelope(
        await raw.fetchval("SELECT phone FROM public.customers WHERE name = 'sp-q'"), "555-SPQ"
    )


async def test_a_schema_without_that_table_changes_nothing(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    with psycopg.connect(stack.conninfo(), autocommit=True) as conn:
        conn.execute("SET pgseal.tenant = '82'")
        conn.execute('SET search_path = "$user", nowhere, public')
        conn.execute(
            "INSERT INTO customers (business_id, name, phone) VALUES (82, 'sp-n', '555-SPN')"
        )
        assert conn.execute("SELECT phone FROM customers WHERE name = 'sp-n'").fetchall() == [
            ("555-SPN",)
        ]
    assert_envelope(
        await raw.fetchval("SELECT phone FROM customers WHERE name = 'sp-n'"), "555-SPN"
    )
