"""A pass-through pgseal (no encrypted tables) in front of the shared test server."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from proxy.embedded import find_binaries
from tests.conftest import PgServer
from tests.pgseal_process import PgsealProcess, start_pgseal


@dataclass(frozen=True)
class Relay:
    """pgseal relaying to ``pg_server``; a database of the module's own."""

    proxy: PgsealProcess
    server: PgServer
    database: str
    user: str

    def dsn(self, **params: str) -> str:
        return self.proxy.dsn(user=self.user, database=self.database, **params)

    def conninfo(self, **params: str) -> str:
        parts = [
            f"host={self.proxy.host}",
            f"port={self.proxy.port}",
            f"user={self.user}",
            f"dbname={self.database}",
        ]
        parts += [f"{k}={v}" for k, v in params.items()]
        return " ".join(parts)

    @property
    def direct_dsn(self) -> str:
        return self.server.dsn(self.database)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PGHOST": self.proxy.host,
            "PGPORT": str(self.proxy.port),
            "PGUSER": self.user,
            "PGDATABASE": self.database,
        }


def binary(name: str) -> str:
    return str(find_binaries().bin_dir / name)


@pytest.fixture(scope="module")
def relay(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    name = "clients_" + secrets.token_hex(4)
    user = urlsplit(pg_server.base_dsn).username or "postgres"
    subprocess.run(
        [binary("psql"), pg_server.base_dsn, "-X", "-qc", f'CREATE DATABASE "{name}"'],
        check=True,
        capture_output=True,
    )
    proxy = start_pgseal(
        tmp_path_factory.mktemp("relay"),
        f"postgresql://{pg_server.host}:{pg_server.port}/{name}",
        "limits: {max_message_size: 10485760}\n",
    )
    try:
        yield Relay(proxy, pg_server, name, user)
    finally:
        proxy.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
