"""``python -m app scenario``: a short, readable story for three businesses.

Each business signs up, invites an accountant and a staff member, adds a
customer and a supplier, quotes, invoices and is partly paid, logs an expense,
a journey and some hours, stores its bank details and a Stripe key, and then
reads things back: searches a customer by email and by tax id (typed
differently from how they were stored), lists invoices with customer names,
logs in with password and TOTP. Two attempts are refused on purpose: staff
reading bank details (``AccessDenied``) and one business reading another's
customer (``NotFound``: other businesses' rows are invisible).

``run_scenario`` returns every value the app read as ``Reading`` rows, so a
caller (the CLI here, ``pgseal demo`` later) can show them next to what an
auditor sees in the raw tables.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

import pyotp

from app.access import Actor, Role
from app.accounts import authenticate, create_business, create_user, enable_totp
from app.auth import DEFAULT_BCRYPT_ROUNDS
from app.banking import BankDetails, add_bank_account, list_bank_accounts, set_payment_instructions
from app.billing import (
    LineInput,
    convert_quote_to_invoice,
    create_quote,
    issue_invoice,
    list_invoices,
    record_payment,
    set_quote_status,
)
from app.bookkeeping import log_expense, log_mileage, log_time, mileage_summary
from app.contacts import ContactDetails, ContactKind, add_contact, find_contacts, get_contact
from app.db import Database
from app.errors import AppError
from app.integrations import get_credential, store_stripe_key

__all__ = ["STORIES", "Reading", "ScenarioResult", "StoryBusiness", "run_scenario"]


@dataclass(frozen=True, slots=True)
class StoryBusiness:
    """The fixed cast of one business in the story."""

    name: str
    owner: str
    owner_email: str
    password: str
    customer: ContactDetails
    supplier: ContactDetails
    work: tuple[str, str, str]
    bank: BankDetails
    stripe_key: str
    journey: tuple[str, str, Decimal]


STORIES = (
    StoryBusiness(
        name="Kestrel Joinery Ltd",
        owner="Siobhan MacLeod",
        owner_email="siobhan@kestrel-joinery.example",
        password="oak-and-dovetails-1987",
        customer=ContactDetails(
            company_name="Harbour View Hotel Ltd",
            contact_name="Tomasz Nowak",
            email="t.nowak@harbourview-hotel.example",
            phone="07700 900412",
            address="14 Marine Parade\nBrighton\nBN2 1TL",
            tax_id="5837261094",
            vat_number="GB 318 4472 09",
        ),
        supplier=ContactDetails(
            company_name="Granite Timber Merchants",
            email="orders@granite-timber.example",
            vat_number="GB 902 1188 43",
        ),
        work=("Fit 12 oak sash windows", "Remove old frames", "Paint and seal"),
        bank=BankDetails(
            "Kestrel Joinery Ltd",
            "Barclays",
            "41920377",
            "20-32-06",
            "GB18BARC20320641920377",
            "BARCGB22",
        ),
        stripe_key="sk_test_51KestrelJoineryQ8vLr2TnW0demo",
        journey=("Workshop, Mill Lane, Leeds", "Harbour View Hotel, Brighton", Decimal("236.4")),
    ),
    StoryBusiness(
        name="Foxglove Design Studio LLP",
        owner="Kwame Okafor",
        owner_email="kwame@foxglove-design.example",
        password="kerning-matters-2024",
        customer=ContactDetails(
            company_name="Thistle Bakery",
            contact_name="Eilidh Robertson",
            email="eilidh@thistle-bakery.example",
            phone="020 7946 0733",
            address="3 Victoria Road\nEdinburgh\nEH1 2JL",
            tax_id="7710293845",
            vat_number="GB 664 2901 57",
        ),
        supplier=ContactDetails(
            company_name="Lantern Print Works",
            email="studio@lantern-print.example",
            vat_number="GB 455 0912 33",
        ),
        work=("Brand identity and logo", "Shop signage artwork", "500 A5 menus, printed"),
        bank=BankDetails(
            "Foxglove Design Studio LLP",
            "Starling Bank",
            "83315024",
            "60-83-71",
            "GB46SRLG60837183315024",
            "SRLGGB2L",
        ),
        stripe_key="sk_test_51FoxgloveStudioH3mPq7Zx1demo",
        journey=("Studio, Queen Street, Edinburgh", "Thistle Bakery, Leith", Decimal("4.2")),
    ),
    StoryBusiness(
        name="Beacon Plumbing & Heating Ltd",
        owner="Priya Patel",
        owner_email="priya@beacon-plumbing.example",
        password="no-leaks-since-2009",
        customer=ContactDetails(
            company_name="Riverside Dental Care",
            contact_name="Omar Khan",
            email="omar.khan@riverside-dental.example",
            phone="07700 900871",
            address="77 Station Road\nNorwich\nNR1 3QB",
            tax_id="2290448176",
            vat_number="GB 771 3320 86",
        ),
        supplier=ContactDetails(
            company_name="Copper Pipe Supplies",
            email="trade@copper-pipe.example",
            vat_number="GB 120 8876 51",
        ),
        work=("Replace combination boiler", "Power flush, 8 radiators", "Gas safety certificate"),
        bank=BankDetails(
            "Beacon Plumbing & Heating Ltd",
            "NatWest",
            "27740918",
            "56-00-29",
            "GB77NWBK56002927740918",
            "NWBKGB2L",
        ),
        stripe_key="sk_test_51BeaconPlumbingT9wKd4Ys6demo",
        journey=("Depot, Church Lane, Norwich", "Riverside Dental Care, Norwich", Decimal("7.8")),
    ),
)


@dataclass(frozen=True, slots=True)
class Reading:
    """One thing the app read back (or was refused), as shown to the user."""

    business: str
    who: str
    action: str
    result: str
    refused: bool = False


@dataclass(slots=True)
class ScenarioResult:
    businesses: list[tuple[int, str]] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)


def _money(value: Decimal) -> str:
    return f"£{value:,.2f}"


async def _one_business(
    db: Database, story: StoryBusiness, result: ScenarioResult, rounds: int, today: dt.date
) -> tuple[Actor, int]:
    def read(who: str, action: str, value: str, *, refused: bool = False) -> None:
        result.readings.append(Reading(story.name, who, action, value, refused))

    business, owner = await create_business(
        db,
        name=story.name,
        owner_email=story.owner_email,
        owner_name=story.owner,
        owner_password=story.password,
        rounds=rounds,
    )
    result.businesses.append((business.id, business.name))
    domain = story.owner_email.split("@", 1)[1]
    accountant = (
        await create_user(
            db,
            owner,
            email=f"books@{domain}",
            full_name="Grace Hall",
            role=Role.ACCOUNTANT,
            password=story.password + "-books",
            rounds=rounds,
        )
    ).actor
    staff = (
        await create_user(
            db,
            owner,
            email=f"apprentice@{domain}",
            full_name="Leo Wright",
            role=Role.STAFF,
            password=story.password + "-staff",
            rounds=rounds,
        )
    ).actor

    customer = await add_contact(db, staff, ContactKind.CUSTOMER, story.customer)
    supplier = await add_contact(db, owner, ContactKind.SUPPLIER, story.supplier)
    lines = [
        LineInput(story.work[0], Decimal(1), Decimal("1850.00"), Decimal(20)),
        LineInput(story.work[1], Decimal("7.5"), Decimal("45.00"), Decimal(20)),
        LineInput(story.work[2], Decimal(2), Decimal("120.00"), Decimal(0)),
    ]
    quote = await create_quote(
        db, staff, customer.id, lines, issue_date=today, notes="Includes all materials."
    )
    await set_quote_status(db, owner, quote.id, "accepted")
    invoice = await convert_quote_to_invoice(db, owner, quote.id, issue_date=today)
    read(
        "owner", f"invoice {invoice.number} from quote {quote.number}", _money(invoice.totals.gross)
    )
    extra = await issue_invoice(
        db,
        staff,
        customer.id,
        [LineInput("Call-out, evening", Decimal(1), Decimal("95.00"), Decimal(20))],
        issue_date=today,
        notes="Door code 4417, ask for the night manager.",
    )
    payment = await record_payment(
        db,
        owner,
        invoice.id,
        Decimal("1000.00"),
        method="bank transfer",
        paid_on=today,
        reference=f"{invoice.number} deposit",
    )
    read("owner", f"payment on {invoice.number}", f"{_money(payment.amount)} by {payment.method}")

    await log_expense(
        db,
        staff,
        merchant="Screwfix",
        amount=Decimal("86.40"),
        category="materials",
        spent_on=today,
        description=f"Fixings for {customer.company_name}",
        supplier_id=supplier.id,
    )
    from_place, to_place, miles = story.journey
    await log_mileage(
        db,
        staff,
        from_place=from_place,
        to_place=to_place,
        distance_miles=miles,
        travelled_on=today,
        purpose=f"Site visit for {invoice.number}",
    )
    await log_time(
        db,
        staff,
        description=story.work[0],
        duration_minutes=450,
        worked_on=today,
        customer_id=customer.id,
    )
    summary = await mileage_summary(db, staff)
    read("staff", "mileage logged", f"{summary.total_miles} miles: {from_place} → {to_place}")

    bank = await add_bank_account(db, owner, story.bank, primary=True)
    await set_payment_instructions(
        db,
        owner,
        f"Pay by transfer to {story.bank.account_name}, sort code {story.bank.sort_code},"
        f" account {story.bank.account_number}.",
        bank_account_id=bank.id,
    )
    await store_stripe_key(db, owner, story.stripe_key)

    assert story.customer.email is not None
    assert story.customer.vat_number is not None
    typed_email = "  " + story.customer.email.upper() + " "
    found = await find_contacts(db, staff, ContactKind.CUSTOMER, email=typed_email)
    read("staff", f"search email {typed_email.strip()!r}", ", ".join(c.company_name for c in found))
    typed_vat = story.customer.vat_number.replace(" ", "").lower()
    found = await find_contacts(db, staff, ContactKind.CUSTOMER, vat_number=typed_vat)
    read(
        "staff",
        f"search VAT number {typed_vat!r}",
        ", ".join(f"{c.company_name} <{c.email}>, {c.phone}" for c in found),
    )

    for summary_row in await list_invoices(db, accountant):
        read(
            "accountant",
            f"invoice {summary_row.number}",
            f"{summary_row.customer_name}: {_money(summary_row.totals.gross)}"
            f" ({summary_row.status.value}, due {_money(summary_row.totals.balance)})",
        )
    del extra

    try:
        await list_bank_accounts(db, staff)
        read("staff", "read bank details", "allowed (unexpected)")
    except AppError as exc:
        read("staff", "read bank details", f"refused: {exc}", refused=True)
    accounts = await list_bank_accounts(db, accountant)
    read("accountant", "read bank details", f"{accounts[0].iban} ({accounts[0].bank_name})")
    credential = await get_credential(db, accountant, "stripe")
    read("accountant", "read Stripe key", credential.api_key or "")

    secret = await enable_totp(db, owner, owner.user_id)
    code = pyotp.TOTP(secret).now()
    actor = await authenticate(db, business.id, story.owner_email.upper(), story.password, code)
    read("owner", "log in with password + TOTP", f"signed in as {actor.role.value}")
    return owner, customer.id


async def run_scenario(
    db: Database, *, rounds: int = DEFAULT_BCRYPT_ROUNDS, today: dt.date | None = None
) -> ScenarioResult:
    """Play the story for the three ``STORIES`` businesses; return what the app read."""
    today = today or dt.date.today()
    result = ScenarioResult()
    played = [await _one_business(db, story, result, rounds, today) for story in STORIES]
    # The second business tries to open the first one's customer by id.
    (_, first_customer), (intruder, _) = played[0], played[1]
    try:
        leaked = await get_contact(db, intruder, ContactKind.CUSTOMER, first_customer)
        result.readings.append(
            Reading(
                STORIES[1].name, "owner", "read another business's customer", leaked.company_name
            )
        )
    except AppError as exc:
        result.readings.append(
            Reading(
                STORIES[1].name,
                "owner",
                f"read {STORIES[0].name}'s customer #{first_customer}",
                f"refused: {exc}",
                refused=True,
            )
        )
    return result
