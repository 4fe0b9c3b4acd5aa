"""The business's own bank accounts and the payment instructions on its invoices.

Every bank detail (account name, bank, account number, sort code, IBAN,
SWIFT/BIC) is an encrypted column, and reading them needs
``Permission.READ_BANK_DETAILS``: staff never see them. Payment instructions
are the customer-facing text printed on every invoice, so everyone who issues
invoices may read them; only those who manage bank details may change them.

IBANs and BICs are stored without spaces, in capitals; sort codes as
``12-34-56``. Nothing here is searchable: the app never looks a bank account
up by its number.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from app.access import Actor, Permission, require
from app.db import Database, transaction
from app.errors import InvalidInput, NotFound

__all__ = [
    "BankAccount",
    "BankDetails",
    "PaymentInstructions",
    "add_bank_account",
    "get_payment_instructions",
    "list_bank_accounts",
    "set_payment_instructions",
]


@dataclass(frozen=True, slots=True)
class BankDetails:
    """A bank account as entered."""

    account_name: str
    bank_name: str | None = None
    account_number: str | None = None
    sort_code: str | None = None
    iban: str | None = None
    swift_bic: str | None = None


@dataclass(frozen=True, slots=True)
class BankAccount:
    id: int
    account_name: str
    bank_name: str | None
    account_number: str | None
    sort_code: str | None
    iban: str | None
    swift_bic: str | None
    currency: str
    is_primary: bool


@dataclass(frozen=True, slots=True)
class PaymentInstructions:
    instructions: str
    bank_account_id: int | None
    updated_at: dt.datetime


def _compact(value: str | None) -> str | None:
    return None if value is None else "".join(value.split()).upper()


def _sort_code(value: str | None) -> str | None:
    if value is None:
        return None
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) != 6:
        raise InvalidInput(f"a sort code has six digits: {value!r}")
    return f"{digits[0:2]}-{digits[2:4]}-{digits[4:6]}"


_ACCOUNT_COLUMNS = (
    "id, account_name, bank_name, account_number, sort_code, iban, swift_bic, currency, is_primary"
)


def _account(r: asyncpg.Record) -> BankAccount:
    return BankAccount(
        r["id"],
        r["account_name"],
        r["bank_name"],
        r["account_number"],
        r["sort_code"],
        r["iban"],
        r["swift_bic"],
        r["currency"],
        r["is_primary"],
    )


async def add_bank_account(
    db: Database,
    actor: Actor,
    details: BankDetails,
    *,
    currency: str = "GBP",
    primary: bool = False,
) -> BankAccount:
    """Add a bank account; a new primary account demotes the previous one."""
    require(actor, Permission.MANAGE_BANK_DETAILS)
    if not details.account_name.strip():
        raise InvalidInput("a bank account needs an account name")
    if not (details.account_number or details.iban):
        raise InvalidInput("a bank account needs an account number or an IBAN")
    async with transaction(db) as conn:
        if primary:
            await conn.execute(
                "UPDATE bank_accounts SET is_primary = false WHERE business_id = $1",
                actor.business_id,
            )
        row = await conn.fetchrow(
            "INSERT INTO bank_accounts (business_id, account_name, bank_name, account_number,"
            " sort_code, iban, swift_bic, currency, is_primary)"
            f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_ACCOUNT_COLUMNS}",
            actor.business_id,
            details.account_name,
            details.bank_name,
            _compact(details.account_number),
            _sort_code(details.sort_code),
            _compact(details.iban),
            _compact(details.swift_bic),
            currency,
            primary,
        )
    assert row is not None
    return _account(row)


async def list_bank_accounts(db: Database, actor: Actor) -> list[BankAccount]:
    """The business's bank accounts, primary first (``is_primary`` is plaintext)."""
    require(actor, Permission.READ_BANK_DETAILS)
    rows = await db.fetch(
        f"SELECT {_ACCOUNT_COLUMNS} FROM bank_accounts WHERE business_id = $1"
        " ORDER BY is_primary DESC, id",
        actor.business_id,
    )
    return [_account(r) for r in rows]


async def set_payment_instructions(
    db: Database, actor: Actor, instructions: str, *, bank_account_id: int | None = None
) -> PaymentInstructions:
    """Set (or replace) the text that tells customers how to pay."""
    require(actor, Permission.MANAGE_BANK_DETAILS)
    if not instructions.strip():
        raise InvalidInput("payment instructions cannot be empty")
    async with transaction(db) as conn:
        if bank_account_id is not None:
            found = await conn.fetchval(
                "SELECT id FROM bank_accounts WHERE business_id = $1 AND id = $2",
                actor.business_id,
                bank_account_id,
            )
            if found is None:
                raise NotFound("bank account", bank_account_id)
        # UPDATE, then INSERT if there was nothing to update: plain statements
        # whose every encrypted value is a parameter (no ON CONFLICT ... EXCLUDED).
        row = await conn.fetchrow(
            "UPDATE payment_instructions SET instructions = $2, bank_account_id = $3,"
            " updated_at = now() WHERE business_id = $1"
            " RETURNING instructions, bank_account_id, updated_at",
            actor.business_id,
            instructions,
            bank_account_id,
        )
        if row is None:
            row = await conn.fetchrow(
                "INSERT INTO payment_instructions (business_id, instructions, bank_account_id)"
                " VALUES ($1, $2, $3) RETURNING instructions, bank_account_id, updated_at",
                actor.business_id,
                instructions,
                bank_account_id,
            )
    assert row is not None
    return PaymentInstructions(row["instructions"], row["bank_account_id"], row["updated_at"])


async def get_payment_instructions(db: Database, actor: Actor) -> PaymentInstructions | None:
    """The instructions printed on invoices (readable by whoever issues invoices)."""
    require(actor, Permission.READ_BILLING)
    row = await db.fetchrow(
        "SELECT instructions, bank_account_id, updated_at FROM payment_instructions"
        " WHERE business_id = $1",
        actor.business_id,
    )
    if row is None:
        return None
    return PaymentInstructions(row["instructions"], row["bank_account_id"], row["updated_at"])
