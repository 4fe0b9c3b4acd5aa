"""Quotes, invoices, their line items, and payments.

Money stays in plaintext columns wherever SQL must add it up (line quantities,
unit prices and tax rates; payment amounts), so totals and balances are computed
by Postgres with ``SUM``; the words around the money (line descriptions, notes,
payment method and reference) are encrypted. A line's net amount and tax are
each rounded to pennies (half away from zero, as Postgres's ``round``) before
they are added, in SQL and in ``LineItem`` alike.

Issuing an invoice is one transaction: take the next number from the business
row (which also serialises numbering per business), insert the invoice, insert
its lines with one ``executemany``. Turning a quote into an invoice reads the
quote's lines into Python and writes them again: ``INSERT ... SELECT`` cannot
copy encrypted values, because pgseal must see every plaintext it encrypts.
Recording a payment locks the invoice row, checks the balance, and moves the
status to ``partially_paid`` or ``paid``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Literal

import asyncpg

from app.access import Actor, Permission, require
from app.db import Connection, Database, connection, transaction
from app.errors import InvalidInput, NotFound, Overpayment

__all__ = [
    "Invoice",
    "InvoiceStatus",
    "InvoiceSummary",
    "LineInput",
    "LineItem",
    "Payment",
    "Quote",
    "QuoteStatus",
    "Totals",
    "convert_quote_to_invoice",
    "create_quote",
    "get_invoice",
    "get_quote",
    "issue_invoice",
    "list_invoices",
    "list_payments",
    "record_payment",
    "set_quote_status",
]

_PENNY = Decimal("0.01")


def _pennies(value: Decimal) -> Decimal:
    return value.quantize(_PENNY, rounding=ROUND_HALF_UP)


class InvoiceStatus(StrEnum):
    ISSUED = "issued"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    VOID = "void"


class QuoteStatus(StrEnum):
    SENT = "sent"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    INVOICED = "invoiced"


@dataclass(frozen=True, slots=True)
class LineInput:
    """One line as entered: ``tax_rate`` is a percentage (20 means 20 %)."""

    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if not self.description.strip():
            raise InvalidInput("a line needs a description")
        if self.quantity <= 0:
            raise InvalidInput(f"quantity must be positive, not {self.quantity}")
        if self.unit_price < 0 or self.tax_rate < 0:
            raise InvalidInput("unit price and tax rate cannot be negative")
        # The columns' scales (numeric(12,3), (12,2), (5,2)) would round silently.
        for name, value, places in (
            ("quantity", self.quantity, 3),
            ("unit price", self.unit_price, 2),
            ("tax rate", self.tax_rate, 2),
        ):
            if value != round(value, places):
                raise InvalidInput(f"{name} {value} has more than {places} decimal places")


@dataclass(frozen=True, slots=True)
class LineItem:
    id: int
    position: int
    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal

    @property
    def net(self) -> Decimal:
        return _pennies(self.quantity * self.unit_price)

    @property
    def tax(self) -> Decimal:
        return _pennies(self.quantity * self.unit_price * self.tax_rate / 100)


@dataclass(frozen=True, slots=True)
class Totals:
    net: Decimal
    tax: Decimal
    paid: Decimal = Decimal("0.00")

    @property
    def gross(self) -> Decimal:
        return self.net + self.tax

    @property
    def balance(self) -> Decimal:
        return self.gross - self.paid


@dataclass(frozen=True, slots=True)
class Invoice:
    id: int
    business_id: int
    customer_id: int
    quote_id: int | None
    number: str
    issue_date: dt.date
    due_date: dt.date
    status: InvoiceStatus
    currency: str
    notes: str | None
    lines: tuple[LineItem, ...]
    totals: Totals


@dataclass(frozen=True, slots=True)
class InvoiceSummary:
    """One row of the invoice list: the invoice, its customer's name, its totals."""

    id: int
    number: str
    customer_id: int
    customer_name: str
    issue_date: dt.date
    due_date: dt.date
    status: InvoiceStatus
    currency: str
    totals: Totals

    def overdue(self, today: dt.date) -> bool:
        return self.status is not InvoiceStatus.PAID and self.due_date < today


@dataclass(frozen=True, slots=True)
class Quote:
    id: int
    business_id: int
    customer_id: int
    number: str
    issue_date: dt.date
    valid_until: dt.date
    status: QuoteStatus
    currency: str
    notes: str | None
    lines: tuple[LineItem, ...]
    totals: Totals


@dataclass(frozen=True, slots=True)
class Payment:
    id: int
    invoice_id: int
    paid_on: dt.date
    amount: Decimal
    method: str
    reference: str | None
    notes: str | None


_Parent = Literal["invoice_id", "quote_id"]

# Rounded per line, then summed: the same arithmetic as LineItem.net / .tax.
_LINE_SUMS = (
    "SUM(round(quantity * unit_price, 2)) AS net,"
    " SUM(round(quantity * unit_price * tax_rate / 100, 2)) AS tax"
)


async def _require_customer(conn: Connection, actor: Actor, customer_id: int) -> None:
    found = await conn.fetchval(
        "SELECT id FROM customers WHERE business_id = $1 AND id = $2",
        actor.business_id,
        customer_id,
    )
    if found is None:
        raise NotFound("customer", customer_id)


async def _next_number(conn: Connection, actor: Actor, kind: Literal["invoice", "quote"]) -> str:
    # The UPDATE locks the business row until commit: numbers never repeat or skip.
    row = await conn.fetchrow(
        f"UPDATE businesses SET next_{kind}_number = next_{kind}_number + 1 WHERE id = $1"
        f" RETURNING {kind}_prefix AS prefix, next_{kind}_number - 1 AS n",
        actor.business_id,
    )
    if row is None:
        raise NotFound("business", actor.business_id)
    return f"{row['prefix']}-{row['n']:05d}"


async def _currency(conn: Connection, actor: Actor) -> str:
    currency: str = await conn.fetchval(
        "SELECT currency FROM businesses WHERE id = $1", actor.business_id
    )
    return currency


async def _insert_lines(
    conn: Connection, actor: Actor, parent: _Parent, parent_id: int, lines: Sequence[LineInput]
) -> None:
    if not lines:
        raise InvalidInput("an invoice or quote needs at least one line")
    await conn.executemany(
        f"INSERT INTO line_items (business_id, {parent}, position, description, quantity,"
        " unit_price, tax_rate) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (
                actor.business_id,
                parent_id,
                position,
                line.description,
                line.quantity,
                line.unit_price,
                line.tax_rate,
            )
            for position, line in enumerate(lines, start=1)
        ],
    )


async def _load_lines(
    conn: Connection, actor: Actor, parent: _Parent, parent_id: int
) -> tuple[LineItem, ...]:
    rows = await conn.fetch(
        "SELECT id, position, description, quantity, unit_price, tax_rate FROM line_items"
        f" WHERE business_id = $1 AND {parent} = $2 ORDER BY position",
        actor.business_id,
        parent_id,
    )
    return tuple(
        LineItem(
            r["id"], r["position"], r["description"], r["quantity"], r["unit_price"], r["tax_rate"]
        )
        for r in rows
    )


async def _totals(conn: Connection, actor: Actor, parent: _Parent, parent_id: int) -> Totals:
    row = await conn.fetchrow(
        f"SELECT {_LINE_SUMS} FROM line_items WHERE business_id = $1 AND {parent} = $2",
        actor.business_id,
        parent_id,
    )
    assert row is not None
    paid = Decimal("0.00")
    if parent == "invoice_id":
        paid = await conn.fetchval(
            "SELECT COALESCE(SUM(amount), 0.00) FROM payments"
            " WHERE business_id = $1 AND invoice_id = $2",
            actor.business_id,
            parent_id,
        )
    return Totals(row["net"] or Decimal("0.00"), row["tax"] or Decimal("0.00"), paid)


async def _load_invoice(conn: Connection, actor: Actor, invoice_id: int) -> Invoice:
    row = await conn.fetchrow(
        "SELECT id, business_id, customer_id, quote_id, number, issue_date, due_date, status,"
        " currency, notes FROM invoices WHERE business_id = $1 AND id = $2",
        actor.business_id,
        invoice_id,
    )
    if row is None:
        raise NotFound("invoice", invoice_id)
    return Invoice(
        id=row["id"],
        business_id=row["business_id"],
        customer_id=row["customer_id"],
        quote_id=row["quote_id"],
        number=row["number"],
        issue_date=row["issue_date"],
        due_date=row["due_date"],
        status=InvoiceStatus(row["status"]),
        currency=row["currency"],
        notes=row["notes"],
        lines=await _load_lines(conn, actor, "invoice_id", invoice_id),
        totals=await _totals(conn, actor, "invoice_id", invoice_id),
    )


async def _issue(
    conn: Connection,
    actor: Actor,
    customer_id: int,
    lines: Sequence[LineInput],
    issue_date: dt.date,
    due_date: dt.date,
    notes: str | None,
    quote_id: int | None,
) -> int:
    if due_date < issue_date:
        raise InvalidInput("an invoice cannot fall due before it is issued")
    await _require_customer(conn, actor, customer_id)
    number = await _next_number(conn, actor, "invoice")
    invoice_id: int = await conn.fetchval(
        "INSERT INTO invoices (business_id, customer_id, quote_id, number, issue_date,"
        " due_date, status, currency, notes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " RETURNING id",
        actor.business_id,
        customer_id,
        quote_id,
        number,
        issue_date,
        due_date,
        InvoiceStatus.ISSUED.value,
        await _currency(conn, actor),
        notes,
    )
    await _insert_lines(conn, actor, "invoice_id", invoice_id, lines)
    return invoice_id


async def issue_invoice(
    db: Database,
    actor: Actor,
    customer_id: int,
    lines: Sequence[LineInput],
    *,
    issue_date: dt.date | None = None,
    due_in_days: int = 30,
    notes: str | None = None,
) -> Invoice:
    """Issue an invoice with its lines, numbered ``INV-00001`` onwards, in one transaction."""
    require(actor, Permission.MANAGE_BILLING)
    issued = issue_date or dt.date.today()
    async with transaction(db) as conn:
        invoice_id = await _issue(
            conn, actor, customer_id, lines, issued, issued + dt.timedelta(due_in_days), notes, None
        )
        return await _load_invoice(conn, actor, invoice_id)


async def get_invoice(db: Database, actor: Actor, invoice_id: int) -> Invoice:
    require(actor, Permission.READ_BILLING)
    async with connection(db) as conn:
        return await _load_invoice(conn, actor, invoice_id)


async def list_invoices(db: Database, actor: Actor) -> list[InvoiceSummary]:
    """Every invoice of the business with its customer's name and totals, newest first."""
    require(actor, Permission.READ_BILLING)
    rows = await db.fetch(
        "SELECT i.id, i.number, i.customer_id, c.company_name AS customer_name,"
        " i.issue_date, i.due_date, i.status, i.currency,"
        " COALESCE(t.net, 0.00) AS net, COALESCE(t.tax, 0.00) AS tax,"
        " COALESCE(p.paid, 0.00) AS paid"
        " FROM invoices AS i"
        " JOIN customers AS c ON c.business_id = i.business_id AND c.id = i.customer_id"
        f" LEFT JOIN (SELECT invoice_id, {_LINE_SUMS} FROM line_items"
        "   WHERE business_id = $1 AND invoice_id IS NOT NULL GROUP BY invoice_id) AS t"
        "   ON t.invoice_id = i.id"
        " LEFT JOIN (SELECT invoice_id, SUM(amount) AS paid FROM payments"
        "   WHERE business_id = $1 GROUP BY invoice_id) AS p"
        "   ON p.invoice_id = i.id"
        " WHERE i.business_id = $1"
        " ORDER BY i.issue_date DESC, i.id DESC",
        actor.business_id,
    )
    return [
        InvoiceSummary(
            id=r["id"],
            number=r["number"],
            customer_id=r["customer_id"],
            customer_name=r["customer_name"],
            issue_date=r["issue_date"],
            due_date=r["due_date"],
            status=InvoiceStatus(r["status"]),
            currency=r["currency"],
            totals=Totals(r["net"], r["tax"], r["paid"]),
        )
        for r in rows
    ]


def _quote(row: asyncpg.Record, lines: tuple[LineItem, ...], totals: Totals) -> Quote:
    return Quote(
        id=row["id"],
        business_id=row["business_id"],
        customer_id=row["customer_id"],
        number=row["number"],
        issue_date=row["issue_date"],
        valid_until=row["valid_until"],
        status=QuoteStatus(row["status"]),
        currency=row["currency"],
        notes=row["notes"],
        lines=lines,
        totals=totals,
    )


async def _load_quote(
    conn: Connection, actor: Actor, quote_id: int, *, lock: bool = False
) -> Quote:
    row = await conn.fetchrow(
        "SELECT id, business_id, customer_id, number, issue_date, valid_until, status,"
        " currency, notes FROM quotes WHERE business_id = $1 AND id = $2"
        + (" FOR UPDATE" if lock else ""),
        actor.business_id,
        quote_id,
    )
    if row is None:
        raise NotFound("quote", quote_id)
    return _quote(
        row,
        await _load_lines(conn, actor, "quote_id", quote_id),
        await _totals(conn, actor, "quote_id", quote_id),
    )


async def create_quote(
    db: Database,
    actor: Actor,
    customer_id: int,
    lines: Sequence[LineInput],
    *,
    issue_date: dt.date | None = None,
    valid_for_days: int = 30,
    notes: str | None = None,
) -> Quote:
    """Send a quote (numbered ``QUO-00001`` onwards) with its lines, in one transaction."""
    require(actor, Permission.MANAGE_BILLING)
    issued = issue_date or dt.date.today()
    async with transaction(db) as conn:
        await _require_customer(conn, actor, customer_id)
        number = await _next_number(conn, actor, "quote")
        quote_id: int = await conn.fetchval(
            "INSERT INTO quotes (business_id, customer_id, number, issue_date, valid_until,"
            " status, currency, notes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            actor.business_id,
            customer_id,
            number,
            issued,
            issued + dt.timedelta(valid_for_days),
            QuoteStatus.SENT.value,
            await _currency(conn, actor),
            notes,
        )
        await _insert_lines(conn, actor, "quote_id", quote_id, lines)
        return await _load_quote(conn, actor, quote_id)


async def get_quote(db: Database, actor: Actor, quote_id: int) -> Quote:
    require(actor, Permission.READ_BILLING)
    async with connection(db) as conn:
        return await _load_quote(conn, actor, quote_id)


async def set_quote_status(
    db: Database, actor: Actor, quote_id: int, status: Literal["accepted", "declined"]
) -> Quote:
    """Record the customer's answer to a quote that is still open."""
    require(actor, Permission.MANAGE_BILLING)
    new = QuoteStatus(status)
    if new not in (QuoteStatus.ACCEPTED, QuoteStatus.DECLINED):
        raise InvalidInput(f"a customer cannot answer {status!r}")
    async with transaction(db) as conn:
        quote = await _load_quote(conn, actor, quote_id, lock=True)
        if quote.status is QuoteStatus.INVOICED:
            raise InvalidInput(f"quote {quote.number} is already invoiced")
        await conn.execute(
            "UPDATE quotes SET status = $3 WHERE business_id = $1 AND id = $2",
            actor.business_id,
            quote_id,
            new.value,
        )
        return await _load_quote(conn, actor, quote_id)


async def convert_quote_to_invoice(
    db: Database,
    actor: Actor,
    quote_id: int,
    *,
    issue_date: dt.date | None = None,
    due_in_days: int = 30,
) -> Invoice:
    """Invoice a quote: same customer, same lines, the quote's notes; marks it invoiced."""
    require(actor, Permission.MANAGE_BILLING)
    issued = issue_date or dt.date.today()
    async with transaction(db) as conn:
        quote = await _load_quote(conn, actor, quote_id, lock=True)
        if quote.status in (QuoteStatus.DECLINED, QuoteStatus.INVOICED):
            raise InvalidInput(f"quote {quote.number} is {quote.status.value}")
        # Round-trip through Python: pgseal must see each plaintext it encrypts.
        lines = [
            LineInput(li.description, li.quantity, li.unit_price, li.tax_rate) for li in quote.lines
        ]
        invoice_id = await _issue(
            conn,
            actor,
            quote.customer_id,
            lines,
            issued,
            issued + dt.timedelta(due_in_days),
            quote.notes,
            quote.id,
        )
        await conn.execute(
            "UPDATE quotes SET status = $3 WHERE business_id = $1 AND id = $2",
            actor.business_id,
            quote_id,
            QuoteStatus.INVOICED.value,
        )
        return await _load_invoice(conn, actor, invoice_id)


def _payment(row: asyncpg.Record) -> Payment:
    return Payment(
        id=row["id"],
        invoice_id=row["invoice_id"],
        paid_on=row["paid_on"],
        amount=row["amount"],
        method=row["method"],
        reference=row["reference"],
        notes=row["notes"],
    )


_PAYMENT_COLUMNS = "id, invoice_id, paid_on, amount, method, reference, notes"


async def record_payment(
    db: Database,
    actor: Actor,
    invoice_id: int,
    amount: Decimal,
    *,
    method: str,
    paid_on: dt.date | None = None,
    reference: str | None = None,
    notes: str | None = None,
) -> Payment:
    """Record money received against an invoice; no more than its balance due."""
    require(actor, Permission.MANAGE_BILLING)
    if amount <= 0 or amount != _pennies(amount):
        raise InvalidInput(f"a payment must be a positive amount in pennies, not {amount}")
    async with transaction(db) as conn:
        # The row lock serialises payments on one invoice, so two cannot both
        # fit in the same remaining balance.
        status = await conn.fetchval(
            "SELECT status FROM invoices WHERE business_id = $1 AND id = $2 FOR UPDATE",
            actor.business_id,
            invoice_id,
        )
        if status is None:
            raise NotFound("invoice", invoice_id)
        if status == InvoiceStatus.VOID.value:
            raise InvalidInput("cannot pay a void invoice")
        totals = await _totals(conn, actor, "invoice_id", invoice_id)
        if amount > totals.balance:
            raise Overpayment(f"payment of {amount} exceeds the balance due of {totals.balance}")
        row = await conn.fetchrow(
            "INSERT INTO payments (business_id, invoice_id, paid_on, amount, method,"
            f" reference, notes) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_PAYMENT_COLUMNS}",
            actor.business_id,
            invoice_id,
            paid_on or dt.date.today(),
            amount,
            method,
            reference,
            notes,
        )
        new_status = (
            InvoiceStatus.PAID if amount == totals.balance else InvoiceStatus.PARTIALLY_PAID
        )
        await conn.execute(
            "UPDATE invoices SET status = $3 WHERE business_id = $1 AND id = $2",
            actor.business_id,
            invoice_id,
            new_status.value,
        )
    assert row is not None
    return _payment(row)


async def list_payments(db: Database, actor: Actor, invoice_id: int) -> list[Payment]:
    """The payments against one invoice, oldest first."""
    require(actor, Permission.READ_BILLING)
    rows = await db.fetch(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE business_id = $1 AND invoice_id = $2"
        " ORDER BY paid_on, id",
        actor.business_id,
        invoice_id,
    )
    return [_payment(r) for r in rows]
