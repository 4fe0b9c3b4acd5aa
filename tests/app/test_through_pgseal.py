"""What pgseal adds under the app: envelopes on disk, per-business keys, refusals.

The rest of tests/app checks that the app works unchanged through pgseal (and the
``db`` fixture that no plaintext reached the disk); these tests look at the same
data from the auditor's side, over a direct connection, and try the things pgseal
must refuse: SQL it cannot run on ciphertext (0A000) and reading another
business's values in a session pinned to one business (42501).
"""

from __future__ import annotations

import asyncpg
import pytest

from app.contacts import Contact, ContactKind, find_contacts, get_contact
from tests.app.conftest import ACME, AppDatabase, Team
from tests.app.plaintexts import encrypted_columns

ENVELOPE_V1 = 0x01
ENVELOPE_MIN = 1 + 8 + 12 + 16  # version, key id, nonce, GCM tag
BLIND_INDEX_SIZE = 16  # HMAC-SHA256 truncated to 128 bits (crypto.blind_index default)


def key_id_of(envelope: bytes) -> int:
    """The key id of an envelope (DESIGN.md, envelope v1: bytes 1-8, big-endian)."""
    assert envelope[0] == ENVELOPE_V1, envelope[:9].hex()
    assert len(envelope) >= ENVELOPE_MIN, len(envelope)
    return int.from_bytes(envelope[1:9], "big")


async def data_keys(direct_dsn: str, business_id: int) -> set[int]:
    conn = await asyncpg.connect(direct_dsn)
    try:
        rows = await conn.fetch(
            "SELECT key_id FROM pgseal.keys WHERE tenant = $1 AND kind = 'data'",
            str(business_id),
        )
    finally:
        await conn.close()
    return {r["key_id"] for r in rows}


async def raw_customer(direct_dsn: str, customer_id: int) -> asyncpg.Record:
    conn = await asyncpg.connect(direct_dsn)
    try:
        row = await conn.fetchrow("SELECT * FROM customers WHERE id = $1", customer_id)
    finally:
        await conn.close()
    assert row is not None
    return row


def test_the_app_suite_runs_through_pgseal(app_database: AppDatabase) -> None:
    assert app_database.through_pgseal
    assert app_database.app_dsn != app_database.direct_dsn


async def test_app_reads_plaintext_auditor_reads_envelopes(
    db: asyncpg.Pool[asyncpg.Record], app_database: AppDatabase, team: Team, customer: Contact
) -> None:
    seen = await get_contact(db, team.owner, ContactKind.CUSTOMER, customer.id)
    assert seen.company_name == ACME.company_name
    assert seen.address == ACME.address
    assert seen.email == "wile.coyote@acme-widgets.example"

    raw = await raw_customer(app_database.direct_dsn, customer.id)
    keys = await data_keys(app_database.direct_dsn, team.business_id)
    assert keys, "no data key was created for the business"
    for column, spec in encrypted_columns()["public.customers"].items():
        value = raw[column]
        assert isinstance(value, bytes), column
        assert key_id_of(value) in keys, column
        if "searchable" in spec:
            index = raw[spec["searchable"]]
            assert isinstance(index, bytes), column
            assert len(index) == BLIND_INDEX_SIZE, column


async def test_each_business_has_its_own_key(
    db: asyncpg.Pool[asyncpg.Record],
    app_database: AppDatabase,
    team: Team,
    other_team: Team,
    customer: Contact,
) -> None:
    from app.contacts import add_contact

    theirs = await add_contact(db, other_team.owner, ContactKind.CUSTOMER, ACME)
    ours_raw = await raw_customer(app_database.direct_dsn, customer.id)
    theirs_raw = await raw_customer(app_database.direct_dsn, theirs.id)
    assert key_id_of(ours_raw["email"]) != key_id_of(theirs_raw["email"])
    assert not (
        await data_keys(app_database.direct_dsn, team.business_id)
        & await data_keys(app_database.direct_dsn, other_team.business_id)
    )
    # The same email under two businesses' index keys: no cross-business linkage.
    assert ours_raw["email_bidx"] != theirs_raw["email_bidx"]
    # Equality search finds each business's own row only.
    found = await find_contacts(db, other_team.owner, ContactKind.CUSTOMER, email=ACME.email)
    assert [c.id for c in found] == [theirs.id]


async def test_sql_pgseal_cannot_run_on_ciphertext_is_refused(
    app_database: AppDatabase, team: Team, customer: Contact
) -> None:
    conn = await asyncpg.connect(app_database.app_dsn)
    try:
        for sql, operation in (
            ("SELECT id FROM customers WHERE business_id = $1 ORDER BY email", "ORDER BY"),
            ("SELECT id FROM customers WHERE business_id = $1 AND email LIKE 'w%'", "LIKE"),
            ("SELECT id FROM customers WHERE business_id = $1 AND phone = '0'", "phone"),
        ):
            with pytest.raises(asyncpg.FeatureNotSupportedError) as caught:
                await conn.fetch(sql, team.business_id)
            assert caught.value.sqlstate == "0A000"
            message = str(caught.value)
            assert operation in message, message
            assert str(ACME.email) not in message
            assert str(ACME.phone) not in message
        # The connection stays usable.
        count = await conn.fetchval(
            "SELECT count(*) FROM customers WHERE business_id = $1", team.business_id
        )
        assert count == 1
    finally:
        await conn.close()


async def test_session_pinned_to_one_business_cannot_read_another(
    app_database: AppDatabase, team: Team, other_team: Team, customer: Contact
) -> None:
    conn = await asyncpg.connect(app_database.app_dsn)
    try:
        await conn.execute(f"SET pgseal.tenant = '{other_team.business_id}'")
        with pytest.raises(asyncpg.PostgresError) as caught:
            await conn.fetch("SELECT company_name FROM customers WHERE id = $1", customer.id)
        assert caught.value.sqlstate == "42501"
        assert ACME.company_name not in str(caught.value)
        await conn.execute(f"SET pgseal.tenant = '{team.business_id}'")
        name = await conn.fetchval("SELECT company_name FROM customers WHERE id = $1", customer.id)
        assert name == ACME.company_name
    finally:
        await conn.close()
