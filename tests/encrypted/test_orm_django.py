"""Django's ORM (psycopg 3 backend) through pgseal on protected columns.

Django is configured in-process; the models are unmanaged (``managed = False``)
over the package's tables. Each test runs twice: with Django's default
client-side binding (psycopg's ClientCursor: values inlined as literals) and with
``server_side_binding`` (Parse/Bind with parameters). Django refuses to run in a
thread with a running event loop, so the ORM code runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import decimal
from collections.abc import Callable
from typing import TypeVar

import asyncpg
import django
import psycopg
import pytest
from django.conf import settings
from django.db import DatabaseError, connections, models, transaction

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached, marker

if not settings.configured:
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": "127.0.0.1",
                "PORT": "1",  # set per test: the package's pgseal
                "NAME": "postgres",
                "USER": "postgres",
            }
        },
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()

TENANT = 41
T = TypeVar("T")


class DjCustomer(models.Model):
    id: models.AutoField[int, int] = models.AutoField(primary_key=True)
    business_id: models.IntegerField[int, int] = models.IntegerField()
    name: models.TextField[str | None, str | None] = models.TextField(null=True)
    email: models.TextField[str | None, str | None] = models.TextField(null=True)
    tax_id: models.TextField[str | None, str | None] = models.TextField(null=True)
    phone: models.TextField[str | None, str | None] = models.TextField(null=True)
    credit: models.DecimalField[decimal.Decimal | None, decimal.Decimal | None] = (
        models.DecimalField(max_digits=30, decimal_places=4, null=True)
    )
    invoices: models.Manager[DjInvoice]

    class Meta:
        app_label = "pgseal_orm"
        managed = False
        db_table = "customers"


class DjInvoice(models.Model):
    id: models.AutoField[int, int] = models.AutoField(primary_key=True)
    business_id: models.IntegerField[int, int] = models.IntegerField()
    customer: models.ForeignKey[DjCustomer | None, DjCustomer | None] = models.ForeignKey(
        DjCustomer, models.DO_NOTHING, db_column="customer_id", null=True, related_name="invoices"
    )
    total: models.DecimalField[decimal.Decimal | None, decimal.Decimal | None] = (
        models.DecimalField(max_digits=30, decimal_places=4, null=True)
    )
    notes: models.TextField[str | None, str | None] = models.TextField(null=True)

    class Meta:
        app_label = "pgseal_orm"
        managed = False
        db_table = "invoices"


class DjangoRunner:
    """Runs a function with Django in a worker thread, connected through pgseal
    with a session tenant (the ORM's UPDATE and DELETE name only the key)."""

    def __init__(self, port: int, server_side_binding: bool) -> None:
        self.server_side_binding = server_side_binding
        self.database: dict[str, object] = {
            "PORT": str(port),
            "OPTIONS": {
                "server_side_binding": server_side_binding,
                "options": f"-c pgseal.tenant={TENANT}",
            },
        }

    async def __call__(self, body: Callable[[], T]) -> T:
        def in_thread() -> T:
            connections["default"].settings_dict.update(self.database)
            try:
                return body()
            finally:
                connections.close_all()

        return await asyncio.to_thread(in_thread)


@pytest.fixture(params=[False, True], ids=["client-binding", "server-binding"])
def orm(request: pytest.FixtureRequest, stack: Stack, raw: asyncpg.Connection) -> DjangoRunner:
    return DjangoRunner(stack.proxy.port, server_side_binding=request.param)


def _raw_rows(stack: Stack, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(stack.direct_dsn) as direct:
        return direct.execute(sql, params).fetchall()


async def test_create_filter_and_relationship(stack: Stack, orm: DjangoRunner) -> None:
    def body() -> tuple[int, list[str | None]]:
        ann = DjCustomer.objects.create(
            business_id=TENANT,
            name="dj-ann",
            email="Ann.Django@example.org",
            tax_id="DJ-TAX-1",
            phone="555-DJ-1",
            credit=decimal.Decimal("7.25"),
        )
        DjInvoice.objects.create(business_id=TENANT, customer=ann, total=1, notes="dj note a")
        DjInvoice.objects.create(business_id=TENANT, customer=ann, total=2, notes="dj note b")
        found = DjCustomer.objects.get(email=" ann.django@EXAMPLE.org")  # trim, casefold
        assert (found.id, found.phone, found.tax_id, found.credit) == (
            ann.id, "555-DJ-1", "DJ-TAX-1", decimal.Decimal("7.25"),
        )  # fmt: skip
        assert list(
            DjCustomer.objects.filter(tax_id__in=["DJ-TAX-1", "DJ-NONE"]).values_list(
                "name", flat=True
            )
        ) == ["dj-ann"]
        assert DjCustomer.objects.filter(email="nobody@example.org").count() == 0
        assert list(
            DjCustomer.objects.filter(
                email__in=["ANN.DJANGO@example.org", "nobody@example.org"]
            ).values_list("phone", flat=True)
        ) == ["555-DJ-1"]
        notes = [i.notes for i in found.invoices.order_by("id")]
        joined = list(
            DjInvoice.objects.filter(customer__email="ann.django@example.org", total=2).values_list(
                "notes", "customer__phone"
            )
        )
        assert joined == [("dj note b", "555-DJ-1")]
        return ann.id, notes

    ann_id, notes = await orm(body)
    assert notes == ["dj note a", "dj note b"]
    ((email, bidx, tax_id, phone, credit),) = _raw_rows(
        stack,
        "SELECT email, email_bidx, tax_id, phone, credit FROM customers WHERE id = %s",
        ann_id,
    )
    assert_envelope(email, "Ann.Django", "ann.django")
    assert bidx is not None
    assert_envelope(tax_id, "DJ-TAX-1")
    assert_envelope(phone, "555-DJ-1")
    assert_envelope(credit, "7.25")
    for (n,) in _raw_rows(stack, "SELECT notes FROM invoices WHERE customer_id = %s", ann_id):
        assert_envelope(n, "dj note")


async def test_update_save_and_delete(stack: Stack, orm: DjangoRunner) -> None:
    def body() -> int:
        bob = DjCustomer.objects.create(business_id=TENANT, name="dj-bob", phone="555-DJ-OLD")
        # QuerySet.update(): UPDATE ... WHERE email_bidx = ... (the tenant from the session)
        DjCustomer.objects.filter(id=bob.id).update(email="bob@dj", phone="555-DJ-UPD")
        bob.refresh_from_db()
        assert (bob.email, bob.phone) == ("bob@dj", "555-DJ-UPD")
        bob.phone = "555-DJ-SAVED"  # save(): UPDATE of every column WHERE id = ...
        bob.save()
        again = DjCustomer.objects.get(email="BOB@dj")
        assert again.phone == "555-DJ-SAVED"
        with transaction.atomic():  # SAVEPOINTs: a nested atomic block rolled back
            DjCustomer.objects.filter(id=bob.id).update(phone="555-DJ-OUTER")
            try:
                with transaction.atomic():
                    DjCustomer.objects.filter(id=bob.id).update(phone="555-DJ-INNER")
                    raise LookupError
            except LookupError:
                pass
        assert DjCustomer.objects.get(id=bob.id).phone == "555-DJ-OUTER"
        return bob.id

    bob_id = await orm(body)
    ((phone, email),) = _raw_rows(stack, "SELECT phone, email FROM customers WHERE id = %s", bob_id)
    assert_envelope(phone, "555-DJ")
    assert_envelope(email, "bob@dj")

    def delete() -> int:
        deleted, _ = DjCustomer.objects.filter(email="bob@dj").delete()
        return deleted

    assert await orm(delete) == 1
    assert _raw_rows(stack, "SELECT id FROM customers WHERE id = %s", bob_id) == []


async def test_bulk_create(request: pytest.FixtureRequest, stack: Stack, orm: DjangoRunner) -> None:
    """Django bulk-creates with INSERT ... SELECT * FROM UNNEST(arrays). With
    client-side binding the arrays are literals and pgseal seals each element;
    arrays sent as parameters cannot be split before Bind, so pgseal refuses that
    form (0A000) and ``batch_size=1`` (one INSERT ... VALUES per row) works."""
    server_binding = orm.server_side_binding
    m = marker()

    def customers(batch: int | None) -> list[int]:
        made = DjCustomer.objects.bulk_create(
            (
                DjCustomer(
                    business_id=TENANT,
                    name=f"dj-bulk-{m}-{i:03}",
                    email=f"bulk{i}@dj",
                    phone=f"555-DJB-{i:03}",
                    credit=decimal.Decimal(i),
                )
                for i in range(60)
            ),
            batch_size=batch,
        )
        assert DjCustomer.objects.get(email="bulk42@dj").phone == "555-DJB-042"
        return [c.id for c in made]

    def refused() -> str:
        with pytest.raises(DatabaseError) as info:
            customers(None)
        cause = info.value.__cause__
        assert isinstance(cause, psycopg.Error)
        assert cause.sqlstate == "0A000"
        return str(cause)

    if server_binding:
        message = await orm(refused)
        assert "INSERT ... SELECT on encrypted column public.customers" in message
        await assert_never_reached(stack, m)
    ids = await orm(lambda: customers(1 if server_binding else None))
    assert isinstance(ids, list)
    assert len(set(ids)) == 60
    rows = _raw_rows(stack, "SELECT phone, email FROM customers WHERE business_id = %s", TENANT)
    assert len(rows) == 60
    for phone, email in rows:
        assert_envelope(phone, "555-DJB")
        assert_envelope(email, "@dj")


@pytest.mark.parametrize("kind", ["order_by", "startswith"])
async def test_refused_queryset(stack: Stack, orm: DjangoRunner, kind: str) -> None:
    m = marker()

    def body() -> str:
        query = DjCustomer.objects.filter(name=m)
        query = (
            query.order_by("phone") if kind == "order_by" else query.filter(phone__startswith="5")
        )
        with pytest.raises(DatabaseError) as info:
            list(query)
        cause = info.value.__cause__
        assert isinstance(cause, psycopg.Error)
        assert cause.sqlstate == "0A000"
        assert DjCustomer.objects.filter(name="dj-none").count() == 0  # usable afterwards
        return str(cause)

    message = await orm(body)
    # Django writes startswith as "customers"."phone"::text LIKE '5%': the cast is refused
    operation = "ORDER BY" if kind == "order_by" else "cast"
    assert f"{operation} on encrypted column public.customers.phone" in message
    await assert_never_reached(stack, m)
