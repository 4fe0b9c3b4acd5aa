"""A short protocol fuzz run against a live pgseal with an encrypted table.

Every mutated session must end in an error, a close or ordinary answers within a
time bound; pgseal must keep running and keep serving a healthy client; and no
plaintext of the protected column may ever be stored. ``bench/fuzz`` runs the
same engine for minutes.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

from tests.conftest import PgServer
from tests.fuzz.engine import (
    MARKER,
    SYNC,
    Target,
    _bind,
    _execute,
    _parse,
    fuzz,
    healthy_query,
    run_case,
)
from tests.stacks import encrypted_database

CASES = int(os.environ.get("PGSEAL_FUZZ_CASES", "600"))


async def test_mutated_sessions_never_crash_hang_or_leak(
    pg_server: PgServer, fresh_db: str, tmp_path: Path
) -> None:
    encrypted = await encrypted_database(
        pg_server, fresh_db, tmp_path, "limits: {max_message_size: 1048576}\n"
    )
    proxy = encrypted.proxy
    try:
        target = Target("127.0.0.1", proxy.port, encrypted.user, encrypted.name)
        stats = await fuzz(target, "t", CASES, seed=20261124)
        assert stats.failures == []
        assert stats.cases == CASES
        # Mutations reach every kind of ending, so the run exercised something;
        # some cases ran on a connection an earlier case left idle, and the
        # healthy client was answered while the cases ran, not only at the end.
        assert stats.outcomes.get("error", 0) > 0
        assert stats.outcomes.get("closed", 0) > 0
        assert stats.reused > 0
        assert stats.healthy_queries > 0
        assert proxy.process is not None
        assert proxy.process.poll() is None
        raw = await asyncpg.connect(encrypted.direct)
        try:
            rows = await raw.fetch("SELECT secret FROM t WHERE secret IS NOT NULL")
            assert all(r["secret"][0] == 1 for r in rows)
            assert MARKER.encode() not in b"".join(r["secret"] for r in rows)
        finally:
            await raw.close()
        log = proxy.log_text()
        assert "Traceback" not in log
        assert "internal error" not in log
    finally:
        proxy.stop()


async def test_parameter_zero_is_no_parameter(
    pg_server: PgServer, fresh_db: str, tmp_path: Path
) -> None:
    """Regression (bench/fuzz found it: a bit flip turns ``$1`` into ``$0``): pgseal
    read a tenant column's ``$0`` as parameter index -1, took the last parameter
    as the business and failed with an IndexError (an internal error, the
    connection closed). Parse, Bind and Execute go in one pipeline, as the
    fuzzer sent them, so pgseal binds before Postgres answers the Parse."""
    encrypted = await encrypted_database(pg_server, fresh_db, tmp_path)
    proxy = encrypted.proxy
    try:
        target = Target("127.0.0.1", proxy.port, encrypted.user, encrypted.name)
        sql = "INSERT INTO t (business_id, secret) VALUES ($0, $2)"
        payload = _parse("", sql) + _bind("", "", [b"1", MARKER.encode()]) + _execute() + SYNC
        result = await run_case(target, payload)
        assert result.outcome == "error"
        assert await healthy_query(target)
        raw = await asyncpg.connect(encrypted.direct)
        try:
            assert await raw.fetchval("SELECT count(*) FROM t") == 0
        finally:
            await raw.close()
        assert "internal error" not in proxy.log_text()
    finally:
        proxy.stop()
