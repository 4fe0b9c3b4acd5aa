"""Customers and suppliers: the business's contacts, all of their details encrypted.

Both tables have the same columns, so one set of functions serves both, chosen
by ``ContactKind``. Company name, contact name, email, phone, address, tax id and
VAT number are encrypted columns; email, tax id and VAT number are also
searchable by exact match.

Search is equality only, always next to ``business_id = $1``: pgseal turns
``email = $2`` into a blind-index comparison. To make it case-insensitive the app
stores and searches a canonical form (``canonical_email``, ``canonical_tax_id``),
so the same query also works on the plaintext baseline schema; pgseal's
``normalize: [trim, casefold]`` does the same for the index itself. Lists are
sorted by company name in Python: Postgres only sees ciphertext.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from app.access import Actor, Permission, require
from app.accounts import canonical_email
from app.db import Database
from app.errors import InvalidInput, NotFound

__all__ = [
    "Contact",
    "ContactDetails",
    "ContactKind",
    "add_contact",
    "canonical_tax_id",
    "find_contacts",
    "find_contacts_by_emails",
    "get_contact",
    "list_contacts",
    "update_contact",
]


class ContactKind(StrEnum):
    """Which contact table; the value is the table name."""

    CUSTOMER = "customers"
    SUPPLIER = "suppliers"

    @property
    def singular(self) -> str:
        return self.value[:-1]


@dataclass(frozen=True, slots=True)
class ContactDetails:
    """What the user types in for a new customer or supplier."""

    company_name: str
    contact_name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    tax_id: str | None = None
    vat_number: str | None = None


@dataclass(frozen=True, slots=True)
class Contact:
    id: int
    business_id: int
    kind: ContactKind
    company_name: str
    contact_name: str | None
    email: str | None
    phone: str | None
    address: str | None
    tax_id: str | None
    vat_number: str | None
    created_at: dt.datetime


#: Columns a user may change, in INSERT order.
_DETAIL_COLUMNS = (
    "company_name",
    "contact_name",
    "email",
    "phone",
    "address",
    "tax_id",
    "vat_number",
)
_SEARCHABLE = ("email", "tax_id", "vat_number")
_SELECT = "id, business_id, " + ", ".join(_DETAIL_COLUMNS) + ", created_at"


def canonical_tax_id(value: str) -> str:
    """The stored and searched form of a tax id or VAT number: no spaces, upper case.

    >>> canonical_tax_id(" gb 123 4567 89 ")
    'GB123456789'
    """
    canonical = "".join(value.split()).upper()
    if not canonical:
        raise InvalidInput("empty tax id")
    return canonical


def _canonical(column: str, value: str | None) -> str | None:
    if value is None:
        return None
    if column == "email":
        return canonical_email(value)
    if column in ("tax_id", "vat_number"):
        return canonical_tax_id(value)
    if column == "company_name" and not value.strip():
        raise InvalidInput("a contact needs a company name")
    return value


def _contact(kind: ContactKind, row: asyncpg.Record) -> Contact:
    return Contact(
        id=row["id"],
        business_id=row["business_id"],
        kind=kind,
        company_name=row["company_name"],
        contact_name=row["contact_name"],
        email=row["email"],
        phone=row["phone"],
        address=row["address"],
        tax_id=row["tax_id"],
        vat_number=row["vat_number"],
        created_at=row["created_at"],
    )


def _by_company_name(contacts: Sequence[Contact]) -> list[Contact]:
    return sorted(contacts, key=lambda c: (c.company_name.casefold(), c.id))


async def add_contact(
    db: Database, actor: Actor, kind: ContactKind, details: ContactDetails
) -> Contact:
    """Add a customer or supplier to the actor's business."""
    require(actor, Permission.MANAGE_CONTACTS)
    values = [_canonical(c, getattr(details, c)) for c in _DETAIL_COLUMNS]
    placeholders = ", ".join(f"${i}" for i in range(2, len(_DETAIL_COLUMNS) + 2))
    row = await db.fetchrow(
        f"INSERT INTO {kind.value} (business_id, {', '.join(_DETAIL_COLUMNS)})"
        f" VALUES ($1, {placeholders}) RETURNING {_SELECT}",
        actor.business_id,
        *values,
    )
    assert row is not None
    return _contact(kind, row)


async def get_contact(db: Database, actor: Actor, kind: ContactKind, contact_id: int) -> Contact:
    require(actor, Permission.READ_CONTACTS)
    row = await db.fetchrow(
        f"SELECT {_SELECT} FROM {kind.value} WHERE business_id = $1 AND id = $2",
        actor.business_id,
        contact_id,
    )
    if row is None:
        raise NotFound(kind.singular, contact_id)
    return _contact(kind, row)


async def list_contacts(db: Database, actor: Actor, kind: ContactKind) -> list[Contact]:
    """All customers (or suppliers) of the business, sorted by company name."""
    require(actor, Permission.READ_CONTACTS)
    rows = await db.fetch(
        f"SELECT {_SELECT} FROM {kind.value} WHERE business_id = $1", actor.business_id
    )
    return _by_company_name([_contact(kind, r) for r in rows])


async def find_contacts(
    db: Database,
    actor: Actor,
    kind: ContactKind,
    *,
    email: str | None = None,
    tax_id: str | None = None,
    vat_number: str | None = None,
) -> list[Contact]:
    """Contacts whose email, tax id or VAT number equals the given one (exactly one).

    Case and surrounding spaces do not matter; substrings do not match (an
    encrypted column supports equality only).
    """
    require(actor, Permission.READ_CONTACTS)
    given = {"email": email, "tax_id": tax_id, "vat_number": vat_number}
    criteria = [(column, value) for column, value in given.items() if value is not None]
    if len(criteria) != 1:
        raise InvalidInput("search by exactly one of email, tax_id, vat_number")
    column, value = criteria[0]
    rows = await db.fetch(
        f"SELECT {_SELECT} FROM {kind.value} WHERE business_id = $1 AND {column} = $2",
        actor.business_id,
        _canonical(column, value),
    )
    return _by_company_name([_contact(kind, r) for r in rows])


async def find_contacts_by_emails(
    db: Database, actor: Actor, kind: ContactKind, emails: Sequence[str]
) -> list[Contact]:
    """Contacts whose email is any of ``emails`` (one query, ``= ANY($2)``)."""
    require(actor, Permission.READ_CONTACTS)
    wanted = sorted({canonical_email(e) for e in emails})
    if not wanted:
        return []
    rows = await db.fetch(
        f"SELECT {_SELECT} FROM {kind.value} WHERE business_id = $1 AND email = ANY($2)",
        actor.business_id,
        wanted,
    )
    return _by_company_name([_contact(kind, r) for r in rows])


async def update_contact(
    db: Database,
    actor: Actor,
    kind: ContactKind,
    contact_id: int,
    **changes: str | None,
) -> Contact:
    """Change some details of a contact (keyword names are ``ContactDetails`` fields)."""
    require(actor, Permission.MANAGE_CONTACTS)
    unknown = set(changes) - set(_DETAIL_COLUMNS)
    if unknown or not changes:
        raise InvalidInput(f"cannot change {sorted(unknown) or 'nothing'}")
    columns = [c for c in _DETAIL_COLUMNS if c in changes]  # fixed order: one plan per set
    assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, start=3))
    row = await db.fetchrow(
        f"UPDATE {kind.value} SET {assignments} WHERE business_id = $1 AND id = $2"
        f" RETURNING {_SELECT}",
        actor.business_id,
        contact_id,
        *(_canonical(c, changes[c]) for c in columns),
    )
    if row is None:
        raise NotFound(kind.singular, contact_id)
    return _contact(kind, row)
