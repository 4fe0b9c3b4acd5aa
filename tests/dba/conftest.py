"""Fixtures for the DBA tools: a database per test module, the pgseal CLI as a child.

Every command runs as ``python -m proxy ...`` (the real CLI, its exit status and
its output), against the session's real PostgreSQL; pgseal itself runs as a
child process when a test writes through it while a tool works.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PgServer
from tests.pgseal_process import REPO_ROOT

#: Every CLI output of this package and every master key it made, for the scan
#: in test_zz_outputs.py.
OUTPUTS: list[str] = []
MASTER_KEYS: list[str] = []


@dataclass
class DbaEnv:
    """One database, its key store, a master key and a config file."""

    server: PgServer
    database: str
    directory: Path
    master_key: str

    @property
    def dsn(self) -> str:
        return self.server.dsn(self.database)

    @property
    def upstream(self) -> str:
        return f"postgresql://{self.server.host}:{self.server.port}/{self.database}"

    @property
    def env(self) -> dict[str, str]:
        return {"PGSEAL_TEST_MK": self.master_key}

    def config(self, tables_yaml: str, name: str = "config.yaml") -> Path:
        path = self.directory / name
        path.write_text(
            f"upstream: {self.upstream}\nservice_dsn: {self.dsn}\n"
            f"master_key: env:PGSEAL_TEST_MK\n{tables_yaml}"
        )
        return path

    def run(
        self, *args: str | Path, check_status: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``pgseal ARGS`` as a child process; asserts the exit status if given."""
        done = subprocess.run(
            [sys.executable, "-m", "proxy", *map(str, args)],
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        OUTPUTS.append(done.stdout + done.stderr)
        if check_status is not None:
            assert done.returncode == check_status, (done.returncode, done.stdout, done.stderr)
        return done

    def popen(self, *args: str | Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "proxy", *map(str, args)],
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)

    async def execute(self, sql: str, *args: object) -> None:
        con = await self.connect()
        try:
            await con.execute(sql, *args)
        finally:
            await con.close()


def make_env(server: PgServer, directory: Path, prefix: str) -> DbaEnv:
    name = f"{prefix}_{secrets.token_hex(4)}"

    async def create() -> None:
        admin = await asyncpg.connect(server.dsn())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    asyncio.run(create())
    env = DbaEnv(server, name, directory, base64.b64encode(os.urandom(32)).decode())
    MASTER_KEYS.append(env.master_key)
    env.run("keys", "init", "--dsn", env.dsn, check_status=0)
    return env


def drop_env(env: DbaEnv) -> None:
    async def drop() -> None:
        admin = await asyncpg.connect(env.server.dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{env.database}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(drop())


@pytest.fixture(scope="module")
def dba(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbaEnv]:
    env = make_env(pg_server, tmp_path_factory.mktemp("dba"), "dba")
    try:
        yield env
    finally:
        drop_env(env)
