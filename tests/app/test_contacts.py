"""Customers and suppliers: add, read, list, update, search."""

from __future__ import annotations

import asyncpg
import pytest

from app.contacts import (
    Contact,
    ContactDetails,
    ContactKind,
    add_contact,
    canonical_tax_id,
    find_contacts,
    find_contacts_by_emails,
    get_contact,
    list_contacts,
    update_contact,
)
from app.errors import InvalidInput, NotFound
from tests.app.conftest import ACME, Team

CUSTOMER, SUPPLIER = ContactKind.CUSTOMER, ContactKind.SUPPLIER


async def test_add_and_get_customer_canonicalises_search_fields(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    assert customer.kind is CUSTOMER
    assert customer.business_id == team.business_id
    assert customer.company_name == ACME.company_name
    assert customer.contact_name == ACME.contact_name
    assert customer.address == ACME.address  # multi-line text round-trips
    assert customer.email == "wile.coyote@acme-widgets.example"
    assert customer.tax_id == "1234567890"
    assert customer.vat_number == "GB123456789"
    assert await get_contact(db, team.staff, CUSTOMER, customer.id) == customer


async def test_customers_and_suppliers_are_separate(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    supplier = await add_contact(db, team.staff, SUPPLIER, ACME)
    assert supplier.kind is SUPPLIER
    assert [c.id for c in await list_contacts(db, team.owner, SUPPLIER)] == [supplier.id]
    found = await find_contacts(db, team.owner, SUPPLIER, email=ACME.email)
    assert [c.id for c in found] == [supplier.id]
    with pytest.raises(NotFound, match="supplier"):
        await get_contact(db, team.owner, SUPPLIER, customer.id + supplier.id + 100)


async def test_list_is_sorted_by_company_name_in_python(
    db: asyncpg.Pool[asyncpg.Record], team: Team
) -> None:
    for name in ("zephyr Roofing", "Alder Blinds", "beech Catering"):
        await add_contact(db, team.owner, CUSTOMER, ContactDetails(company_name=name))
    names = [c.company_name for c in await list_contacts(db, team.staff, CUSTOMER)]
    assert names == ["Alder Blinds", "beech Catering", "zephyr Roofing"]


@pytest.mark.parametrize(
    ("field", "typed"),
    [
        ("email", "  WILE.coyote@ACME-widgets.EXAMPLE "),
        ("tax_id", " 12345 67890"),
        ("vat_number", "GB123456789"),
        ("vat_number", "gb 1234 56789"),
    ],
)
async def test_search_is_exact_and_case_insensitive(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact, field: str, typed: str
) -> None:
    await add_contact(
        db,
        team.owner,
        CUSTOMER,
        ContactDetails(
            "Road Runner Ltd", email="beep@acme-widgets.example", tax_id="999", vat_number="GB999"
        ),
    )
    found = await find_contacts(db, team.staff, CUSTOMER, **{field: typed})
    assert [c.id for c in found] == [customer.id]


async def test_search_matches_whole_values_only(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    assert await find_contacts(db, team.owner, CUSTOMER, email="coyote@acme-widgets.example") == []
    assert await find_contacts(db, team.owner, CUSTOMER, tax_id="12345") == []
    with pytest.raises(InvalidInput, match="exactly one"):
        await find_contacts(db, team.owner, CUSTOMER)
    with pytest.raises(InvalidInput, match="exactly one"):
        await find_contacts(db, team.owner, CUSTOMER, email="a@b.example", tax_id="1")


async def test_search_by_many_emails(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    other = await add_contact(
        db, team.owner, CUSTOMER, ContactDetails("Bugs Carrots", email="bugs@carrots.example")
    )
    found = await find_contacts_by_emails(
        db, team.owner, CUSTOMER, ["BUGS@carrots.example", ACME.email or "", "x@y.example"]
    )
    assert {c.id for c in found} == {customer.id, other.id}
    assert await find_contacts_by_emails(db, team.owner, CUSTOMER, []) == []


async def test_update_contact(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    updated = await update_contact(
        db, team.staff, CUSTOMER, customer.id, phone="07700 900999", email="New@Acme.example"
    )
    assert (updated.phone, updated.email) == ("07700 900999", "new@acme.example")
    assert updated.company_name == customer.company_name
    assert await find_contacts(db, team.owner, CUSTOMER, email=ACME.email) == []
    assert [
        c.id for c in await find_contacts(db, team.owner, CUSTOMER, email="new@acme.example")
    ] == [customer.id]
    cleared = await update_contact(db, team.owner, CUSTOMER, customer.id, address=None)
    assert cleared.address is None
    with pytest.raises(InvalidInput):
        await update_contact(db, team.owner, CUSTOMER, customer.id, email_bidx="x")
    with pytest.raises(InvalidInput):
        await update_contact(db, team.owner, CUSTOMER, customer.id)
    with pytest.raises(InvalidInput, match="company name"):
        await update_contact(db, team.owner, CUSTOMER, customer.id, company_name="  ")
    with pytest.raises(NotFound):
        await update_contact(db, team.owner, CUSTOMER, 10**9, phone="1")


async def test_other_businesses_contacts_are_invisible(
    db: asyncpg.Pool[asyncpg.Record], team: Team, other_team: Team, customer: Contact
) -> None:
    with pytest.raises(NotFound):
        await get_contact(db, other_team.owner, CUSTOMER, customer.id)
    assert await list_contacts(db, other_team.owner, CUSTOMER) == []
    assert await find_contacts(db, other_team.owner, CUSTOMER, email=ACME.email) == []
    with pytest.raises(NotFound):
        await update_contact(db, other_team.owner, CUSTOMER, customer.id, phone="0")
    assert (await get_contact(db, team.owner, CUSTOMER, customer.id)).phone == ACME.phone


def test_canonical_tax_id() -> None:
    assert canonical_tax_id(" gb 123\t456 ") == "GB123456"
    with pytest.raises(InvalidInput):
        canonical_tax_id("   ")
