"""An encrypted database behind a running pgseal: the stack most integration tests need.

One table with a protected column, an initialised key store, and ``pgseal
serve`` in front with a fresh random master key, built the same way for the
operations tests, the fuzz run, the secrets scan and ``bench/fuzz``. The schema
and the column rules are parameters; the default is the operations table ``t``.
"""

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

#: ``t (id serial, business_id int, secret bytea)``, ``secret`` encrypted as text
#: per ``business_id``.
TABLE_SQL = "CREATE TABLE t (id serial, business_id int, secret bytea)"
TABLE_RULES = (
    "tables:\n  t:\n    tenant_column: business_id\n    columns:\n      secret: {type: text}\n"
)


@dataclass(frozen=True)
class EncryptedDatabase:
    proxy: PgsealProcess
    direct: str  # superuser DSN straight to the database (an auditor's view)
    name: str

    @property
    def user(self) -> str:
        return urlsplit(self.direct).username or "postgres"

    def dsn(self) -> str:
        return self.proxy.dsn(user=self.user, database=self.name)


async def encrypted_database(
    pg_server: PgServer,
    direct: str,
    workdir: Path,
    extra_yaml: str = "",
    args: tuple[str, ...] = (),
    *,
    table_sql: str = TABLE_SQL,
    rules: str = TABLE_RULES,
) -> EncryptedDatabase:
    """``table_sql`` and an initialised key store in ``direct`` (a ``fresh_db``), pgseal in front.

    ``extra_yaml`` adds top-level config keys (``metrics_listen``, ``limits``);
    ``args`` are more ``pgseal serve`` options; ``rules`` is the ``tables:``
    section. The caller stops ``proxy``.
    """
    name = urlsplit(direct).path.lstrip("/")
    db = await asyncpg.connect(direct)
    try:
        await db.execute(table_sql)
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
        f"service_dsn: {direct}\nmaster_key: env:MK\n{extra_yaml}{rules}",
        {"MK": base64.b64encode(os.urandom(32)).decode()},
        args=args,
    )
    return EncryptedDatabase(proxy, direct, name)
