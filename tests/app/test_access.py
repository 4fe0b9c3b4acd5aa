"""Every role check of the service layer, for every role.

``OPERATIONS`` names each public service function with the permission it needs
and a call that would succeed for a role that has it. For each role, every
operation either completes (granted) or raises ``AccessDenied`` and changes
nothing in the database (denied). ``test_every_checked_function_is_covered``
keeps the table complete as the service layer grows.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg
import pytest

from app import accounts, banking, billing, bookkeeping, contacts, integrations, reports
from app.access import GRANTS, Actor, Permission, Role, require
from app.banking import BankDetails
from app.billing import LineInput
from app.contacts import ContactDetails, ContactKind
from app.errors import AccessDenied
from tests.app.conftest import ACME, PASSWORD, ROUNDS, AppDatabase, Team
from tests.app.plaintexts import encrypted_columns

D = Decimal
C = ContactKind.CUSTOMER
LINE = [LineInput("Inspection", D(1), D("90.00"), D(20))]


@dataclass
class World:
    """Fresh objects of the team's business, made by the owner before each call."""

    db: asyncpg.Pool[asyncpg.Record]
    team: Team
    customer_id: int = 0
    invoice_id: int = 0
    quote_id: int = 0

    async def refresh(self) -> None:
        owner = self.team.owner
        self.customer_id = (await contacts.add_contact(self.db, owner, C, ACME)).id
        self.invoice_id = (await billing.issue_invoice(self.db, owner, self.customer_id, LINE)).id
        self.quote_id = (await billing.create_quote(self.db, owner, self.customer_id, LINE)).id


Op: TypeAlias = "Callable[[asyncpg.Pool[asyncpg.Record], Actor, World], Awaitable[Any]]"


async def _create_user(db: asyncpg.Pool[asyncpg.Record], a: Actor, w: World) -> Any:
    return await accounts.create_user(
        db,
        a,
        email=f"new-{a.role}@heron-electrical.example",
        full_name="New Person",
        role=Role.STAFF,
        password=PASSWORD,
        rounds=ROUNDS,
    )


#: name -> (permission needed, or None for every role; a call that works when allowed)
OPERATIONS: dict[str, tuple[Permission | None, Op]] = {
    "accounts.get_business": (None, lambda db, a, w: accounts.get_business(db, a)),
    "accounts.create_user": (Permission.MANAGE_USERS, _create_user),
    "accounts.list_users": (Permission.READ_USERS, lambda db, a, w: accounts.list_users(db, a)),
    "accounts.get_user": (
        Permission.READ_USERS,
        lambda db, a, w: accounts.get_user(
            db, a, w.team.owner.user_id if a.role != Role.OWNER else w.team.staff.user_id
        ),
    ),
    "accounts.change_role": (
        Permission.MANAGE_USERS,
        lambda db, a, w: accounts.change_role(db, a, w.team.staff.user_id, Role.STAFF),
    ),
    "accounts.enable_totp": (
        Permission.MANAGE_USERS,
        lambda db, a, w: accounts.enable_totp(
            db, a, w.team.owner.user_id if a.role != Role.OWNER else w.team.staff.user_id
        ),
    ),
    "contacts.add_contact": (
        Permission.MANAGE_CONTACTS,
        lambda db, a, w: contacts.add_contact(db, a, C, ContactDetails("Ash Ltd")),
    ),
    "contacts.get_contact": (
        Permission.READ_CONTACTS,
        lambda db, a, w: contacts.get_contact(db, a, C, w.customer_id),
    ),
    "contacts.list_contacts": (
        Permission.READ_CONTACTS,
        lambda db, a, w: contacts.list_contacts(db, a, ContactKind.SUPPLIER),
    ),
    "contacts.find_contacts": (
        Permission.READ_CONTACTS,
        lambda db, a, w: contacts.find_contacts(db, a, C, tax_id=ACME.tax_id),
    ),
    "contacts.find_contacts_by_emails": (
        Permission.READ_CONTACTS,
        lambda db, a, w: contacts.find_contacts_by_emails(db, a, C, [ACME.email or ""]),
    ),
    "contacts.update_contact": (
        Permission.MANAGE_CONTACTS,
        lambda db, a, w: contacts.update_contact(db, a, C, w.customer_id, phone="0"),
    ),
    "billing.issue_invoice": (
        Permission.MANAGE_BILLING,
        lambda db, a, w: billing.issue_invoice(db, a, w.customer_id, LINE),
    ),
    "billing.get_invoice": (
        Permission.READ_BILLING,
        lambda db, a, w: billing.get_invoice(db, a, w.invoice_id),
    ),
    "billing.list_invoices": (
        Permission.READ_BILLING,
        lambda db, a, w: billing.list_invoices(db, a),
    ),
    "billing.record_payment": (
        Permission.MANAGE_BILLING,
        lambda db, a, w: billing.record_payment(db, a, w.invoice_id, D(10), method="cash"),
    ),
    "billing.list_payments": (
        Permission.READ_BILLING,
        lambda db, a, w: billing.list_payments(db, a, w.invoice_id),
    ),
    "billing.create_quote": (
        Permission.MANAGE_BILLING,
        lambda db, a, w: billing.create_quote(db, a, w.customer_id, LINE),
    ),
    "billing.get_quote": (
        Permission.READ_BILLING,
        lambda db, a, w: billing.get_quote(db, a, w.quote_id),
    ),
    "billing.set_quote_status": (
        Permission.MANAGE_BILLING,
        lambda db, a, w: billing.set_quote_status(db, a, w.quote_id, "accepted"),
    ),
    "billing.convert_quote_to_invoice": (
        Permission.MANAGE_BILLING,
        lambda db, a, w: billing.convert_quote_to_invoice(db, a, w.quote_id),
    ),
    "bookkeeping.log_expense": (
        Permission.LOG_WORK,
        lambda db, a, w: bookkeeping.log_expense(
            db, a, merchant="Costa", amount=D("2.50"), category="subsistence"
        ),
    ),
    "bookkeeping.list_expenses": (
        Permission.READ_WORK,
        lambda db, a, w: bookkeeping.list_expenses(db, a),
    ),
    "bookkeeping.expense_totals_by_category": (
        Permission.READ_REPORTS,
        lambda db, a, w: bookkeeping.expense_totals_by_category(db, a),
    ),
    "bookkeeping.log_mileage": (
        Permission.LOG_WORK,
        lambda db, a, w: bookkeeping.log_mileage(
            db, a, from_place="Leeds", to_place="York", distance_miles=D(25)
        ),
    ),
    "bookkeeping.list_mileage": (
        Permission.READ_WORK,
        lambda db, a, w: bookkeeping.list_mileage(db, a),
    ),
    "bookkeeping.mileage_summary": (
        Permission.READ_WORK,
        lambda db, a, w: bookkeeping.mileage_summary(db, a),
    ),
    "bookkeeping.log_time": (
        Permission.LOG_WORK,
        lambda db, a, w: bookkeeping.log_time(db, a, description="Survey", duration_minutes=60),
    ),
    "bookkeeping.list_time_entries": (
        Permission.READ_WORK,
        lambda db, a, w: bookkeeping.list_time_entries(db, a),
    ),
    "bookkeeping.minutes_worked": (
        Permission.READ_WORK,
        lambda db, a, w: bookkeeping.minutes_worked(db, a),
    ),
    "banking.add_bank_account": (
        Permission.MANAGE_BANK_DETAILS,
        lambda db, a, w: banking.add_bank_account(
            db, a, BankDetails("Ops", account_number="12345678")
        ),
    ),
    "banking.list_bank_accounts": (
        Permission.READ_BANK_DETAILS,
        lambda db, a, w: banking.list_bank_accounts(db, a),
    ),
    "banking.set_payment_instructions": (
        Permission.MANAGE_BANK_DETAILS,
        lambda db, a, w: banking.set_payment_instructions(db, a, "Pay by transfer"),
    ),
    "banking.get_payment_instructions": (
        Permission.READ_BILLING,
        lambda db, a, w: banking.get_payment_instructions(db, a),
    ),
    "integrations.store_stripe_key": (
        Permission.MANAGE_CREDENTIALS,
        lambda db, a, w: integrations.store_stripe_key(db, a, "sk_test_" + "a" * 24),
    ),
    "integrations.store_oauth_refresh_token": (
        Permission.MANAGE_CREDENTIALS,
        lambda db, a, w: integrations.store_oauth_refresh_token(db, a, "xero", "1//token"),
    ),
    "integrations.get_credential": (
        Permission.READ_CREDENTIALS,
        lambda db, a, w: integrations.get_credential(db, a, "stripe"),
    ),
    "integrations.list_integrations": (
        Permission.READ_CREDENTIALS,
        lambda db, a, w: integrations.list_integrations(db, a),
    ),
    "reports.business_report": (
        Permission.READ_REPORTS,
        lambda db, a, w: reports.business_report(db, a),
    ),
}


# Every protected table is one the app writes (all 13 tables but businesses).
_TABLES = sorted(encrypted_columns())


async def _snapshot(direct_dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    # Whole raw rows over the direct connection (ciphertext through pgseal), so an
    # UPDATE that should not have happened shows up too.
    conn = await asyncpg.connect(direct_dsn)
    try:
        return {
            t: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {t} ORDER BY id")]
            for t in _TABLES
        }
    finally:
        await conn.close()


def test_grants_table() -> None:
    assert GRANTS[Role.OWNER] == frozenset(Permission)
    staff, accountant = GRANTS[Role.STAFF], GRANTS[Role.ACCOUNTANT]
    assert staff < accountant < GRANTS[Role.OWNER]
    for denied in (
        Permission.READ_BANK_DETAILS,
        Permission.READ_CREDENTIALS,
        Permission.MANAGE_USERS,
    ):
        assert denied not in staff
    assert Permission.READ_BANK_DETAILS in accountant
    assert Permission.READ_CREDENTIALS in accountant
    assert Permission.MANAGE_USERS not in accountant
    assert Permission.READ_USERS in accountant
    assert GRANTS[Role.OWNER] - accountant == {
        Permission.MANAGE_USERS,
        Permission.MANAGE_CREDENTIALS,
    }
    with pytest.raises(AccessDenied, match="'staff' may not read credentials") as info:
        require(Actor(1, 1, Role.STAFF), Permission.READ_CREDENTIALS)
    assert (info.value.role, info.value.permission) == ("staff", "read_credentials")


def test_every_checked_function_is_covered() -> None:
    """Every public service function that acts for an ``Actor`` is in the table."""
    acting = set()
    for module in (accounts, contacts, billing, bookkeeping, banking, integrations, reports):
        short = module.__name__.removeprefix("app.")
        for name, fn in inspect.getmembers(module, inspect.iscoroutinefunction):
            if name.startswith("_") or fn.__module__ != module.__name__:
                continue
            if "actor" in inspect.signature(fn).parameters:
                acting.add(f"{short}.{name}")
    assert acting == set(OPERATIONS)


@pytest.mark.parametrize("role", list(Role))
async def test_role_checks(
    db: asyncpg.Pool[asyncpg.Record], app_database: AppDatabase, team: Team, role: Role
) -> None:
    world = World(db, team)
    await integrations.store_stripe_key(db, team.owner, "sk_test_" + "b" * 24)  # to read back
    actor = team.by_role(role)
    granted, denied = [], []
    for name, (permission, op) in OPERATIONS.items():
        await world.refresh()
        if permission is None or permission in GRANTS[role]:
            await op(db, actor, world)  # must not raise
            granted.append(name)
        else:
            before = await _snapshot(app_database.direct_dsn)
            with pytest.raises(AccessDenied) as info:
                await op(db, actor, world)
            assert info.value.permission == permission.value, name
            assert await _snapshot(app_database.direct_dsn) == before, (
                f"{name} wrote although denied"
            )
            denied.append(name)
    expected_denied = {
        Role.OWNER: set(),
        Role.ACCOUNTANT: {
            "accounts.create_user",
            "accounts.change_role",
            "accounts.enable_totp",
            "integrations.store_stripe_key",
            "integrations.store_oauth_refresh_token",
        },
        Role.STAFF: {
            "accounts.create_user",
            "accounts.list_users",
            "accounts.get_user",
            "accounts.change_role",
            "accounts.enable_totp",
            "bookkeeping.expense_totals_by_category",
            "banking.add_bank_account",
            "banking.list_bank_accounts",
            "banking.set_payment_instructions",
            "integrations.store_stripe_key",
            "integrations.store_oauth_refresh_token",
            "integrations.get_credential",
            "integrations.list_integrations",
            "reports.business_report",
        },
    }[role]
    assert set(denied) == expected_denied
    assert len(granted) + len(denied) == len(OPERATIONS)


async def test_users_may_enrol_themselves_and_read_themselves(
    db: asyncpg.Pool[asyncpg.Record], team: Team
) -> None:
    assert await accounts.enable_totp(db, team.staff, team.staff.user_id)
    me = await accounts.get_user(db, team.staff, team.staff.user_id)
    assert me.has_totp
    assert me.role is Role.STAFF
    with pytest.raises(AccessDenied):
        await accounts.get_user(db, team.staff, team.owner.user_id)
