"""Bank accounts, payment instructions and integration credentials."""

from __future__ import annotations

import asyncpg
import pytest

from app.banking import (
    BankDetails,
    add_bank_account,
    get_payment_instructions,
    list_bank_accounts,
    set_payment_instructions,
)
from app.errors import InvalidInput, NotFound
from app.integrations import (
    get_credential,
    list_integrations,
    store_oauth_refresh_token,
    store_stripe_key,
)
from tests.app.conftest import Team

HSBC = BankDetails(
    account_name="Heron Electrical Ltd",
    bank_name="HSBC UK",
    account_number="3141 5926",
    sort_code="40 11 62",
    iban="gb29 hbuk 4011 6231 4159 26",
    swift_bic="hbukgb4b",
)
STRIPE_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


async def test_bank_accounts(db: asyncpg.Pool[asyncpg.Record], team: Team) -> None:
    first = await add_bank_account(db, team.owner, HSBC, primary=True)
    assert (first.account_number, first.sort_code, first.iban, first.swift_bic) == (
        "31415926",
        "40-11-62",
        "GB29HBUK40116231415926",
        "HBUKGB4B",
    )
    assert first.is_primary
    assert first.currency == "GBP"
    euro = await add_bank_account(
        db,
        team.accountant,
        BankDetails("Heron EUR", iban="DE89 3704 0044 0532 0130 00"),
        currency="EUR",
        primary=True,
    )
    accounts = await list_bank_accounts(db, team.accountant)
    assert [(a.id, a.is_primary) for a in accounts] == [(euro.id, True), (first.id, False)]
    assert accounts[1].bank_name == "HSBC UK"
    with pytest.raises(InvalidInput, match="six digits"):
        await add_bank_account(db, team.owner, BankDetails("X", account_number="1", sort_code="1"))
    with pytest.raises(InvalidInput, match="account number or an IBAN"):
        await add_bank_account(db, team.owner, BankDetails("X"))


async def test_payment_instructions(db: asyncpg.Pool[asyncpg.Record], team: Team) -> None:
    assert await get_payment_instructions(db, team.staff) is None
    account = await add_bank_account(db, team.owner, HSBC)
    text = "Pay Heron Electrical Ltd, 40-11-62 31415926, ref: invoice number"
    first = await set_payment_instructions(db, team.owner, text, bank_account_id=account.id)
    assert (first.instructions, first.bank_account_id) == (text, account.id)
    replaced = await set_payment_instructions(db, team.accountant, "Pay by card online")
    assert (replaced.instructions, replaced.bank_account_id) == ("Pay by card online", None)
    read = await get_payment_instructions(db, team.staff)  # staff print it on invoices
    assert read is not None
    assert read.instructions == "Pay by card online"
    count = "SELECT count(*) FROM payment_instructions WHERE business_id = $1"
    assert await db.fetchval(count, team.business_id) == 1
    with pytest.raises(NotFound, match="bank account"):
        await set_payment_instructions(db, team.owner, text, bank_account_id=account.id + 9)
    with pytest.raises(InvalidInput):
        await set_payment_instructions(db, team.owner, "  ")


async def test_stripe_key_and_oauth_tokens(db: asyncpg.Pool[asyncpg.Record], team: Team) -> None:
    status = await store_stripe_key(db, team.owner, f" {STRIPE_KEY} ")
    assert (status.provider, status.has_api_key, status.has_refresh_token) == (
        "stripe",
        True,
        False,
    )
    stored = await get_credential(db, team.accountant, "stripe")
    assert stored.api_key == STRIPE_KEY
    assert stored.oauth_refresh_token is None
    assert STRIPE_KEY not in repr(stored)
    rotated = "rk_live_" + "Z" * 24
    await store_stripe_key(db, team.owner, rotated)
    assert (await get_credential(db, team.owner, "stripe")).api_key == rotated
    await store_oauth_refresh_token(db, team.owner, "xero", "1//0gRefreshTokenForXero")
    await store_oauth_refresh_token(db, team.owner, "xero", "1//0gRotatedRefreshToken")
    xero = await get_credential(db, team.owner, "xero")
    assert (xero.api_key, xero.oauth_refresh_token) == (None, "1//0gRotatedRefreshToken")
    listed = await list_integrations(db, team.accountant)
    assert [(i.provider, i.has_api_key, i.has_refresh_token) for i in listed] == [
        ("stripe", True, False),
        ("xero", False, True),
    ]
    for bad in ("pk_test_public", "sk_test_short", ""):
        with pytest.raises(InvalidInput):
            await store_stripe_key(db, team.owner, bad)
    with pytest.raises(InvalidInput):
        await store_oauth_refresh_token(db, team.owner, "Bad Provider!", "x")
    with pytest.raises(InvalidInput):
        await store_oauth_refresh_token(db, team.owner, "xero", " ")
    with pytest.raises(NotFound):
        await get_credential(db, team.owner, "quickbooks")


async def test_bank_and_secrets_are_scoped_by_business(
    db: asyncpg.Pool[asyncpg.Record], team: Team, other_team: Team
) -> None:
    await add_bank_account(db, team.owner, HSBC)
    await set_payment_instructions(db, team.owner, "Pay us")
    await store_stripe_key(db, team.owner, STRIPE_KEY)
    assert await list_bank_accounts(db, other_team.owner) == []
    assert await get_payment_instructions(db, other_team.owner) is None
    assert await list_integrations(db, other_team.owner) == []
    with pytest.raises(NotFound):
        await get_credential(db, other_team.owner, "stripe")
