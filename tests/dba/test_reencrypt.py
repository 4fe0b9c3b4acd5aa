"""``pgseal reencrypt`` after ``pgseal keys rotate``, on real Postgres."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.dba.conftest import DbaEnv

SCHEMA = """
CREATE TABLE invoices (
    business_id integer NOT NULL,
    number integer NOT NULL,
    payer text,
    payer_bidx bytea,
    memo text,
    PRIMARY KEY (business_id, number)
);
INSERT INTO invoices (business_id, number, payer, memo)
SELECT 1 + i % 2, i, 'Payer ' || i, CASE WHEN i % 4 = 0 THEN NULL ELSE 'memo ' || i END
FROM generate_series(1, 800) AS i;
"""

TABLES = """
tables:
  invoices:
    tenant_column: business_id
    columns:
      payer: {type: text, searchable: payer_bidx, migrating: true}
      memo: {type: text, storage: text, migrating: true}
"""


def _versions(env: DbaEnv, config: Any) -> dict[str, int]:
    done = env.run("audit", "--config", config, "--json", "--master-key", "env:PGSEAL_TEST_MK")
    report = json.loads(done.stdout)
    assert all(c["tampered"] == 0 for c in report["columns"])
    assert all(c["authenticated"] == c["envelopes"] for c in report["columns"])
    counts: dict[str, int] = {}
    for column in report["columns"]:
        for version, n in column["by_key_version"].items():
            counts[version] = counts.get(version, 0) + n
    return counts


async def test_reencrypt_moves_rows_to_the_current_key(dba: DbaEnv) -> None:
    await dba.execute(SCHEMA)
    con = await dba.connect()
    try:
        before = [tuple(r) for r in await con.fetch("SELECT * FROM invoices ORDER BY 1, 2")]
    finally:
        await con.close()
    config = dba.config(TABLES, name="invoices.yaml")
    dba.run("migrate", "--config", config, check_status=0)
    one, two = 400 + 200, 400 + 400  # business 1 has the even numbers, memo NULL every 4th
    assert _versions(dba, config) == {"1/v1": one, "2/v1": two}
    bidx_before = await _bidx(dba)

    dba.run(
        "keys", "rotate", "--tenant", "1", "--dsn", dba.dsn, "--master-key", "env:PGSEAL_TEST_MK",
        check_status=0,
    )  # fmt: skip
    dry = dba.run("reencrypt", "--config", config, "--dry-run", check_status=0)
    assert f"would have re-encrypted {one} value(s) in 400 of 800 row(s)" in dry.stdout
    assert _versions(dba, config) == {"1/v1": one, "2/v1": two}

    done = dba.run(
        "reencrypt", "--config", config, "--batch-size", "150", "--progress", check_status=0
    )
    # The progress bar (stderr): the table, rows done of the total, rows/s and an ETA.
    assert re.search(r"public\.invoices .*800/800 rows [\d,]+ rows/s .*ETA", done.stderr), (
        done.stderr
    )
    assert f"re-encrypted {one} value(s) in 400 of 800 row(s)" in done.stdout
    # The closing table: the retired version holds no value any more.
    assert re.search(r"│ 1 +│ 1 +│ retired +│ 0 +│", done.stdout), done.stdout
    assert re.search(r"│ 1 +│ 2 +│ active +│ 600 +│", done.stdout), done.stdout
    assert _versions(dba, config) == {"1/v2": one, "2/v1": two}
    assert await _bidx(dba) == bidx_before  # blind indexes survive the rotation

    again = dba.run("reencrypt", "--config", config, check_status=0)
    assert "re-encrypted 0 value(s)" in again.stdout

    # Every value is what it was: decrypt everything back and compare.
    dba.run("migrate", "--config", config, "--reverse", check_status=0)
    con = await dba.connect()
    try:
        after = [tuple(r) for r in await con.fetch("SELECT * FROM invoices ORDER BY 1, 2")]
    finally:
        await con.close()
    assert [(r[0], r[1], r[4]) for r in after] == [(r[0], r[1], r[4]) for r in before]
    assert [r[2] for r in after] == [f"Payer {r[1]}".encode() for r in before]


async def _bidx(env: DbaEnv) -> list[bytes]:
    con = await env.connect()
    try:
        return [
            r[0]
            for r in await con.fetch("SELECT payer_bidx FROM invoices ORDER BY business_id, number")
        ]
    finally:
        await con.close()
