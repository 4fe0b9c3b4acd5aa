"""Businesses, their users, and logging in.

A business is the tenant: every other row carries its id. Creating one also
creates its first owner, in one transaction, and returns that owner as an
``Actor`` so the caller can go on acting for the business.

Users' email, name, password hash and TOTP secret are encrypted columns. Login
looks the user up by email with a plain ``email = $2`` next to
``business_id = $1`` (pgseal answers it from the blind index); the email is
canonicalised (trimmed, lower-cased) both when stored and when searched, so the
same query works on the plaintext baseline schema. Listing users sorts by name
in Python, because Postgres cannot sort ciphertext.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from app.access import Actor, Permission, Role, require
from app.auth import (
    DEFAULT_BCRYPT_ROUNDS,
    check_password,
    check_totp,
    hash_password,
    new_totp_secret,
)
from app.db import Database, connection, transaction
from app.errors import AuthenticationFailed, DuplicateUser, InvalidInput, NotFound

__all__ = [
    "Business",
    "User",
    "authenticate",
    "canonical_email",
    "change_role",
    "create_business",
    "create_user",
    "enable_totp",
    "get_business",
    "get_user",
    "list_users",
    "owner_actor",
]


@dataclass(frozen=True, slots=True)
class Business:
    id: int
    name: str
    currency: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class User:
    id: int
    business_id: int
    email: str
    full_name: str
    role: Role
    has_totp: bool

    @property
    def actor(self) -> Actor:
        return Actor(self.business_id, self.id, self.role)


def canonical_email(email: str) -> str:
    """The stored and searched form of an email: trimmed and case-folded.

    >>> canonical_email("  Ada.Lovelace@Example.COM ")
    'ada.lovelace@example.com'
    """
    canonical = email.strip().casefold()
    if "@" not in canonical or canonical.startswith("@") or canonical.endswith("@"):
        raise InvalidInput(f"not an email address: {email!r}")
    return canonical


_USER_COLUMNS = "id, business_id, email, full_name, role, totp_secret IS NOT NULL AS has_totp"


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        business_id=row["business_id"],
        email=row["email"],
        full_name=row["full_name"],
        role=Role(row["role"]),
        has_totp=row["has_totp"],
    )


async def create_business(
    db: Database,
    *,
    name: str,
    owner_email: str,
    owner_name: str,
    owner_password: str,
    currency: str = "GBP",
    rounds: int = DEFAULT_BCRYPT_ROUNDS,
) -> tuple[Business, Actor]:
    """A new business and its owner, in one transaction; returns the owner's actor."""
    if not name.strip():
        raise InvalidInput("a business needs a name")
    email = canonical_email(owner_email)
    password_hash = hash_password(owner_password, rounds=rounds)  # slow: outside the txn
    async with transaction(db) as conn:
        row = await conn.fetchrow(
            "INSERT INTO businesses (name, currency) VALUES ($1, $2)"
            " RETURNING id, name, currency, created_at",
            name.strip(),
            currency,
        )
        assert row is not None
        business = Business(row["id"], row["name"], row["currency"], row["created_at"])
        user_id = await conn.fetchval(
            "INSERT INTO users (business_id, email, full_name, password_hash, role)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            business.id,
            email,
            owner_name,
            password_hash,
            Role.OWNER.value,
        )
    return business, Actor(business.id, user_id, Role.OWNER)


async def get_business(db: Database, actor: Actor) -> Business:
    row = await db.fetchrow(
        "SELECT id, name, currency, created_at FROM businesses WHERE id = $1",
        actor.business_id,
    )
    if row is None:
        raise NotFound("business", actor.business_id)
    return Business(row["id"], row["name"], row["currency"], row["created_at"])


async def create_user(
    db: Database,
    actor: Actor,
    *,
    email: str,
    full_name: str,
    role: Role,
    password: str,
    rounds: int = DEFAULT_BCRYPT_ROUNDS,
) -> User:
    """Add a user to the actor's business (owner only)."""
    require(actor, Permission.MANAGE_USERS)
    email = canonical_email(email)
    password_hash = hash_password(password, rounds=rounds)
    async with transaction(db) as conn:
        # No unique index can see through ciphertext on the baseline schema, so
        # the check is here; the blind index makes it an indexed lookup.
        exists = await conn.fetchval(
            "SELECT id FROM users WHERE business_id = $1 AND email = $2",
            actor.business_id,
            email,
        )
        if exists is not None:
            raise DuplicateUser()
        row = await conn.fetchrow(
            "INSERT INTO users (business_id, email, full_name, password_hash, role)"
            f" VALUES ($1, $2, $3, $4, $5) RETURNING {_USER_COLUMNS}",
            actor.business_id,
            email,
            full_name,
            password_hash,
            role.value,
        )
    assert row is not None
    return _user(row)


async def get_user(db: Database, actor: Actor, user_id: int) -> User:
    """One user of the actor's business (anyone may read their own record)."""
    if user_id != actor.user_id:
        require(actor, Permission.READ_USERS)
    row = await db.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users WHERE business_id = $1 AND id = $2",
        actor.business_id,
        user_id,
    )
    if row is None:
        raise NotFound("user", user_id)
    return _user(row)


async def list_users(db: Database, actor: Actor) -> list[User]:
    """The business's users, sorted by name (in Python: names are ciphertext)."""
    require(actor, Permission.READ_USERS)
    rows = await db.fetch(
        f"SELECT {_USER_COLUMNS} FROM users WHERE business_id = $1", actor.business_id
    )
    return sorted((_user(r) for r in rows), key=lambda u: (u.full_name.casefold(), u.id))


async def change_role(db: Database, actor: Actor, user_id: int, role: Role) -> User:
    """Give a user another role (owner only); the last owner cannot be demoted."""
    require(actor, Permission.MANAGE_USERS)
    async with transaction(db) as conn:
        # Lock the business's owners so two concurrent demotions cannot both pass.
        owners = await conn.fetch(
            "SELECT id FROM users WHERE business_id = $1 AND role = 'owner' FOR UPDATE",
            actor.business_id,
        )
        owner_ids = {r["id"] for r in owners}
        if role is not Role.OWNER and owner_ids == {user_id}:
            raise InvalidInput("a business must keep at least one owner")
        row = await conn.fetchrow(
            f"UPDATE users SET role = $3 WHERE business_id = $1 AND id = $2"
            f" RETURNING {_USER_COLUMNS}",
            actor.business_id,
            user_id,
            role.value,
        )
    if row is None:
        raise NotFound("user", user_id)
    return _user(row)


async def enable_totp(db: Database, actor: Actor, user_id: int) -> str:
    """Give a user a new TOTP secret and return it (to show once, as a QR code).

    Users may enrol themselves; enrolling someone else is user management.
    """
    if user_id != actor.user_id:
        require(actor, Permission.MANAGE_USERS)
    secret = new_totp_secret()
    status = await db.execute(
        "UPDATE users SET totp_secret = $3 WHERE business_id = $1 AND id = $2",
        actor.business_id,
        user_id,
        secret,
    )
    if status != "UPDATE 1":
        raise NotFound("user", user_id)
    return secret


async def authenticate(
    db: Database,
    business_id: int,
    email: str,
    password: str,
    totp_code: str | None = None,
    *,
    at: dt.datetime | None = None,
) -> Actor:
    """The actor for a correct email + password (+ TOTP code if the user enrolled).

    Every failure raises the same ``AuthenticationFailed``; an unknown email
    still costs one bcrypt check so timing does not reveal which part was wrong.
    """
    try:
        canonical = canonical_email(email)
    except InvalidInput:
        raise AuthenticationFailed() from None
    async with connection(db) as conn:
        row = await conn.fetchrow(
            "SELECT id, role, password_hash, totp_secret FROM users"
            " WHERE business_id = $1 AND email = $2",
            business_id,
            canonical,
        )
    if not check_password(password, None if row is None else row["password_hash"]):
        raise AuthenticationFailed()
    assert row is not None
    secret: str | None = row["totp_secret"]
    if secret is not None and (totp_code is None or not check_totp(secret, totp_code, at=at)):
        raise AuthenticationFailed()
    return Actor(business_id, row["id"], Role(row["role"]))


async def owner_actor(db: Database, business_id: int) -> Actor:
    """Act as the business's first owner, for trusted operator tools only.

    The CLI's ``report`` and the seed run on the operator's machine with the
    database's credentials, so they need no login; everything reachable from a
    user goes through ``authenticate`` instead.
    """
    user_id = await db.fetchval(
        "SELECT id FROM users WHERE business_id = $1 AND role = $2 ORDER BY id LIMIT 1",
        business_id,
        Role.OWNER.value,
    )
    if user_id is None:
        raise NotFound("business", business_id)
    return Actor(business_id, user_id, Role.OWNER)
