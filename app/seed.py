"""``python -m app seed``: fill a database with realistic businesses.

Each business gets an owner, an accountant and a staff member, customers and
suppliers, quotes and invoices with several lines (some paid, some partly),
expenses, mileage, time entries, a bank account with payment instructions, and
a Stripe key and an OAuth refresh token. Everything is written through the
service layer, so seeding through pgseal exercises the same SQL as the app.

Every seeded user's password is ``DEMO_PASSWORD``; bcrypt's work factor is a
parameter (``--bcrypt-rounds``) because at the production factor hashing
dominates seeding time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from app.access import Role
from app.accounts import create_business, create_user
from app.auth import DEFAULT_BCRYPT_ROUNDS
from app.banking import BankDetails, add_bank_account, set_payment_instructions
from app.billing import (
    LineInput,
    convert_quote_to_invoice,
    create_quote,
    issue_invoice,
    record_payment,
    set_quote_status,
)
from app.bookkeeping import log_expense, log_mileage, log_time
from app.contacts import ContactDetails, ContactKind, add_contact
from app.db import Database
from app.fake import EXPENSE_CATEGORIES, MERCHANTS, PAYMENT_METHODS, PURPOSES, TOWNS, FakeData
from app.integrations import store_oauth_refresh_token, store_stripe_key

__all__ = ["DEMO_PASSWORD", "SeededBusiness", "seed_business", "seed_businesses"]

DEMO_PASSWORD = "correct horse battery staple"


@dataclass(frozen=True, slots=True)
class SeededBusiness:
    id: int
    name: str
    owner_email: str
    customers: int
    invoices: int


def _contact(fake: FakeData) -> ContactDetails:
    company = fake.company()
    person = fake.person()
    return ContactDetails(
        company_name=company,
        contact_name=person,
        email=fake.email(person, fake.domain(company)),
        phone=fake.phone(),
        address=fake.address(),
        tax_id=fake.utr(),
        vat_number=fake.vat_number(),
    )


def _lines(fake: FakeData) -> list[LineInput]:
    return [
        LineInput(
            description=fake.work_item(),
            quantity=Decimal(fake.pick(("1", "1", "2", "3", "0.5", "7.5"))),
            unit_price=fake.money(15, 900),
            tax_rate=Decimal(fake.pick(("20", "20", "0", "5"))),
        )
        for _ in range(fake.rng.randint(1, 5))
    ]


async def seed_business(
    db: Database,
    fake: FakeData,
    *,
    rounds: int = DEFAULT_BCRYPT_ROUNDS,
    today: dt.date | None = None,
) -> SeededBusiness:
    """One complete, plausible business (see the module docstring)."""
    today = today or dt.date.today()
    name = fake.company()
    domain = fake.domain(name)
    owner_name = fake.person()
    owner_email = fake.email(owner_name, domain)
    business, owner = await create_business(
        db,
        name=name,
        owner_email=owner_email,
        owner_name=owner_name,
        owner_password=DEMO_PASSWORD,
        rounds=rounds,
    )
    team = [owner]
    for role in (Role.ACCOUNTANT, Role.STAFF):
        person = fake.person()
        user = await create_user(
            db,
            owner,
            email=f"{role.value}.{fake.email(person, domain)}",
            full_name=person,
            role=role,
            password=DEMO_PASSWORD,
            rounds=rounds,
        )
        team.append(user.actor)

    customers = [
        await add_contact(db, owner, ContactKind.CUSTOMER, _contact(fake))
        for _ in range(fake.rng.randint(4, 8))
    ]
    suppliers = [
        await add_contact(db, owner, ContactKind.SUPPLIER, _contact(fake))
        for _ in range(fake.rng.randint(2, 4))
    ]

    invoices = 0
    for _ in range(fake.rng.randint(6, 12)):
        actor = fake.rng.choice(team)
        customer = fake.rng.choice(customers)
        issued = fake.day_within(120, today=today)
        if fake.rng.random() < 0.3:
            quote = await create_quote(
                db, actor, customer.id, _lines(fake), issue_date=issued, notes="Valid 30 days."
            )
            if fake.rng.random() < 0.3:
                await set_quote_status(db, actor, quote.id, "declined")
                continue
            invoice = await convert_quote_to_invoice(db, actor, quote.id, issue_date=issued)
        else:
            notes = f"Thank you for your business, {customer.contact_name}."
            invoice = await issue_invoice(
                db, actor, customer.id, _lines(fake), issue_date=issued, notes=notes
            )
        invoices += 1
        chance = fake.rng.random()
        if chance < 0.5 and invoice.totals.gross > 0:
            await record_payment(
                db,
                actor,
                invoice.id,
                invoice.totals.gross,
                method=fake.pick(PAYMENT_METHODS),
                paid_on=min(today, issued + dt.timedelta(days=fake.rng.randint(1, 40))),
                reference=f"{invoice.number}/{fake.digits(6)}",
            )
        elif chance < 0.7 and invoice.totals.gross > 1:
            await record_payment(
                db,
                actor,
                invoice.id,
                (invoice.totals.gross / 2).quantize(Decimal("0.01")),
                method=fake.pick(PAYMENT_METHODS),
                paid_on=min(today, issued + dt.timedelta(days=fake.rng.randint(1, 40))),
                reference=f"part {invoice.number}",
                notes="Balance promised by end of month.",
            )

    for actor in team:
        for _ in range(fake.rng.randint(1, 4)):
            await log_expense(
                db,
                actor,
                merchant=fake.pick(MERCHANTS),
                amount=fake.money(3, 400),
                category=fake.pick(EXPENSE_CATEGORIES),
                spent_on=fake.day_within(90, today=today),
                description=fake.work_item(),
                supplier_id=fake.rng.choice([None, *[s.id for s in suppliers]]),
            )
        for _ in range(fake.rng.randint(0, 3)):
            await log_mileage(
                db,
                actor,
                from_place=fake.address().replace("\n", ", "),
                to_place=fake.pick([t for t, _ in TOWNS]),
                distance_miles=fake.money(2, 180),
                travelled_on=fake.day_within(90, today=today),
                purpose=fake.pick(PURPOSES),
            )
        for _ in range(fake.rng.randint(1, 5)):
            await log_time(
                db,
                actor,
                description=fake.work_item(),
                duration_minutes=fake.rng.choice((15, 30, 45, 60, 90, 120, 240)),
                worked_on=fake.day_within(60, today=today),
                customer_id=fake.rng.choice(customers).id,
                billable=fake.rng.random() < 0.8,
            )

    bank_name, sort_code, account, iban, bic = fake.bank()
    bank = await add_bank_account(
        db,
        owner,
        BankDetails(name, bank_name, account, sort_code, iban, bic),
        primary=True,
    )
    await set_payment_instructions(
        db,
        owner,
        f"Please pay {name} by bank transfer to sort code {sort_code}, account {account}"
        f" (IBAN {iban}), quoting the invoice number.",
        bank_account_id=bank.id,
    )
    await store_stripe_key(db, owner, fake.stripe_key())
    await store_oauth_refresh_token(db, owner, "xero", fake.refresh_token())
    return SeededBusiness(business.id, name, owner_email, len(customers), invoices)


async def seed_businesses(
    db: Database,
    count: int,
    *,
    seed: int | None = None,
    rounds: int = DEFAULT_BCRYPT_ROUNDS,
    progress: Callable[[SeededBusiness], None] | None = None,
) -> list[SeededBusiness]:
    """``count`` businesses, reproducible from ``seed``."""
    fake = FakeData(seed)
    seeded = []
    for _ in range(count):
        business = await seed_business(db, fake, rounds=rounds)
        if progress is not None:
            progress(business)
        seeded.append(business)
    return seeded
