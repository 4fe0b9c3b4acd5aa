"""Fixtures for the invoicing app's tests: the app runs through pgseal.

``app_database`` is the single switch. It is ``pgseal_app``: one database with
the bytea schema, the key store initialised and a real ``pgseal serve`` in
front of it with the root config.yaml's rules, shared by the package. The app's
DSN is pgseal's; the direct DSN is the auditor's. Every app test reaches the
database only through ``db``, a pool on ``app_database.app_dsn`` whose
connections record every parameter into a ``PlaintextLedger``; after each test
the direct connection is scanned for every plaintext that test sent, in every
configured column of every row.

bcrypt uses ``ROUNDS`` (4) here instead of the production 12.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import yaml

from app.access import Actor, Role
from app.accounts import create_business, create_user
from app.contacts import Contact, ContactDetails, ContactKind, add_contact
from app.schema import EncryptedStorage, migrate
from tests.app.plaintexts import RULES_PATH, SESSION_LEDGER, PlaintextLedger, scan_for_plaintext
from tests.conftest import PgServer
from tests.pgseal_process import REPO_ROOT, start_pgseal

ROUNDS = 4
PASSWORD = "s3cret-pass-phrase"


@dataclass(frozen=True)
class AppDatabase:
    app_dsn: str  # what the app connects to: pgseal (or Postgres for the baseline)
    direct_dsn: str  # the database itself: migrations, the auditor's scan
    through_pgseal: bool
    pgseal_log: Path | None = None  # pgseal's log (debug level in the tests)


@pytest.fixture(scope="package")
async def pgseal_app(
    pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AppDatabase]:
    """One bytea-schema database with pgseal in front, for the whole package.

    As a deployment would be: the app's migrations applied directly, the key
    store initialised (``pgseal keys init``), pgseal started (``pgseal serve``,
    a child process) with the root config.yaml's ``tables:`` section, a fresh
    master key in its environment, and the direct DSN as its service DSN.
    Tests share it (each makes its own businesses), which keeps the suite fast.
    """
    name = "app_" + secrets.token_hex(4)
    admin = await asyncpg.connect(pg_server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    direct = pg_server.dsn(name)
    await migrate(direct, storage=EncryptedStorage.BYTEA)
    init = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "keys", "init", "--dsn", direct,
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await init.communicate()
    assert init.returncode == 0, output.decode(errors="replace")
    document = yaml.safe_load(await asyncio.to_thread(RULES_PATH.read_text))
    tables = yaml.safe_dump({"tables": document["tables"]})
    proxy = await asyncio.to_thread(
        start_pgseal,
        tmp_path_factory.mktemp("pgseal-app"),
        f"postgresql://{pg_server.host}:{pg_server.port}/{name}",
        f"service_dsn: {direct}\nmaster_key: env:PGSEAL_APP_MK\n{tables}",
        {"PGSEAL_APP_MK": base64.b64encode(os.urandom(32)).decode()},
    )
    user = urlsplit(direct).username or "postgres"
    try:
        yield AppDatabase(
            proxy.dsn(user=user, database=name), direct, through_pgseal=True,
            pgseal_log=proxy.log_path,
        )  # fmt: skip
    finally:
        await asyncio.to_thread(proxy.stop)
        admin = await asyncpg.connect(pg_server.dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def app_database(pgseal_app: AppDatabase) -> AppDatabase:
    """THE place that decides what the app's tests run against: pgseal.

    For the direct-Postgres baseline, return instead a ``fresh_db`` migrated
    with ``EncryptedStorage.PLAINTEXT`` and ``through_pgseal=False``; nothing
    else in tests/app changes.
    """
    return pgseal_app


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
