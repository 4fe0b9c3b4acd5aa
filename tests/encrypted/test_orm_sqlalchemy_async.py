"""SQLAlchemy's asyncio ORM on asyncpg (``postgresql+asyncpg``) through pgseal.

The stack of many web services (FastAPI and the like). The asyncpg dialect is
not asyncpg used by hand: it renders ``$n::VARCHAR``-style casts on
parameters, prepares every statement through asyncpg's statement cache,
introspects and registers JSON codecs on connect, runs insertmanyvalues batches
with ``RETURNING`` and sorts them by a sentinel column, and wraps everything in
transactions of its own. The session's tenant comes from a ``pgseal.tenant``
startup parameter (asyncpg's ``server_settings``). Every write is checked on
the raw table with a direct connection.
"""

from __future__ import annotations

import decimal
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import selectinload

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached, marker
from tests.encrypted.test_orm_sqlalchemy import Customer, Invoice

TENANT = 51


@pytest.fixture
async def engine(stack: Stack, raw: asyncpg.Connection) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(
        f"postgresql+asyncpg://postgres@127.0.0.1:{stack.proxy.port}/postgres",
        connect_args={"server_settings": {"pgseal.tenant": str(TENANT)}},
    )
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_unit_of_work_batches_relationships_and_search(
    engine: AsyncEngine, raw: asyncpg.Connection
) -> None:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        customers = [
            Customer(
                business_id=TENANT,
                name=f"async-{i}",
                email=f"Async.{i}@Example.org",
                tax_id=f"ASYNC-TAX-{i}",
                phone=f"555-ASYNC-{i}",
                credit=decimal.Decimal(i) / 4,
                invoices=[
                    Invoice(business_id=TENANT, total=decimal.Decimal(i), notes=f"async note {i}")
                ],
            )
            for i in range(30)
        ]
        session.add_all(customers)
        await session.commit()  # insertmanyvalues with RETURNING, sorted by sentinel
        ids = [c.id for c in customers]
    assert len(set(ids)) == 30
    async with AsyncSession(engine, expire_on_commit=False) as session:
        found = (
            await session.scalars(
                sa.select(Customer)
                .options(selectinload(Customer.invoices))
                .where(Customer.email == " ASYNC.7@example.ORG")  # normalize: trim, casefold
            )
        ).one()
        assert (found.id, found.phone, found.tax_id, found.credit) == (
            ids[7],
            "555-ASYNC-7",
            "ASYNC-TAX-7",
            decimal.Decimal("1.75"),
        )
        assert [i.notes for i in found.invoices] == ["async note 7"]
        names = (
            await session.scalars(
                sa.select(Customer.name)
                .where(Customer.tax_id.in_(["ASYNC-TAX-3", "ASYNC-TAX-29", "ASYNC-TAX-99"]))
                .order_by(Customer.name)
            )
        ).all()
        assert names == ["async-29", "async-3"]
        found.phone = "555-ASYNC-CHANGED"  # UPDATE ... WHERE id = $n: the session's tenant
        await session.commit()
    stored = await raw.fetch(
        "SELECT c.id, c.email, c.email_bidx, c.tax_id, c.phone, c.credit, i.notes"
        " FROM customers c JOIN invoices i ON i.customer_id = c.id WHERE c.business_id = $1",
        TENANT,
    )
    assert len(stored) == 30
    for row in stored:
        assert_envelope(row["email"], "Example.org", "Async")
        assert_envelope(row["tax_id"], "ASYNC-TAX")
        assert_envelope(row["phone"], "555-ASYNC")
        assert_envelope(row["credit"])
        assert_envelope(row["notes"], "async note")
        assert row["email_bidx"] is not None
    async with AsyncSession(engine, expire_on_commit=False) as session:
        changed = await session.get(Customer, ids[7])
        assert changed is not None
        assert changed.phone == "555-ASYNC-CHANGED"


async def test_a_refused_query_rolls_back_and_the_pool_goes_on(
    stack: Stack, engine: AsyncEngine, raw: asyncpg.Connection
) -> None:
    refused = marker()
    async with AsyncSession(engine, expire_on_commit=False) as session:
        session.add(Customer(business_id=TENANT, name="async-keep", phone="555-ASYNC-KEEP"))
        await session.flush()
        with pytest.raises(sa.exc.DBAPIError) as info:
            await session.execute(
                sa.select(Customer.name).where(Customer.name == refused).order_by(Customer.phone)
            )
        assert getattr(info.value.orig, "sqlstate", None) == "0A000"
        assert "ORDER BY on encrypted column public.customers.phone" in str(info.value)
        await session.rollback()  # the flushed row goes with the transaction
    async with AsyncSession(engine, expire_on_commit=False) as session:
        count = await session.scalar(sa.select(sa.func.count()).select_from(Customer))
        assert count == 0
        session.add(Customer(business_id=TENANT, name="async-after", phone="555-ASYNC-AFTER"))
        await session.commit()
    assert await raw.fetchval("SELECT count(*) FROM customers WHERE name = 'async-keep'") == 0
    assert_envelope(
        await raw.fetchval("SELECT phone FROM customers WHERE name = 'async-after'"),
        "555-ASYNC-AFTER",
    )
    await assert_never_reached(stack, refused)


async def test_another_business_row_is_not_opened(
    engine: AsyncEngine, raw: asyncpg.Connection, stack: Stack
) -> None:
    other = await asyncpg.connect(stack.dsn())
    try:
        await other.execute(
            "INSERT INTO customers (business_id, name, phone) VALUES ($1, 'async-other', $2)",
            TENANT + 1,
            "555-ASYNC-OTHER",
        )
    finally:
        await other.close()
    async with AsyncSession(engine, expire_on_commit=False) as session:
        with pytest.raises(sa.exc.DBAPIError) as info:
            await session.scalar(sa.select(Customer.phone).where(Customer.name == "async-other"))
        assert "public.customers.phone" in str(info.value)
        assert "555-ASYNC-OTHER" not in str(info.value)
