"""A business's overview: what ``python -m app report`` prints.

Money totals come from SQL over plaintext amounts (invoice totals, payments,
expenses per category, minutes worked); mileage is added up in Python because
distances are encrypted. Every figure is read through the same service
functions the rest of the app uses, so the report passes the same access checks
(``Permission.READ_REPORTS``: owner and accountant).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from app.access import Actor, Permission, require
from app.accounts import Business, User, get_business, list_users
from app.billing import InvoiceStatus, InvoiceSummary, list_invoices
from app.bookkeeping import (
    MileageSummary,
    expense_totals_by_category,
    mileage_summary,
    minutes_worked,
)
from app.contacts import Contact, ContactKind, list_contacts
from app.db import Database, connection

__all__ = ["BusinessReport", "business_report"]


@dataclass(frozen=True, slots=True)
class BusinessReport:
    business: Business
    users: list[User]
    customers: list[Contact]
    suppliers: list[Contact]
    invoices: list[InvoiceSummary]
    expenses_by_category: dict[str, Decimal]
    mileage: MileageSummary
    minutes_by_user: dict[int, int]

    @property
    def invoiced(self) -> Decimal:
        live = (i for i in self.invoices if i.status is not InvoiceStatus.VOID)
        return sum((i.totals.gross for i in live), Decimal("0.00"))

    @property
    def received(self) -> Decimal:
        return sum((i.totals.paid for i in self.invoices), Decimal("0.00"))

    @property
    def outstanding(self) -> Decimal:
        return self.invoiced - self.received

    def overdue(self, today: dt.date) -> list[InvoiceSummary]:
        return [i for i in self.invoices if i.overdue(today)]

    @property
    def expenses_total(self) -> Decimal:
        return sum(self.expenses_by_category.values(), Decimal("0.00"))


async def business_report(db: Database, actor: Actor) -> BusinessReport:
    """Everything the report shows, for the actor's business."""
    require(actor, Permission.READ_REPORTS)
    async with connection(db) as conn:
        return BusinessReport(
            business=await get_business(conn, actor),
            users=await list_users(conn, actor),
            customers=await list_contacts(conn, actor, ContactKind.CUSTOMER),
            suppliers=await list_contacts(conn, actor, ContactKind.SUPPLIER),
            invoices=await list_invoices(conn, actor),
            expenses_by_category=await expense_totals_by_category(conn, actor),
            mileage=await mileage_summary(conn, actor),
            minutes_by_user=await minutes_worked(conn, actor),
        )
