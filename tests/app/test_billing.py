"""Quotes, invoices, line items, totals and payments."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import asyncpg
import pytest

from app.billing import (
    InvoiceStatus,
    LineInput,
    QuoteStatus,
    convert_quote_to_invoice,
    create_quote,
    get_invoice,
    get_quote,
    issue_invoice,
    list_invoices,
    list_payments,
    record_payment,
    set_quote_status,
)
from app.contacts import Contact, ContactDetails, ContactKind, add_contact
from app.errors import InvalidInput, NotFound, Overpayment
from tests.app.conftest import Team

D = Decimal
DAY = dt.date(2030, 3, 1)
LINES = [
    LineInput("Rewire kitchen ring main", D(1), D("480.00"), D(20)),
    LineInput("Labour, electrician hours", D("6.5"), D("42.50"), D(20)),
    LineInput("Part P certificate (zero-rated)", D(1), D("75.00"), D(0)),
    LineInput("Cable clips, half a pack", D("1.5"), D("0.33"), D("17.5")),
]
# Each line rounded half away from zero, then summed, in SQL and in Python alike:
# net 480 + 276.25 + 75 + round(0.495)=0.50; tax 96 + 55.25 + 0 + round(0.086625)=0.09
NET, TAX = D("831.75"), D("151.34")


async def test_issue_invoice_in_one_transaction(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    invoice = await issue_invoice(
        db, team.staff, customer.id, LINES, issue_date=DAY, due_in_days=14, notes="Gate code 1234"
    )
    assert invoice.number == "INV-00001"
    assert (invoice.issue_date, invoice.due_date) == (DAY, DAY + dt.timedelta(14))
    assert invoice.status is InvoiceStatus.ISSUED
    assert invoice.currency == "GBP"
    assert invoice.notes == "Gate code 1234"
    assert [li.description for li in invoice.lines] == [li.description for li in LINES]
    assert [li.position for li in invoice.lines] == [1, 2, 3, 4]
    assert (invoice.totals.net, invoice.totals.tax) == (NET, TAX)
    assert invoice.totals.gross == NET + TAX == sum(li.net + li.tax for li in invoice.lines)
    assert invoice.totals.balance == NET + TAX
    assert await get_invoice(db, team.accountant, invoice.id) == invoice
    second = await issue_invoice(db, team.owner, customer.id, LINES[:1], issue_date=DAY)
    assert second.number == "INV-00002"


async def test_failed_invoice_leaves_nothing_behind(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    with pytest.raises(InvalidInput, match="at least one line"):
        await issue_invoice(db, team.owner, customer.id, [], issue_date=DAY)
    with pytest.raises(NotFound, match="customer"):
        await issue_invoice(db, team.owner, customer.id + 1000, LINES, issue_date=DAY)
    with pytest.raises(InvalidInput, match="fall due"):
        await issue_invoice(db, team.owner, customer.id, LINES, issue_date=DAY, due_in_days=-1)
    assert await list_invoices(db, team.owner) == []
    count = "SELECT count(*) FROM line_items WHERE business_id = $1"
    assert await db.fetchval(count, team.business_id) == 0
    # The rolled-back numbers were not consumed.
    invoice = await issue_invoice(db, team.owner, customer.id, LINES, issue_date=DAY)
    assert invoice.number == "INV-00001"


@pytest.mark.parametrize(
    "fields",
    [
        (" ", D(1), D(1), D(0)),
        ("x", D(0), D(1), D(0)),
        ("x", D(1), D(-1), D(0)),
        ("x", D(1), D(1), D(-5)),
        ("x", D(1), D("0.333"), D(0)),  # numeric(12,2) would round it silently
        ("x", D("0.0001"), D(1), D(0)),
        ("x", D(1), D(1), D("17.555")),
    ],
)
def test_line_input_validation(fields: tuple[str, Decimal, Decimal, Decimal]) -> None:
    with pytest.raises(InvalidInput):
        LineInput(*fields)


async def test_list_invoices_with_customer_names_and_totals(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    other = await add_contact(
        db, team.owner, ContactKind.CUSTOMER, ContactDetails("Bramble Veterinary Practice")
    )
    first = await issue_invoice(db, team.owner, customer.id, LINES, issue_date=DAY)
    second = await issue_invoice(
        db, team.owner, other.id, LINES[:1], issue_date=DAY + dt.timedelta(1)
    )
    await record_payment(db, team.owner, first.id, D("100.00"), method="card", paid_on=DAY)
    rows = await list_invoices(db, team.staff)
    assert [r.number for r in rows] == [second.number, first.number]  # newest first
    assert [r.customer_name for r in rows] == ["Bramble Veterinary Practice", customer.company_name]
    assert rows[1].totals == type(rows[1].totals)(NET, TAX, D("100.00"))
    assert rows[1].status is InvoiceStatus.PARTIALLY_PAID
    assert rows[0].totals.gross == D("576.00")
    assert rows[0].totals.paid == 0
    assert rows[0].overdue(DAY + dt.timedelta(days=60))
    assert not rows[0].overdue(DAY)


async def test_payments_move_status_and_refuse_overpayment(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    invoice = await issue_invoice(db, team.owner, customer.id, LINES, issue_date=DAY)
    gross = invoice.totals.gross
    first = await record_payment(
        db,
        team.staff,
        invoice.id,
        D("500.00"),
        method="bank transfer",
        paid_on=DAY,
        reference="FPS 88812",
        notes="first half",
    )
    assert (first.amount, first.method, first.reference, first.notes) == (
        D("500.00"),
        "bank transfer",
        "FPS 88812",
        "first half",
    )
    assert (await get_invoice(db, team.owner, invoice.id)).status is InvoiceStatus.PARTIALLY_PAID
    with pytest.raises(Overpayment):
        await record_payment(db, team.owner, invoice.id, gross, method="card")
    for bad in (D(0), D(-1), D("1.001")):
        with pytest.raises(InvalidInput):
            await record_payment(db, team.owner, invoice.id, bad, method="card")
    await record_payment(
        db, team.owner, invoice.id, gross - D("500.00"), method="card", paid_on=DAY
    )
    paid = await get_invoice(db, team.owner, invoice.id)
    assert paid.status is InvoiceStatus.PAID
    assert paid.totals.balance == 0
    payments = await list_payments(db, team.accountant, invoice.id)
    assert [p.amount for p in payments] == [D("500.00"), gross - D("500.00")]
    with pytest.raises(NotFound):
        await record_payment(db, team.owner, invoice.id + 99, D(1), method="card")


async def test_concurrent_payments_cannot_both_take_the_balance(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    invoice = await issue_invoice(db, team.owner, customer.id, LINES[:1], issue_date=DAY)
    gross = invoice.totals.gross
    results = await asyncio.gather(
        record_payment(db, team.owner, invoice.id, gross, method="card"),
        record_payment(db, team.owner, invoice.id, gross, method="cash"),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Overpayment) for r in results) == 1
    assert len(await list_payments(db, team.owner, invoice.id)) == 1


async def test_quote_lifecycle_and_conversion(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    quote = await create_quote(
        db, team.staff, customer.id, LINES, issue_date=DAY, valid_for_days=10, notes="Firm price"
    )
    assert (quote.number, quote.status, quote.valid_until) == (
        "QUO-00001",
        QuoteStatus.SENT,
        DAY + dt.timedelta(10),
    )
    assert (quote.totals.net, quote.totals.tax) == (NET, TAX)
    assert await get_quote(db, team.accountant, quote.id) == quote
    accepted = await set_quote_status(db, team.owner, quote.id, "accepted")
    assert accepted.status is QuoteStatus.ACCEPTED
    invoice = await convert_quote_to_invoice(db, team.owner, quote.id, issue_date=DAY)
    assert invoice.quote_id == quote.id
    assert invoice.notes == "Firm price"
    assert [(li.description, li.quantity, li.unit_price, li.tax_rate) for li in invoice.lines] == [
        (li.description, li.quantity, li.unit_price, li.tax_rate) for li in LINES
    ]
    assert invoice.totals.gross == quote.totals.gross
    assert (await get_quote(db, team.owner, quote.id)).status is QuoteStatus.INVOICED
    # The quote keeps its own lines.
    assert len((await get_quote(db, team.owner, quote.id)).lines) == len(LINES)
    with pytest.raises(InvalidInput, match="invoiced"):
        await convert_quote_to_invoice(db, team.owner, quote.id)
    with pytest.raises(InvalidInput, match="already invoiced"):
        await set_quote_status(db, team.owner, quote.id, "declined")


async def test_declined_quote_cannot_be_invoiced(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact
) -> None:
    quote = await create_quote(db, team.owner, customer.id, LINES[:2], issue_date=DAY)
    await set_quote_status(db, team.owner, quote.id, "declined")
    with pytest.raises(InvalidInput, match="declined"):
        await convert_quote_to_invoice(db, team.owner, quote.id)
    with pytest.raises(ValueError, match="invoiced"):
        await set_quote_status(db, team.owner, quote.id, "invoiced")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await get_quote(db, team.owner, quote.id + 5)


async def test_billing_is_scoped_by_business(
    db: asyncpg.Pool[asyncpg.Record], team: Team, other_team: Team, customer: Contact
) -> None:
    invoice = await issue_invoice(db, team.owner, customer.id, LINES, issue_date=DAY)
    with pytest.raises(NotFound):
        await get_invoice(db, other_team.owner, invoice.id)
    with pytest.raises(NotFound):  # cannot invoice another business's customer
        await issue_invoice(db, other_team.owner, customer.id, LINES, issue_date=DAY)
    with pytest.raises(NotFound):
        await record_payment(db, other_team.owner, invoice.id, D(1), method="card")
    assert await list_invoices(db, other_team.owner) == []
    assert await list_payments(db, other_team.owner, invoice.id) == []
    # Numbering is per business.
    theirs = await add_contact(db, other_team.owner, ContactKind.CUSTOMER, ContactDetails("Heron"))
    other_invoice = await issue_invoice(db, other_team.owner, theirs.id, LINES, issue_date=DAY)
    assert other_invoice.number == invoice.number == "INV-00001"
