"""Secrets for third-party services: Stripe API keys and OAuth refresh tokens.

One row per (business, provider); ``api_key`` and ``oauth_refresh_token`` are
encrypted columns. Reading a secret needs ``Permission.READ_CREDENTIALS``
(owner and accountant); storing or replacing one needs
``Permission.MANAGE_CREDENTIALS`` (owner only). ``list_integrations`` tells
anyone who reads credentials which providers are connected without returning
the secrets themselves.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from app.access import Actor, Permission, require
from app.db import Database, transaction
from app.errors import InvalidInput, NotFound

__all__ = [
    "IntegrationCredential",
    "IntegrationStatus",
    "get_credential",
    "list_integrations",
    "store_oauth_refresh_token",
    "store_stripe_key",
]

_STRIPE_KEY = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]{16,}$")
_PROVIDER = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")


@dataclass(frozen=True, slots=True, repr=False)
class IntegrationCredential:
    provider: str
    api_key: str | None
    oauth_refresh_token: str | None
    updated_at: dt.datetime

    def __repr__(self) -> str:
        # Secrets stay out of logs and tracebacks even in the app's own output.
        return f"IntegrationCredential(provider={self.provider!r}, secrets=<hidden>)"


@dataclass(frozen=True, slots=True)
class IntegrationStatus:
    provider: str
    has_api_key: bool
    has_refresh_token: bool
    updated_at: dt.datetime


async def _store(
    db: Database, actor: Actor, provider: str, column: str, secret: str
) -> IntegrationStatus:
    require(actor, Permission.MANAGE_CREDENTIALS)
    async with transaction(db) as conn:
        # UPDATE first, INSERT if absent: every encrypted value stays a parameter.
        row = await conn.fetchrow(
            f"UPDATE integration_credentials SET {column} = $3, updated_at = now()"
            " WHERE business_id = $1 AND provider = $2"
            " RETURNING provider, api_key IS NOT NULL AS has_api_key,"
            " oauth_refresh_token IS NOT NULL AS has_refresh_token, updated_at",
            actor.business_id,
            provider,
            secret,
        )
        if row is None:
            row = await conn.fetchrow(
                f"INSERT INTO integration_credentials (business_id, provider, {column})"
                " VALUES ($1, $2, $3)"
                " RETURNING provider, api_key IS NOT NULL AS has_api_key,"
                " oauth_refresh_token IS NOT NULL AS has_refresh_token, updated_at",
                actor.business_id,
                provider,
                secret,
            )
    assert row is not None
    return IntegrationStatus(
        row["provider"], row["has_api_key"], row["has_refresh_token"], row["updated_at"]
    )


async def store_stripe_key(db: Database, actor: Actor, api_key: str) -> IntegrationStatus:
    """Store (or replace) the business's Stripe secret or restricted key."""
    api_key = api_key.strip()
    if not _STRIPE_KEY.match(api_key):
        raise InvalidInput("not a Stripe secret key (sk_live_..., sk_test_..., rk_...)")
    return await _store(db, actor, "stripe", "api_key", api_key)


async def store_oauth_refresh_token(
    db: Database, actor: Actor, provider: str, refresh_token: str
) -> IntegrationStatus:
    """Store (or replace) an OAuth refresh token for ``provider`` (e.g. ``xero``)."""
    if not _PROVIDER.match(provider):
        raise InvalidInput(f"not a provider name: {provider!r}")
    if not refresh_token.strip():
        raise InvalidInput("empty refresh token")
    return await _store(db, actor, provider, "oauth_refresh_token", refresh_token.strip())


async def get_credential(db: Database, actor: Actor, provider: str) -> IntegrationCredential:
    """The secrets stored for one provider."""
    require(actor, Permission.READ_CREDENTIALS)
    row = await db.fetchrow(
        "SELECT provider, api_key, oauth_refresh_token, updated_at FROM integration_credentials"
        " WHERE business_id = $1 AND provider = $2",
        actor.business_id,
        provider,
    )
    if row is None:
        raise NotFound("integration", provider)
    return IntegrationCredential(
        row["provider"], row["api_key"], row["oauth_refresh_token"], row["updated_at"]
    )


async def list_integrations(db: Database, actor: Actor) -> list[IntegrationStatus]:
    """Which providers are connected (no secrets in the result)."""
    require(actor, Permission.READ_CREDENTIALS)
    rows = await db.fetch(
        "SELECT provider, api_key IS NOT NULL AS has_api_key,"
        " oauth_refresh_token IS NOT NULL AS has_refresh_token, updated_at"
        " FROM integration_credentials WHERE business_id = $1 ORDER BY provider",
        actor.business_id,
    )
    return [
        IntegrationStatus(r["provider"], r["has_api_key"], r["has_refresh_token"], r["updated_at"])
        for r in rows
    ]
