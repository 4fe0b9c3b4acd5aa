"""How the service layer talks to Postgres: plain asyncpg, nothing else.

Service functions accept either a pool or a single connection (``Database``), so
the CLI and the benchmark pass a pool while a caller that wants several calls in
its own transaction passes a connection. ``transaction`` gives one connection
inside a transaction whichever was passed.

The DSN may point at Postgres or at pgseal; the app cannot tell and does not
care. The constraints pgseal imposes on SQL that touches encrypted columns are
listed in ``app/__init__.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = ["Connection", "Database", "connection", "open_pool", "transaction"]

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
Database: TypeAlias = "asyncpg.Pool[asyncpg.Record] | Connection"


async def open_pool(dsn: str, *, max_size: int = 10) -> asyncpg.Pool[asyncpg.Record]:
    """A pool for the app's DSN (Postgres or pgseal)."""
    return await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)


@asynccontextmanager
async def connection(db: Database) -> AsyncIterator[Connection]:
    """One connection for several statements (acquired from the pool if needed)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


@asynccontextmanager
async def transaction(db: Database) -> AsyncIterator[Connection]:
    """One connection inside a transaction (a savepoint if one is already open)."""
    async with connection(db) as conn, conn.transaction():
        yield conn
