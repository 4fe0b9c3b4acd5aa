"""The plaintext ledger and the leak scan the ``db`` fixture runs after every test."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal

import asyncpg

from app.bookkeeping import log_mileage
from app.contacts import Contact, ContactKind, add_contact
from app.schema import EncryptedStorage, migrate
from tests.app.conftest import ACME, Team, make_team
from tests.app.plaintexts import (
    SESSION_LEDGER,
    PlaintextLedger,
    scan_for_plaintext,
    written_plaintexts,
)


async def test_ledger_records_every_parameter_the_app_sent(
    db: asyncpg.Pool[asyncpg.Record], team: Team, customer: Contact, ledger: PlaintextLedger
) -> None:
    await log_mileage(
        db, team.owner, from_place="Cardiff Bay", to_place="Swansea", distance_miles=Decimal("41.7")
    )
    await asyncio.sleep(0)  # loggers run via call_soon
    for value in ("wile.coyote@acme-widgets.example", ACME.address, "Cardiff Bay", "41.7"):
        assert value in ledger.values
    assert ledger.values <= written_plaintexts() == SESSION_LEDGER.values


async def test_scan_finds_plaintext_on_the_baseline_schema(fresh_db: str) -> None:
    """Without pgseal (plaintext schema, the app straight on Postgres) the scan finds it all.

    This is how the scan the ``db`` fixture runs after every test proves it can fail.
    """
    await migrate(fresh_db, storage=EncryptedStorage.PLAINTEXT)
    ledger = PlaintextLedger()
    pool = await asyncpg.create_pool(fresh_db, min_size=1, max_size=1, init=ledger.attach)
    try:
        team = await make_team(pool, "Heron Electrical Ltd", "heron-electrical.example")
        await add_contact(pool, team.owner, ContactKind.CUSTOMER, ACME)
    finally:
        await pool.close()
    await asyncio.sleep(0)
    leaks = await scan_for_plaintext(fresh_db, ledger.values)
    found = {(leak.table, leak.column, leak.value) for leak in leaks}
    assert ("public.customers", "email", "wile.coyote@acme-widgets.example") in found
    assert ("public.customers", "address", ACME.address) in found
    assert ("public.users", "email", "owner@heron-electrical.example") in found


async def test_scan_on_bytea_columns(fresh_db: str) -> None:
    """Raw envelopes pass; plaintext bytes, whole or embedded, are caught."""
    await migrate(fresh_db)
    conn = await asyncpg.connect(fresh_db)
    try:
        business = await conn.fetchval("INSERT INTO businesses (name) VALUES ('B') RETURNING id")
        rows = [
            (b"\x01" + os.urandom(60), b"\x01" + os.urandom(40)),  # ciphertext-like
            (b"prefix:secret-company-name:suffix", b"\x01" + os.urandom(40)),  # embedded
            (b"\x01" + os.urandom(60), b"0123"),  # a short value stored as is
        ]
        for company, phone in rows:
            await conn.execute(
                "INSERT INTO customers (business_id, company_name, phone) VALUES ($1, $2, $3)",
                business,
                company,
                phone,
            )
    finally:
        await conn.close()
    leaks = await scan_for_plaintext(fresh_db, {"secret-company-name", "0123", "012"})
    assert sorted((leak.column, leak.row_id, leak.value) for leak in leaks) == [
        ("company_name", 2, "secret-company-name"),
        ("phone", 3, "0123"),  # exact match; "012" is too short to hunt as a substring
    ]
