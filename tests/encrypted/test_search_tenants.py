"""Blind-index search (=, IN, = ANY) over data written by several sessions and
tenants, and tenant isolation: SET, SET LOCAL, RESET, startup option, require_tenant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import psycopg
import pytest

from tests.encrypted.conftest import (
    RULES,
    Stack,
    assert_envelope,
    assert_log_clean,
    assert_never_reached,
    marker,
)
from tests.pgseal_process import PgsealProcess, start_pgseal

PEOPLE = [  # (business, name, email, tax_id, phone)
    (1, "ann", "ann@example.com", "T-100", "555-0101"),
    (1, "bob", "bob@example.com", "T-200", "555-0102"),
    (2, "ann", "ann@example.com", "T-100", "555-0201"),  # same plaintexts, other tenant
    (2, "cy", "cy@example.com", "T-300", "555-0202"),
]


@pytest.fixture
async def people(stack: Stack, raw: asyncpg.Connection) -> None:
    """Written through pgseal by three sessions: asyncpg params, a simple-Query
    literal with the session tenant, and psycopg."""
    first = await asyncpg.connect(stack.dsn())
    try:
        await first.executemany(
            "INSERT INTO customers (business_id, name, email, tax_id, phone)"
            " VALUES ($1, $2, $3, $4, $5)",
            PEOPLE[:2],
        )
    finally:
        await first.close()
    second = await asyncpg.connect(stack.dsn())
    try:
        await second.execute("SET pgseal.tenant = '2'")
        b, name, email, tax, phone = PEOPLE[2]
        await second.execute(
            "INSERT INTO customers (name, email, tax_id, phone, business_id)"
            f" VALUES ('{name}', '{email}', '{tax}', '{phone}', {b})"
        )
    finally:
        await second.close()
    async with await psycopg.AsyncConnection.connect(stack.conninfo(), autocommit=True) as third:
        await third.execute(
            "INSERT INTO customers (business_id, name, email, tax_id, phone)"
            " VALUES (%s, %s, %s, %s, %s)",
            PEOPLE[3],
        )
    stored = await raw.fetch("SELECT * FROM customers ORDER BY id")
    assert len(stored) == 4
    for row, (_, _, email, tax, phone) in zip(stored, PEOPLE, strict=True):
        assert_envelope(row["email"], email)
        assert_envelope(row["phone"], phone)
        assert_envelope(row["tax_id"], tax)
        assert row["email_bidx"] is not None
        assert email.encode() not in row["email_bidx"]
    # the same email under two tenants has two different blind indexes
    assert stored[0]["email_bidx"] != stored[2]["email_bidx"]


@pytest.mark.usefixtures("people")
async def test_equality_search_with_where_tenant(app: asyncpg.Connection) -> None:
    rows = await app.fetch(
        "SELECT name, phone FROM customers WHERE business_id = $1 AND email = $2",
        1,
        "ann@example.com",
    )
    assert [tuple(r) for r in rows] == [("ann", "555-0101")]
    # normalize: [trim, casefold] on email; tax_id has no normalisation
    assert (
        await app.fetchval(
            "SELECT name FROM customers WHERE business_id = 2 AND email = $1", "  CY@Example.COM "
        )
        == "cy"
    )
    assert (
        await app.fetchval(
            "SELECT name FROM customers WHERE business_id = 2 AND tax_id = $1", "t-300"
        )
        is None
    )
    assert (
        await app.fetchval(
            "SELECT count(*) FROM customers WHERE business_id = 1 AND email <> 'ann@example.com'"
        )
        == 1
    )


@pytest.mark.usefixtures("people")
async def test_in_list_and_any_with_session_tenant(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.dsn())
    try:
        await conn.execute("SET pgseal.tenant = '1'")
        stmt = await conn.prepare("SELECT name FROM customers WHERE email = ANY($1) ORDER BY name")
        got = await stmt.fetch(["ann@example.com", "bob@example.com", "cy@example.com"])
        assert [r["name"] for r in got] == ["ann", "bob"]  # cy belongs to business 2
        got = await conn.fetch(
            "SELECT name FROM customers WHERE tax_id IN ('T-200', 'T-300', $1) ORDER BY name",
            "T-100",
        )
        assert [r["name"] for r in got] == ["ann", "bob"]
        await conn.execute("SET pgseal.tenant = '2'")
        got = await stmt.fetch(["ann@example.com", "cy@example.com"])
        assert [r["name"] for r in got] == ["ann", "cy"]
    finally:
        await conn.close()


@pytest.mark.usefixtures("people")
async def test_search_without_a_tenant_is_refused(stack: Stack, app: asyncpg.Connection) -> None:
    m = marker()
    with pytest.raises(asyncpg.PostgresError) as info:
        await app.fetch(f"SELECT id FROM customers WHERE email = '{m}'")
    assert "public.customers.email" in str(info.value)
    assert "business" in str(info.value)
    await assert_never_reached(stack, m)


@pytest.mark.usefixtures("people")
async def test_session_tenant_opens_only_its_values(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.dsn())
    try:
        await conn.execute("SET pgseal.tenant = '2'")
        assert await conn.fetchval("SHOW pgseal.tenant") == "2"
        rows = await conn.fetch("SELECT phone FROM customers WHERE business_id = 2 ORDER BY id")
        assert [r["phone"] for r in rows] == ["555-0201", "555-0202"]
        with pytest.raises(asyncpg.PostgresError) as info:
            await conn.fetch("SELECT phone FROM customers")  # business 1's rows too
        assert info.value.sqlstate == "42501"
        assert "public.customers.phone" in str(info.value)
        assert "555-01" not in str(info.value)
        # a write for another business is refused
        with pytest.raises(asyncpg.PostgresError) as info:
            await conn.execute(
                "INSERT INTO customers (business_id, name, phone) VALUES (1, 'eve', '1')"
            )
        assert "public.customers" in str(info.value)
        # RESET: no tenant, every business's values open again
        await conn.execute("RESET pgseal.tenant")
        assert len(await conn.fetch("SELECT phone FROM customers")) == 4
    finally:
        await conn.close()


@pytest.mark.usefixtures("people")
async def test_set_local_ends_with_the_transaction(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.dsn())
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL pgseal.tenant = '1'")
            with pytest.raises(asyncpg.PostgresError):
                await conn.fetch("SELECT phone FROM customers WHERE business_id = 2")
        # the failed block rolled back; a new one, still scoped
        async with conn.transaction():
            await conn.execute("SET LOCAL pgseal.tenant = '1'")
            got = await conn.fetch("SELECT phone FROM customers WHERE email = 'bob@example.com'")
            assert [r["phone"] for r in got] == ["555-0102"]
        assert len(await conn.fetch("SELECT phone FROM customers")) == 4
        with pytest.raises(asyncpg.PostgresError):  # no tenant any more: no search
            await conn.fetch("SELECT phone FROM customers WHERE email = 'bob@example.com'")
    finally:
        await conn.close()


@pytest.mark.usefixtures("people")
async def test_startup_option_sets_the_tenant(stack: Stack) -> None:
    async with await psycopg.AsyncConnection.connect(
        stack.conninfo(options="-cpgseal.tenant=1"), autocommit=True
    ) as conn:
        cur = await conn.execute(
            "SELECT phone FROM customers WHERE email = %s", ("ann@example.com",)
        )
        assert await cur.fetchall() == [("555-0101",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("SELECT phone FROM customers WHERE business_id = 2")
    conn2 = await asyncpg.connect(stack.dsn(), server_settings={"options": "-c pgseal.tenant=2"})
    try:
        got = await conn2.fetch("SELECT name FROM customers WHERE email = $1", "ann@example.com")
        assert [r["name"] for r in got] == ["ann"]
        rows = await conn2.fetch(
            "SELECT business_id FROM customers WHERE email = $1", "ann@example.com"
        )
        assert [r["business_id"] for r in rows] == [2]
    finally:
        await conn2.close()


async def test_write_without_a_tenant_is_refused(
    stack: Stack, app: asyncpg.Connection, raw: asyncpg.Connection
) -> None:
    await raw.execute("INSERT INTO customers (business_id, name) VALUES (1, 'nobody')")
    m = marker()
    for sql, args in [
        ("UPDATE customers SET phone = $1 WHERE name = 'nobody'", (m,)),
        (f"UPDATE customers SET phone = '{m}' WHERE name = 'nobody'", ()),
        # refused by the planner already: the tenant column is not a literal or $n
        ("INSERT INTO customers (business_id, phone) VALUES ((SELECT 1), $1)", (m,)),
    ]:
        with pytest.raises(asyncpg.PostgresError) as info:
            await app.execute(sql, *args)
        assert info.value.sqlstate == "42501"  # as every tenant refusal of a session
        assert info.value.args[0] == (
            "pgseal: cannot tell which business owns this write to public.customers.phone"
        )
    await assert_never_reached(stack, m)
    assert await raw.fetchval("SELECT phone FROM customers") is None


@pytest.fixture(scope="module")
def strict_proxy(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgsealProcess]:
    """A second pgseal on the same database, with require_tenant: true."""
    base = tmp_path_factory.mktemp("pgseal-enc-strict")
    proxy = start_pgseal(
        base,
        f"postgresql://127.0.0.1:{stack.cluster.port}/postgres",
        f"service_dsn: {stack.direct_dsn}\nmaster_key: env:PGSEAL_MK\nrequire_tenant: true\n"
        + RULES,
        {"PGSEAL_MK": stack.master_key},
    )
    try:
        yield proxy
    finally:
        proxy.stop()
    assert_log_clean(proxy, stack.master_key)


@pytest.fixture
async def strict(strict_proxy: PgsealProcess) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(strict_proxy.dsn(user="postgres", database="postgres"))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.mark.usefixtures("people")
async def test_require_tenant(stack: Stack, strict: asyncpg.Connection) -> None:
    m = marker()
    with pytest.raises(asyncpg.PostgresError) as info:
        await strict.fetch(f"SELECT name FROM customers WHERE name = '{m}'")
    assert info.value.sqlstate in {"0A000", "42501"}
    assert "public.customers" in str(info.value)
    assert "tenant" in str(info.value)
    assert await strict.fetchval("SELECT count(*) FROM plain") == 0  # unprotected: fine
    await assert_never_reached(stack, m)
    await strict.execute("SET pgseal.tenant = '1'")
    names = await strict.fetch("SELECT name FROM customers WHERE business_id = 1 ORDER BY name")
    assert [r["name"] for r in names] == ["ann", "bob"]
    await asyncio.sleep(0)


@pytest.mark.usefixtures("people")
async def test_update_with_a_session_tenant_touches_only_its_rows(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    """'ann' exists in businesses 1 and 2; a tenant-1 session's UPDATE ... WHERE
    name = 'ann' must not seal business 2's row under business 1's key."""
    before = await raw.fetchval(
        "SELECT phone FROM customers WHERE business_id = 2 AND name = 'ann'"
    )
    conn = await asyncpg.connect(stack.dsn())
    try:
        await conn.execute("SET pgseal.tenant = '1'")
        assert (
            await conn.execute("UPDATE customers SET phone = $1 WHERE name = $2", "555-NEW", "ann")
            == "UPDATE 1"
        )
        assert (
            await conn.execute(  # simple Query, literal value
                "UPDATE customers SET phone = '555-NEWER', email = 'ann2@example.com'"
                " WHERE name = 'ann'"
            )
            == "UPDATE 1"
        )
        got = await conn.fetch("SELECT phone FROM customers WHERE email = 'ann2@example.com'")
        assert [r["phone"] for r in got] == ["555-NEWER"]
    finally:
        await conn.close()
    assert (
        await raw.fetchval("SELECT phone FROM customers WHERE business_id = 2 AND name = 'ann'")
        == before
    )
    async with await psycopg.AsyncConnection.connect(
        stack.conninfo(options="-cpgseal.tenant=2"), autocommit=True
    ) as other:
        cur = await other.execute(
            "SELECT phone FROM customers WHERE business_id = 2 AND name = 'ann'"
        )
        assert await cur.fetchall() == [("555-0201",)]
