"""An encrypted database behind a running pgseal, for the operations tests."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from tests.conftest import PgServer
from tests.pgseal_process import REPO_ROOT, PgsealProcess, start_pgseal

#: One protected table: ``t (id serial, business_id int, secret bytea)``,
#: ``secret`` encrypted as text per ``business_id``.
TABLE_RULES = (
    "tables:\n  t:\n    tenant_column: business_id\n    columns:\n      secret: {type: text}\n"
)


@dataclass(frozen=True)
class EncryptedDatabase:
    proxy: PgsealProcess
    direct: str  # superuser DSN straight to the database (an auditor's view)
    name: str

    def dsn(self) -> str:
        user = urlsplit(self.direct).username or "postgres"
        return self.proxy.dsn(user=user, database=self.name)


async def encrypted_database(
    pg_server: PgServer,
    direct: str,
    workdir: Path,
    extra_yaml: str = "",
    args: tuple[str, ...] = (),
) -> EncryptedDatabase:
    """Table ``t`` and an initialised key store in ``direct`` (a ``fresh_db``), pgseal in front.

    ``extra_yaml`` adds top-level config keys (``metrics_listen``, ``key_cache``);
    ``args`` are more ``pgseal serve`` options. The caller stops ``proxy``.
    """
    name = urlsplit(direct).path.lstrip("/")
    db = await asyncpg.connect(direct)
    try:
        await db.execute("CREATE TABLE t (id serial, business_id int, secret bytea)")
    finally:
        await db.close()
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "proxy", "keys", "init", "--dsn", direct],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    proxy = await asyncio.to_thread(
        start_pgseal,
        workdir,
        f"postgresql://{pg_server.host}:{pg_server.port}/{name}",
        f"service_dsn: {direct}\nmaster_key: env:MK\n{extra_yaml}{TABLE_RULES}",
        {"MK": base64.b64encode(os.urandom(32)).decode()},
        args=args,
    )
    return EncryptedDatabase(proxy, direct, name)
