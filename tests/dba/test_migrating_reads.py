"""Reads through pgseal accept plaintext in a column marked ``migrating: true``, and only then."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from crypto.envelope import is_armored, is_envelope
from tests.dba.conftest import DbaEnv
from tests.pgseal_process import start_pgseal

TABLES = """
tables:
  legacy:
    tenant_column: business_id
    columns:
      secret: {type: text, migrating: true}
      memo: {type: text, storage: text, migrating: true}
"""


async def test_plaintext_reads_only_while_migrating(dba: DbaEnv, tmp_path: Path) -> None:
    await dba.execute(
        "CREATE TABLE legacy (id int PRIMARY KEY, business_id int, secret bytea, memo text);"
        "INSERT INTO legacy VALUES (1, 1, convert_to('old secret é', 'UTF8'), 'old memo')"
    )
    extra = f"service_dsn: {dba.dsn}\nmaster_key: env:PGSEAL_TEST_MK\n"
    proxy = start_pgseal(tmp_path / "a", dba.upstream, extra + TABLES, env=dba.env)
    try:
        app = await asyncpg.connect(proxy.dsn(database=dba.database))
        try:
            await app.execute(
                "INSERT INTO legacy (id, business_id, secret, memo) VALUES ($1, $2, $3, $4)",
                2,
                1,
                "new secret",
                "new memo",
            )
            rows = await app.fetch("SELECT id, secret, memo FROM legacy ORDER BY id")
            assert [tuple(r) for r in rows] == [
                (1, "old secret é", "old memo"),
                (2, "new secret", "new memo"),
            ]
        finally:
            await app.close()
    finally:
        proxy.stop()
    con = await dba.connect()
    try:
        raw = {r["id"]: r for r in await con.fetch("SELECT * FROM legacy")}
    finally:
        await con.close()
    assert not is_envelope(raw[1]["secret"])
    assert is_envelope(raw[2]["secret"])
    assert is_armored(raw[2]["memo"])

    # The same rules without migrating: the plaintext row is refused, by name.
    proxy = start_pgseal(
        tmp_path / "b", dba.upstream, extra + TABLES.replace(", migrating: true", ""), env=dba.env
    )
    try:
        app = await asyncpg.connect(proxy.dsn(database=dba.database))
        try:
            assert await app.fetchval("SELECT secret FROM legacy WHERE id = 2") == "new secret"
            with pytest.raises(asyncpg.PostgresError) as refused:
                await app.fetchval("SELECT secret FROM legacy WHERE id = 1")
            assert refused.value.sqlstate == "XX001"
            assert "public.legacy.secret" in str(refused.value)
            assert "old secret" not in str(refused.value)
            with pytest.raises(asyncpg.PostgresError, match=r"public\.legacy\.memo"):
                await app.fetchval("SELECT memo FROM legacy WHERE id = 1")
            assert await app.fetchval("SELECT 1") == 1  # the connection stays usable
        finally:
            await app.close()
    finally:
        proxy.stop()
