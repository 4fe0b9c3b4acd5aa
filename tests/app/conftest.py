"""Fixtures for the invoicing app's tests.

``app_database`` is the single switch between "straight to Postgres" (today:
the plaintext-baseline schema, the app's DSN is the database's) and "through
pgseal" (later: the bytea schema with pgseal in front; the app's DSN is
pgseal's, and after every test the direct connection is scanned for every
plaintext the test sent). Every app test reaches the database only through
``db``, a pool on ``app_database.app_dsn`` whose connections record every
parameter into a ``PlaintextLedger``.

bcrypt uses ``ROUNDS`` (4) here instead of the production 12.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from app.access import Actor, Role
from app.accounts import create_business, create_user
from app.contacts import Contact, ContactDetails, ContactKind, add_contact
from app.schema import EncryptedStorage, migrate
from tests.app.plaintexts import SESSION_LEDGER, PlaintextLedger, scan_for_plaintext

ROUNDS = 4
PASSWORD = "s3cret-pass-phrase"


@dataclass(frozen=True)
class AppDatabase:
    app_dsn: str  # what the app connects to: Postgres now, pgseal later
    direct_dsn: str  # the database itself: migrations, the auditor's scan
    through_pgseal: bool


@pytest.fixture
async def app_database(fresh_db: str) -> AppDatabase:
    """THE place that decides what the app's tests run against.

    To run through pgseal: migrate ``fresh_db`` with ``EncryptedStorage.BYTEA``,
    start pgseal with app/pgseal-tables.yaml's rules and ``fresh_db`` upstream,
    and yield ``AppDatabase(<pgseal DSN>, fresh_db, through_pgseal=True)``;
    nothing else in tests/app changes.
    """
    await migrate(fresh_db, storage=EncryptedStorage.PLAINTEXT)
    return AppDatabase(app_dsn=fresh_db, direct_dsn=fresh_db, through_pgseal=False)


@pytest.fixture
def ledger() -> PlaintextLedger:
    return PlaintextLedger(parent=SESSION_LEDGER)


@pytest.fixture
async def db(
    app_database: AppDatabase, ledger: PlaintextLedger
) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    """The app's pool; through pgseal, the test fails if any plaintext reached the disk."""
    pool = await asyncpg.create_pool(
        app_database.app_dsn, min_size=1, max_size=3, init=ledger.attach
    )
    try:
        yield pool
    finally:
        await pool.close()
    await asyncio.sleep(0)  # query loggers run via call_soon
    if app_database.through_pgseal:
        leaks = await scan_for_plaintext(app_database.direct_dsn, ledger.values)
        assert not leaks, f"plaintext on disk: {leaks[:5]}"


@dataclass(frozen=True)
class Team:
    """One business with a user of every role."""

    business_id: int
    owner: Actor
    accountant: Actor
    staff: Actor

    def by_role(self, role: Role) -> Actor:
        return {Role.OWNER: self.owner, Role.ACCOUNTANT: self.accountant, Role.STAFF: self.staff}[
            role
        ]


async def make_team(db: asyncpg.Pool[asyncpg.Record], name: str, domain: str) -> Team:
    business, owner = await create_business(
        db,
        name=name,
        owner_email=f"Owner@{domain}",
        owner_name=f"Olive Owner of {name}",
        owner_password=PASSWORD,
        rounds=ROUNDS,
    )
    accountant = await create_user(
        db,
        owner,
        email=f"accounts@{domain}",
        full_name="Alan Accountant",
        role=Role.ACCOUNTANT,
        password=PASSWORD,
        rounds=ROUNDS,
    )
    staff = await create_user(
        db,
        owner,
        email=f"staff@{domain}",
        full_name="Sam Staffer",
        role=Role.STAFF,
        password=PASSWORD,
        rounds=ROUNDS,
    )
    return Team(business.id, owner, accountant.actor, staff.actor)


@pytest.fixture
async def team(db: asyncpg.Pool[asyncpg.Record]) -> Team:
    return await make_team(db, "Heron Electrical Ltd", "heron-electrical.example")


@pytest.fixture
async def other_team(db: asyncpg.Pool[asyncpg.Record]) -> Team:
    return await make_team(db, "Larch Architects LLP", "larch-architects.example")


ACME = ContactDetails(
    company_name="Acme Widgets Ltd",
    contact_name="Wile E. Coyote",
    email="Wile.Coyote@Acme-Widgets.example",
    phone="07700 900123",
    address="1 Canyon Road\nYork\nYO1 7HH",
    tax_id="12345 67890",
    vat_number="gb 123 4567 89",
)


@pytest.fixture
async def customer(db: asyncpg.Pool[asyncpg.Record], team: Team) -> Contact:
    return await add_contact(db, team.owner, ContactKind.CUSTOMER, ACME)
