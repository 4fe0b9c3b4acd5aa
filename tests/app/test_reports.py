"""The business report."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import asyncpg

from app.accounts import owner_actor
from app.billing import LineInput, issue_invoice, record_payment
from app.bookkeeping import log_expense, log_mileage, log_time
from app.contacts import Contact, ContactDetails, ContactKind, add_contact
from app.reports import business_report
from tests.app.conftest import Team

D = Decimal


async def test_business_report(
    db: asyncpg.Pool[asyncpg.Record], team: Team, other_team: Team, customer: Contact
) -> None:
    today = dt.date.today()
    old = today - dt.timedelta(days=90)
    lines = [LineInput("Fuse board", D(1), D("100.00"), D(20))]
    overdue = await issue_invoice(db, team.owner, customer.id, lines, issue_date=old)
    paid = await issue_invoice(db, team.staff, customer.id, lines, issue_date=today)
    await record_payment(db, team.owner, paid.id, D("120.00"), method="card")
    await record_payment(db, team.owner, overdue.id, D("20.00"), method="cash")
    await add_contact(db, team.owner, ContactKind.SUPPLIER, ContactDetails("Wholesale Ltd"))
    await log_expense(db, team.staff, merchant="Shell", amount=D("60.00"), category="travel")
    await log_mileage(db, team.staff, from_place="A", to_place="B", distance_miles=D("12.5"))
    await log_mileage(db, team.owner, from_place="B", to_place="A", distance_miles=D("12.5"))
    await log_time(db, team.staff, description="Fit board", duration_minutes=95)
    # Noise in another business must not show up.
    await log_expense(db, other_team.owner, merchant="X", amount=D("999.00"), category="travel")

    report = await business_report(db, await owner_actor(db, team.business_id))
    assert report.business.name == "Heron Electrical Ltd"
    assert len(report.users) == 3
    assert [c.id for c in report.customers] == [customer.id]
    assert [s.company_name for s in report.suppliers] == ["Wholesale Ltd"]
    assert [i.number for i in report.invoices] == [paid.number, overdue.number]
    assert (report.invoiced, report.received, report.outstanding) == (
        D("240.00"),
        D("140.00"),
        D("100.00"),
    )
    assert [i.number for i in report.overdue(today)] == [overdue.number]
    assert report.expenses_by_category == {"travel": D("60.00")}
    assert report.expenses_total == D("60.00")
    assert (report.mileage.journeys, report.mileage.total_miles) == (2, D("25.0"))
    assert report.minutes_by_user == {team.staff.user_id: 95}
    accountant_view = await business_report(db, team.accountant)
    assert accountant_view.invoiced == report.invoiced
