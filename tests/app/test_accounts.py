"""Businesses, users, passwords, TOTP and login."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pyotp
import pytest

from app.access import Actor, Role
from app.accounts import (
    authenticate,
    canonical_email,
    change_role,
    create_business,
    create_user,
    enable_totp,
    get_business,
    get_user,
    list_users,
)
from app.auth import check_password, check_totp, hash_password, totp_provisioning_uri
from app.errors import AuthenticationFailed, DuplicateUser, InvalidInput, NotFound
from tests.app.conftest import PASSWORD, ROUNDS, Team


def test_hash_password_uses_the_given_work_factor() -> None:
    hashed = hash_password("hunter2-but-longer", rounds=ROUNDS)
    assert hashed.startswith("$2b$04$")
    assert check_password("hunter2-but-longer", hashed)
    assert not check_password("hunter3-but-longer", hashed)
    assert not check_password("anything", None)  # unknown user: decoy check, False
    with pytest.raises(ValueError, match="empty"):
        hash_password("", rounds=ROUNDS)


def test_totp_codes() -> None:
    secret = pyotp.random_base32()
    at = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
    code = pyotp.TOTP(secret).at(at)
    assert check_totp(secret, code, at=at)
    assert check_totp(secret, code[:3] + " " + code[3:], at=at)
    assert check_totp(secret, code, at=at + dt.timedelta(seconds=30))  # one step of drift
    assert not check_totp(secret, code, at=at + dt.timedelta(minutes=5))
    assert not check_totp(secret, "abcdef", at=at)
    uri = totp_provisioning_uri(secret, account="a@b.example", issuer="Invoicing")
    assert uri.startswith("otpauth://totp/")
    assert secret in uri


def test_canonical_email() -> None:
    assert canonical_email("  Ada@Example.COM ") == "ada@example.com"
    for bad in ("", "no-at-sign", "@x.example", "x@"):
        with pytest.raises(InvalidInput):
            canonical_email(bad)


async def test_create_business_makes_an_owner(db: asyncpg.Pool[asyncpg.Record]) -> None:
    business, owner = await create_business(
        db,
        name="  Quarry Garage  ",
        owner_email="Mo@Quarry-Garage.example",
        owner_name="Mo Farah",
        owner_password=PASSWORD,
        currency="EUR",
        rounds=ROUNDS,
    )
    assert (business.name, business.currency) == ("Quarry Garage", "EUR")
    assert owner.role is Role.OWNER
    assert owner.business_id == business.id
    assert await get_business(db, owner) == business
    me = await get_user(db, owner, owner.user_id)
    assert (me.email, me.full_name, me.role, me.has_totp) == (
        "mo@quarry-garage.example",
        "Mo Farah",
        Role.OWNER,
        False,
    )
    with pytest.raises(InvalidInput):
        await create_business(
            db,
            name=" ",
            owner_email="x@y.example",
            owner_name="X",
            owner_password=PASSWORD,
            rounds=ROUNDS,
        )


async def test_users_list_sorted_and_no_duplicates(
    db: asyncpg.Pool[asyncpg.Record], team: Team
) -> None:
    users = await list_users(db, team.owner)
    assert [u.full_name for u in users] == sorted(u.full_name for u in users)
    assert {u.role for u in users} == set(Role)
    with pytest.raises(DuplicateUser):
        await create_user(
            db,
            team.owner,
            email="  STAFF@heron-electrical.example",
            full_name="Dup",
            role=Role.STAFF,
            password=PASSWORD,
            rounds=ROUNDS,
        )
    with pytest.raises(NotFound):
        await get_user(db, team.owner, 10_000)


async def test_same_email_in_two_businesses_is_two_users(
    db: asyncpg.Pool[asyncpg.Record], team: Team, other_team: Team
) -> None:
    shared = "freelancer@shared.example"
    for t in (team, other_team):
        await create_user(
            db,
            t.owner,
            email=shared,
            full_name="Fran Freelancer",
            role=Role.STAFF,
            password=PASSWORD + t.business_id * "!",
            rounds=ROUNDS,
        )
    first = await authenticate(db, team.business_id, shared, PASSWORD + team.business_id * "!")
    assert first.business_id == team.business_id
    with pytest.raises(AuthenticationFailed):  # the other business's password
        await authenticate(db, team.business_id, shared, PASSWORD + other_team.business_id * "!")


async def test_change_role_keeps_one_owner(db: asyncpg.Pool[asyncpg.Record], team: Team) -> None:
    promoted = await change_role(db, team.owner, team.staff.user_id, Role.ACCOUNTANT)
    assert promoted.role is Role.ACCOUNTANT
    assert (await get_user(db, team.owner, team.staff.user_id)).role is Role.ACCOUNTANT
    with pytest.raises(InvalidInput, match="at least one owner"):
        await change_role(db, team.owner, team.owner.user_id, Role.STAFF)
    await change_role(db, team.owner, team.accountant.user_id, Role.OWNER)
    demoted = await change_role(db, team.owner, team.owner.user_id, Role.STAFF)
    assert demoted.role is Role.STAFF
    new_owner = Actor(team.business_id, team.accountant.user_id, Role.OWNER)
    with pytest.raises(NotFound):
        await change_role(db, new_owner, 9999, Role.STAFF)


async def test_authenticate_password_only(db: asyncpg.Pool[asyncpg.Record], team: Team) -> None:
    actor = await authenticate(db, team.business_id, " Staff@Heron-Electrical.example", PASSWORD)
    assert actor == team.staff
    for email, password in (
        ("staff@heron-electrical.example", "wrong password"),
        ("nobody@heron-electrical.example", PASSWORD),
        ("not an email", PASSWORD),
    ):
        with pytest.raises(AuthenticationFailed):
            await authenticate(db, team.business_id, email, password)


async def test_authenticate_with_totp(db: asyncpg.Pool[asyncpg.Record], team: Team) -> None:
    secret = await enable_totp(db, team.accountant, team.accountant.user_id)
    assert (await get_user(db, team.owner, team.accountant.user_id)).has_totp
    email = "accounts@heron-electrical.example"
    now = dt.datetime.now(dt.UTC)
    code = pyotp.TOTP(secret).at(now)
    actor = await authenticate(db, team.business_id, email, PASSWORD, code, at=now)
    assert actor == team.accountant
    with pytest.raises(AuthenticationFailed):  # code required once enrolled
        await authenticate(db, team.business_id, email, PASSWORD)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with pytest.raises(AuthenticationFailed):
        await authenticate(db, team.business_id, email, PASSWORD, wrong, at=now)
    with pytest.raises(AuthenticationFailed):  # a right code does not rescue a wrong password
        await authenticate(db, team.business_id, email, "nope", code, at=now)


async def test_owner_enrols_someone_else(db: asyncpg.Pool[asyncpg.Record], team: Team) -> None:
    secret = await enable_totp(db, team.owner, team.staff.user_id)
    assert len(secret) == 32
    with pytest.raises(NotFound):
        await enable_totp(db, team.owner, 424242)
