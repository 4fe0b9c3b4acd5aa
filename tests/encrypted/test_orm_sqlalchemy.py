"""The SQLAlchemy ORM (2.0 style, psycopg 3) through pgseal on protected columns.

The unit of work sends what real apps send: multi-row ``INSERT ... RETURNING``
(insertmanyvalues), ``UPDATE ... WHERE id = %(pk)s`` with no tenant in it (the
session's tenant comes from the startup option), lazy loads of a relationship.
Every write is checked on the raw table with a direct connection.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator

import asyncpg
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
)

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached, marker


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    business_id: Mapped[int]
    name: Mapped[str | None]
    email: Mapped[str | None]
    tax_id: Mapped[str | None]
    phone: Mapped[str | None]
    credit: Mapped[decimal.Decimal | None]
    invoices: Mapped[list[Invoice]] = relationship(
        back_populates="customer", cascade="all, delete-orphan", order_by="Invoice.id"
    )


class Invoice(Base):
    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    business_id: Mapped[int]
    customer_id: Mapped[int | None] = mapped_column(sa.ForeignKey("customers.id"))
    total: Mapped[decimal.Decimal | None]
    notes: Mapped[str | None]
    customer: Mapped[Customer | None] = relationship(back_populates="invoices")


TENANT = 31


@pytest.fixture
def engine(stack: Stack, raw: asyncpg.Connection) -> Iterator[sa.Engine]:
    """An engine through pgseal whose sessions carry a tenant (startup option), as
    an app serving one business would: the ORM's UPDATE names only the primary key."""
    engine = sa.create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{stack.proxy.port}/postgres",
        connect_args={"options": f"-c pgseal.tenant={TENANT}"},
    )
    try:
        yield engine
    finally:
        engine.dispose()


def _raw_rows(stack: Stack, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(stack.direct_dsn) as direct:
        return direct.execute(sql, params).fetchall()


async def test_unit_of_work_insert_relationship_and_lookup(stack: Stack, engine: sa.Engine) -> None:
    with Session(engine) as session:
        ann = Customer(
            business_id=TENANT,
            name="sa-orm-ann",
            email="Ann.ORM@example.org",
            tax_id="ORM-TAX-1",
            phone="555-ORM-1",
            credit=decimal.Decimal("12.50"),
            invoices=[
                Invoice(business_id=TENANT, total=decimal.Decimal("10"), notes="orm note one"),
                Invoice(business_id=TENANT, total=decimal.Decimal("20"), notes="orm note two"),
            ],
        )
        session.add(ann)
        session.flush()  # INSERT ... RETURNING customers.id, then the invoices
        assert ann.id is not None
        assert all(i.customer_id == ann.id for i in ann.invoices)
        session.commit()
        ann_id = ann.id
    with Session(engine) as session:
        found = session.scalars(
            sa.select(Customer).where(Customer.email == "  ann.orm@EXAMPLE.org")
        ).one()  # normalize: trim, casefold
        assert (found.id, found.phone, found.tax_id, found.credit) == (
            ann_id,
            "555-ORM-1",
            "ORM-TAX-1",
            decimal.Decimal("12.50"),
        )
        assert [i.notes for i in found.invoices] == ["orm note one", "orm note two"]  # lazy load
        by_tax = session.scalars(
            sa.select(Customer.name).where(Customer.tax_id.in_(["ORM-TAX-1", "ORM-TAX-X"]))
        ).all()
        assert by_tax == ["sa-orm-ann"]
        joined = session.execute(
            sa.select(Customer.phone, Invoice.notes)
            .join(Customer.invoices)
            .where(Customer.id == ann_id, Invoice.total == 20)
        ).all()
        assert joined == [("555-ORM-1", "orm note two")]
    rows = _raw_rows(
        stack,
        "SELECT email, email_bidx, tax_id, phone, credit FROM customers WHERE id = %s",
        ann_id,
    )
    email, email_bidx, tax_id, phone, credit = rows[0]
    assert_envelope(email, "Ann.ORM", "ann.orm")
    assert email_bidx is not None
    assert_envelope(tax_id, "ORM-TAX-1")
    assert_envelope(phone, "555-ORM-1")
    assert_envelope(credit, "12.5")
    for (notes,) in _raw_rows(stack, "SELECT notes FROM invoices WHERE customer_id = %s", ann_id):
        assert_envelope(notes, "orm note")


async def test_update_through_the_unit_of_work_and_delete(stack: Stack, engine: sa.Engine) -> None:
    with Session(engine) as session:
        bob = Customer(business_id=TENANT, name="sa-orm-bob", phone="555-ORM-OLD", email="b@orm")
        session.add(bob)
        session.commit()
        bob.phone = "555-ORM-NEW"  # UPDATE customers SET phone=... WHERE customers.id = ...
        bob.email = "bob.new@orm"
        session.commit()
        bob_id = bob.id
    with Session(engine) as session:
        again = session.get(Customer, bob_id)
        assert again is not None
        assert (again.phone, again.email) == ("555-ORM-NEW", "bob.new@orm")
        assert session.scalars(sa.select(Customer.id).where(Customer.email == "b@orm")).all() == []
        assert session.scalars(
            sa.select(Customer.id).where(Customer.email == "BOB.NEW@orm")
        ).all() == [bob_id]
    ((phone, email),) = _raw_rows(stack, "SELECT phone, email FROM customers WHERE id = %s", bob_id)
    assert_envelope(phone, "555-ORM")
    assert_envelope(email, "bob")
    with Session(engine) as session:
        doomed = session.get(Customer, bob_id)
        session.delete(doomed)
        session.commit()
    assert _raw_rows(stack, "SELECT id FROM customers WHERE id = %s", bob_id) == []


async def test_update_without_a_tenant_is_refused(stack: Stack, raw: asyncpg.Connection) -> None:
    """The ORM's UPDATE names only the primary key: with no session tenant pgseal
    cannot tell whose key to seal with, and refuses rather than guess."""
    no_tenant = sa.create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{stack.proxy.port}/postgres"
    )
    m = marker()
    try:
        with Session(no_tenant) as session:
            carl = Customer(business_id=TENANT, name="sa-orm-carl", phone="555-ORM-C")
            session.add(carl)
            session.commit()  # the INSERT names its tenant: fine
            carl.phone = m
            with pytest.raises(sa.exc.DBAPIError) as info:
                session.commit()
            session.rollback()
            assert session.get(Customer, carl.id) is not None  # the session is usable
    finally:
        no_tenant.dispose()
    orig = info.value.orig
    assert isinstance(orig, psycopg.Error)
    assert orig.sqlstate == "42501"  # pgseal's "no tenant for this write"
    assert "cannot tell which business owns this write to public.customers.phone" in str(orig)
    assert m not in str(orig)  # never a value in the error
    await assert_never_reached(stack, m)


async def test_insertmanyvalues_batches_with_returning(stack: Stack, engine: sa.Engine) -> None:
    count = 250  # more than one page of SQLAlchemy's multi-row INSERT ... VALUES ... RETURNING
    with Session(engine) as session:
        people = [
            Customer(
                business_id=TENANT,
                name=f"sa-many-{i:03}",
                phone=f"555-MANY-{i:03}",
                email=f"many{i}@orm",
                credit=decimal.Decimal(i) / 8,
            )
            for i in range(count)
        ]
        session.add_all(people)
        session.flush()
        # RETURNING matched each generated id to its object, in order
        ids = [p.id for p in people]
        assert len(set(ids)) == count
        session.commit()
    with Session(engine) as session:
        got = session.execute(
            sa.select(Customer.id, Customer.name, Customer.phone).where(Customer.id.in_(ids[::50]))
        ).all()
        assert sorted(got) == [
            (ids[i], f"sa-many-{i:03}", f"555-MANY-{i:03}") for i in range(0, count, 50)
        ]
        core = session.execute(
            sa.insert(Customer).returning(Customer.id, Customer.phone, Customer.email),
            [{"business_id": TENANT, "name": f"sa-bulk-{i}", "phone": f"555-BULK-{i}",
              "email": f"bulk{i}@orm"} for i in range(120)],
        ).all()  # fmt: skip
        assert sorted(r.phone for r in core) == sorted(f"555-BULK-{i}" for i in range(120))
        assert all(r.email.startswith("bulk") for r in core)
        session.commit()
    rows = _raw_rows(
        stack, "SELECT name, phone, email FROM customers WHERE business_id = %s", TENANT
    )
    assert len(rows) == count + 120
    for _, phone, email in rows:
        assert_envelope(phone, "555-MANY", "555-BULK")
        assert_envelope(email, "@orm")


async def test_refused_query_raises_with_sqlstate_0a000(stack: Stack, engine: sa.Engine) -> None:
    m = marker()
    with Session(engine) as session:
        with pytest.raises(sa.exc.NotSupportedError) as info:
            session.scalars(
                sa.select(Customer).where(Customer.name == m).order_by(Customer.phone)
            ).all()
        orig = info.value.orig
        assert isinstance(orig, psycopg.Error)
        assert orig.sqlstate == "0A000"
        assert "ORDER BY on encrypted column public.customers.phone" in str(orig)
        session.rollback()
        assert session.scalar(sa.select(sa.literal(42))) == 42
    await assert_never_reached(stack, m)
