"""Expenses, mileage logs and time entries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import asyncpg
import pytest

from app.bookkeeping import (
    expense_totals_by_category,
    list_expenses,
    list_mileage,
    list_time_entries,
    log_expense,
    log_mileage,
    log_time,
    mileage_summary,
    minutes_worked,
)
from app.contacts import Contact, ContactKind, add_contact
from app.errors import InvalidInput, NotFound
from tests.app.conftest import ACME, Team

D = Decimal
DAY = dt.date(2030, 5, 10)


async def test_expenses_and_category_totals(db: asyncpg.Pool[asyncpg.Record], team: Team) -> None:
    supplier = await add_contact(db, team.owner, ContactKind.SUPPLIER, ACME)
    first = await log_expense(
        db,
        team.staff,
        merchant="Screwfix Bristol",
        amount=D("42.10"),
        category=" Materials ",
        spent_on=DAY,
        description="Junction boxes for the Acme job",
        supplier_id=supplier.id,
    )
    assert (first.user_id, first.category, first.supplier_id) == (
        team.staff.user_id,
        "materials",
        supplier.id,
    )
    await log_expense(
        db, team.owner, merchant="Trainline", amount=D("88.00"), category="travel", spent_on=DAY
    )
    await log_expense(
        db,
        team.owner,
        merchant="Wickes",
        amount=D("7.90"),
        category="materials",
        spent_on=DAY + dt.timedelta(3),
    )
    listed = await list_expenses(db, team.accountant)
    assert [e.merchant for e in listed] == ["Screwfix Bristol", "Trainline", "Wickes"]
    assert listed[0].description == "Junction boxes for the Acme job"
    only_first_day = await list_expenses(db, team.staff, since=DAY, until=DAY)
    assert len(only_first_day) == 2
    assert await expense_totals_by_category(db, team.accountant) == {
        "materials": D("50.00"),
        "travel": D("88.00"),
    }
    with pytest.raises(InvalidInput):
        await log_expense(db, team.owner, merchant="X", amount=D(0), category="travel")
    with pytest.raises(InvalidInput):
        await log_expense(db, team.owner, merchant=" ", amount=D(1), category="travel")
    with pytest.raises(NotFound, match="supplier"):
        await log_expense(
            db, team.owner, merchant="X", amount=D(1), category="x", supplier_id=supplier.id + 50
        )


async def test_mileage_is_summed_in_python(db: asyncpg.Pool[asyncpg.Record], team: Team) -> None:
    journey = await log_mileage(
        db,
        team.staff,
        from_place="12 Orchard Close, Exeter",
        to_place="Acme Widgets, York",
        distance_miles=D("287.4"),
        travelled_on=DAY,
        purpose="Install at Acme",
    )
    assert (journey.from_place, journey.to_place, journey.distance_miles, journey.purpose) == (
        "12 Orchard Close, Exeter",
        "Acme Widgets, York",
        D("287.4"),
        "Install at Acme",
    )
    await log_mileage(
        db,
        team.owner,
        from_place="Home",
        to_place="Bank",
        distance_miles=D("3.25"),
        travelled_on=DAY + dt.timedelta(1),
    )
    assert [m.to_place for m in await list_mileage(db, team.owner)] == [
        "Acme Widgets, York",
        "Bank",
    ]
    summary = await mileage_summary(db, team.accountant)
    assert (summary.journeys, summary.total_miles) == (2, D("290.65"))
    assert (await mileage_summary(db, team.owner, since=DAY + dt.timedelta(1))).journeys == 1
    with pytest.raises(InvalidInput):
        await log_mileage(db, team.owner, from_place="a", to_place="b", distance_miles=D(0))


async def test_time_entries_and_minutes(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    entry = await log_time(
        db,
        team.staff,
        description="Second-fix sockets at Acme",
        duration_minutes=150,
        worked_on=DAY,
        customer_id=customer.id,
    )
    assert (entry.user_id, entry.customer_id, entry.billable) == (
        team.staff.user_id,
        customer.id,
        True,
    )
    await log_time(db, team.staff, description="Van tidy", duration_minutes=30, billable=False)
    await log_time(db, team.owner, description="Quote for Acme", duration_minutes=45, worked_on=DAY)
    entries = await list_time_entries(db, team.accountant, since=DAY, until=DAY)
    assert [e.description for e in entries] == ["Second-fix sockets at Acme", "Quote for Acme"]
    assert await minutes_worked(db, team.owner) == {team.owner.user_id: 45, team.staff.user_id: 180}
    assert await minutes_worked(db, team.owner, billable_only=True) == {
        team.owner.user_id: 45,
        team.staff.user_id: 150,
    }
    with pytest.raises(InvalidInput):
        await log_time(db, team.staff, description="x", duration_minutes=0)
    with pytest.raises(NotFound, match="customer"):
        await log_time(db, team.staff, description="x", duration_minutes=5, customer_id=10**6)


async def test_bookkeeping_is_scoped_by_business(
    db: asyncpg.Pool[asyncpg.Record], team: Team, other_team: Team, customer: Contact
) -> None:
    await log_expense(db, team.owner, merchant="Costa", amount=D("3.20"), category="subsistence")
    await log_mileage(db, team.owner, from_place="a", to_place="b", distance_miles=D(1))
    await log_time(db, team.owner, description="x", duration_minutes=10)
    assert await list_expenses(db, other_team.owner) == []
    assert await list_mileage(db, other_team.owner) == []
    assert await list_time_entries(db, other_team.owner) == []
    assert await expense_totals_by_category(db, other_team.owner) == {}
    assert await minutes_worked(db, other_team.owner) == {}
    with pytest.raises(NotFound):  # cannot bill time to another business's customer
        await log_time(
            db, other_team.owner, description="x", duration_minutes=5, customer_id=customer.id
        )
