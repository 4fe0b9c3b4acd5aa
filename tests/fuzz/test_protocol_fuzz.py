"""A short protocol fuzz run against a live pgseal with an encrypted table.

Every mutated session must end in an error, a close or ordinary answers within a
time bound; pgseal must keep running and keep serving a healthy client; and no
plaintext of the protected column may ever be stored. ``bench/fuzz`` runs the
same engine for minutes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from tests.conftest import PgServer
from tests.fuzz.engine import MARKER, Target, fuzz
from tests.pgseal_process import REPO_ROOT, start_pgseal

CASES = int(os.environ.get("PGSEAL_FUZZ_CASES", "600"))


async def test_mutated_sessions_never_crash_hang_or_leak(
    pg_server: PgServer, tmp_path: Path
) -> None:
    name = "fuzz_" + secrets.token_hex(4)
    admin = await asyncpg.connect(pg_server.dsn())
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    direct = pg_server.dsn(name)
    db = await asyncpg.connect(direct)
    await db.execute("CREATE TABLE fz (id serial, business_id int, secret bytea)")
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
        tmp_path,
        f"postgresql://{pg_server.host}:{pg_server.port}/{name}",
        f"service_dsn: {direct}\nmaster_key: env:MK\n"
        "limits: {max_message_size: 1048576}\n"
        "tables:\n  fz:\n    tenant_column: business_id\n    columns:\n"
        "      secret: {type: text}\n",
        {"MK": base64.b64encode(os.urandom(32)).decode()},
    )
    try:
        user = urlsplit(direct).username or "postgres"
        target = Target("127.0.0.1", proxy.port, user, name)
        stats = await fuzz(target, "fz", CASES, seed=20261124)
        assert stats.failures == []
        assert stats.cases == CASES
        # Mutations reach every kind of ending, so the run exercised something.
        assert stats.outcomes.get("error", 0) > 0
        assert stats.outcomes.get("closed", 0) > 0
        assert proxy.process is not None
        assert proxy.process.poll() is None
        raw = await asyncpg.connect(direct)
        try:
            rows = await raw.fetch("SELECT secret FROM fz WHERE secret IS NOT NULL")
            assert all(r["secret"][0] == 1 for r in rows)
            assert MARKER.encode() not in b"".join(r["secret"] for r in rows)
        finally:
            await raw.close()
        log = proxy.log_text()
        assert "Traceback" not in log
        assert "internal error" not in log
    finally:
        proxy.stop()
