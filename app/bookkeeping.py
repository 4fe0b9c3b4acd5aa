"""The day-to-day records: expenses, mileage logs and time entries.

What each record says (merchant, description, journey, purpose, work done) is
encrypted; the numbers the business adds up in SQL stay plaintext: expense
amounts and categories (totals per category), time-entry minutes (hours
worked). A journey's distance is encrypted too, as a ``numeric`` logical type:
it tells where someone went, and the app adds distances up in Python
(``MileageSummary``) instead of with ``SUM``.

Records belong to the user who logged them (``actor.user_id``); listing is
scoped to the business and filtered by plaintext dates in SQL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from app.access import Actor, Permission, require
from app.db import Database
from app.errors import InvalidInput, NotFound

__all__ = [
    "Expense",
    "MileageLog",
    "MileageSummary",
    "TimeEntry",
    "expense_totals_by_category",
    "list_expenses",
    "list_mileage",
    "list_time_entries",
    "log_expense",
    "log_mileage",
    "log_time",
    "mileage_summary",
    "minutes_worked",
]


@dataclass(frozen=True, slots=True)
class Expense:
    id: int
    user_id: int
    supplier_id: int | None
    spent_on: dt.date
    category: str
    amount: Decimal
    merchant: str
    description: str | None


@dataclass(frozen=True, slots=True)
class MileageLog:
    id: int
    user_id: int
    travelled_on: dt.date
    from_place: str
    to_place: str
    purpose: str | None
    distance_miles: Decimal


@dataclass(frozen=True, slots=True)
class MileageSummary:
    journeys: int
    total_miles: Decimal


@dataclass(frozen=True, slots=True)
class TimeEntry:
    id: int
    user_id: int
    customer_id: int | None
    worked_on: dt.date
    description: str
    duration_minutes: int
    billable: bool


_FAR_PAST = dt.date(1900, 1, 1)
_FAR_FUTURE = dt.date(9999, 12, 31)


def _expense(r: asyncpg.Record) -> Expense:
    return Expense(
        r["id"],
        r["user_id"],
        r["supplier_id"],
        r["spent_on"],
        r["category"],
        r["amount"],
        r["merchant"],
        r["description"],
    )


_EXPENSE_COLUMNS = "id, user_id, supplier_id, spent_on, category, amount, merchant, description"


async def log_expense(
    db: Database,
    actor: Actor,
    *,
    merchant: str,
    amount: Decimal,
    category: str,
    spent_on: dt.date | None = None,
    description: str | None = None,
    supplier_id: int | None = None,
) -> Expense:
    require(actor, Permission.LOG_WORK)
    if amount <= 0:
        raise InvalidInput(f"an expense must be positive, not {amount}")
    if not merchant.strip() or not category.strip():
        raise InvalidInput("an expense needs a merchant and a category")
    if supplier_id is not None:
        found = await db.fetchval(
            "SELECT id FROM suppliers WHERE business_id = $1 AND id = $2",
            actor.business_id,
            supplier_id,
        )
        if found is None:
            raise NotFound("supplier", supplier_id)
    row = await db.fetchrow(
        "INSERT INTO expenses (business_id, user_id, supplier_id, spent_on, category, amount,"
        f" merchant, description) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        f" RETURNING {_EXPENSE_COLUMNS}",
        actor.business_id,
        actor.user_id,
        supplier_id,
        spent_on or dt.date.today(),
        category.strip().lower(),
        amount,
        merchant,
        description,
    )
    assert row is not None
    return _expense(row)


async def list_expenses(
    db: Database, actor: Actor, *, since: dt.date | None = None, until: dt.date | None = None
) -> list[Expense]:
    """Expenses between two dates (inclusive), oldest first."""
    require(actor, Permission.READ_WORK)
    rows = await db.fetch(
        f"SELECT {_EXPENSE_COLUMNS} FROM expenses"
        " WHERE business_id = $1 AND spent_on BETWEEN $2 AND $3 ORDER BY spent_on, id",
        actor.business_id,
        since or _FAR_PAST,
        until or _FAR_FUTURE,
    )
    return [_expense(r) for r in rows]


async def expense_totals_by_category(db: Database, actor: Actor) -> dict[str, Decimal]:
    """Total spent per category, computed by Postgres over the plaintext amounts."""
    require(actor, Permission.READ_REPORTS)
    rows = await db.fetch(
        "SELECT category, SUM(amount) AS total FROM expenses WHERE business_id = $1"
        " GROUP BY category ORDER BY category",
        actor.business_id,
    )
    return {r["category"]: r["total"] for r in rows}


_MILEAGE_COLUMNS = "id, user_id, travelled_on, from_place, to_place, purpose, distance_miles"


def _mileage(r: asyncpg.Record) -> MileageLog:
    return MileageLog(
        r["id"],
        r["user_id"],
        r["travelled_on"],
        r["from_place"],
        r["to_place"],
        r["purpose"],
        r["distance_miles"],
    )


async def log_mileage(
    db: Database,
    actor: Actor,
    *,
    from_place: str,
    to_place: str,
    distance_miles: Decimal,
    travelled_on: dt.date | None = None,
    purpose: str | None = None,
) -> MileageLog:
    require(actor, Permission.LOG_WORK)
    if distance_miles <= 0:
        raise InvalidInput(f"a journey must be longer than {distance_miles} miles")
    row = await db.fetchrow(
        "INSERT INTO mileage_logs (business_id, user_id, travelled_on, from_place, to_place,"
        f" purpose, distance_miles) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        f" RETURNING {_MILEAGE_COLUMNS}",
        actor.business_id,
        actor.user_id,
        travelled_on or dt.date.today(),
        from_place,
        to_place,
        purpose,
        distance_miles,
    )
    assert row is not None
    return _mileage(row)


async def list_mileage(
    db: Database, actor: Actor, *, since: dt.date | None = None, until: dt.date | None = None
) -> list[MileageLog]:
    require(actor, Permission.READ_WORK)
    rows = await db.fetch(
        f"SELECT {_MILEAGE_COLUMNS} FROM mileage_logs"
        " WHERE business_id = $1 AND travelled_on BETWEEN $2 AND $3 ORDER BY travelled_on, id",
        actor.business_id,
        since or _FAR_PAST,
        until or _FAR_FUTURE,
    )
    return [_mileage(r) for r in rows]


async def mileage_summary(
    db: Database, actor: Actor, *, since: dt.date | None = None, until: dt.date | None = None
) -> MileageSummary:
    """Journeys and miles, added up in Python because distances are ciphertext in SQL."""
    logs = await list_mileage(db, actor, since=since, until=until)
    return MileageSummary(len(logs), sum((m.distance_miles for m in logs), Decimal(0)))


_TIME_COLUMNS = "id, user_id, customer_id, worked_on, description, duration_minutes, billable"


def _time_entry(r: asyncpg.Record) -> TimeEntry:
    return TimeEntry(
        r["id"],
        r["user_id"],
        r["customer_id"],
        r["worked_on"],
        r["description"],
        r["duration_minutes"],
        r["billable"],
    )


async def log_time(
    db: Database,
    actor: Actor,
    *,
    description: str,
    duration_minutes: int,
    worked_on: dt.date | None = None,
    customer_id: int | None = None,
    billable: bool = True,
) -> TimeEntry:
    require(actor, Permission.LOG_WORK)
    if duration_minutes <= 0:
        raise InvalidInput(f"a time entry must last longer than {duration_minutes} minutes")
    if customer_id is not None:
        found = await db.fetchval(
            "SELECT id FROM customers WHERE business_id = $1 AND id = $2",
            actor.business_id,
            customer_id,
        )
        if found is None:
            raise NotFound("customer", customer_id)
    row = await db.fetchrow(
        "INSERT INTO time_entries (business_id, user_id, customer_id, worked_on, description,"
        f" duration_minutes, billable) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        f" RETURNING {_TIME_COLUMNS}",
        actor.business_id,
        actor.user_id,
        customer_id,
        worked_on or dt.date.today(),
        description,
        duration_minutes,
        billable,
    )
    assert row is not None
    return _time_entry(row)


async def list_time_entries(
    db: Database, actor: Actor, *, since: dt.date | None = None, until: dt.date | None = None
) -> list[TimeEntry]:
    require(actor, Permission.READ_WORK)
    rows = await db.fetch(
        f"SELECT {_TIME_COLUMNS} FROM time_entries"
        " WHERE business_id = $1 AND worked_on BETWEEN $2 AND $3 ORDER BY worked_on, id",
        actor.business_id,
        since or _FAR_PAST,
        until or _FAR_FUTURE,
    )
    return [_time_entry(r) for r in rows]


async def minutes_worked(
    db: Database, actor: Actor, *, billable_only: bool = False
) -> dict[int, int]:
    """Minutes worked per user, summed by Postgres over the plaintext durations."""
    require(actor, Permission.READ_WORK)
    rows = await db.fetch(
        "SELECT user_id, SUM(duration_minutes) AS minutes FROM time_entries"
        " WHERE business_id = $1 AND (billable OR NOT $2) GROUP BY user_id ORDER BY user_id",
        actor.business_id,
        billable_only,
    )
    return {r["user_id"]: int(r["minutes"]) for r in rows}
