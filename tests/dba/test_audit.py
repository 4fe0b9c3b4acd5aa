"""``pgseal audit`` on real Postgres: a clean report, then every kind of finding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crypto.envelope import dearmor, is_envelope
from tests.dba.conftest import DbaEnv

SCHEMA = """
CREATE TABLE accounts (
    id integer PRIMARY KEY,
    business_id integer NOT NULL,
    iban text,
    email text,
    phone_number text
);
INSERT INTO accounts
SELECT i, 1 + i % 3,
       CASE WHEN i % 11 = 0 THEN NULL ELSE 'DE89-3704-' || lpad(i::text, 6, '0') END,
       'user' || i || '@example.org', '+1-202-' || i
FROM generate_series(1, 300) AS i;
"""

MIGRATING = """
tables:
  accounts:
    tenant_column: business_id
    columns:
      iban: {type: text, migrating: true}
      email: {type: text, storage: text, migrating: true}
"""

#: The same rules once the migration is over: the guards are then required.
FINAL = MIGRATING.replace(", migrating: true", "")

PLAINTEXT = "DE89-3704-INJECTED"


def _audit(env: DbaEnv, *extra: str, status: int | None) -> dict[str, Any]:
    config = env.directory / "final.yaml"
    done = env.run("audit", "--config", config, "--json", *extra, check_status=status)
    assert PLAINTEXT not in done.stdout + done.stderr
    assert "DE89-3704-0" not in done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _column(report: dict[str, Any], name: str) -> dict[str, Any]:
    (column,) = [c for c in report["columns"] if c["column"] == name]
    assert isinstance(column, dict)
    return column


@pytest.fixture(scope="module")
def migrated(dba: DbaEnv) -> DbaEnv:
    import asyncio

    asyncio.run(dba.execute(SCHEMA))
    config = dba.config(MIGRATING, name="migrating.yaml")
    dba.run("migrate", "--config", config, check_status=0)
    dba.config(FINAL, name="final.yaml")
    return dba


def test_clean_audit(migrated: DbaEnv) -> None:
    report = _audit(migrated, status=0)
    assert report["ok"] is True
    assert report["findings"] == []
    iban = _column(report, "public.accounts.iban")
    assert iban["rows"] == 300
    assert iban["nulls"] == 300 // 11
    assert iban["envelopes"] == 300 - 300 // 11
    assert iban["plaintext"] == 0
    assert iban["guard"] == "installed"
    assert iban["authenticated"] is None  # no master key given
    assert sum(iban["by_tenant"].values()) == iban["envelopes"]
    assert set(iban["by_key_version"]) == {"1/v1", "2/v1", "3/v1"}
    assert report["unconfigured_pii"] == ["public.accounts.phone_number"]
    email = _column(report, "public.accounts.email")
    versions = report["key_versions"]
    assert [(k["tenant"], k["version"], k["state"]) for k in versions] == [
        ("1", 1, "active"),
        ("2", 1, "active"),
        ("3", 1, "active"),
    ]
    assert sum(k["envelopes"] for k in versions) == iban["envelopes"] + email["envelopes"]

    report = _audit(migrated, "--master-key", "env:PGSEAL_TEST_MK", status=0)
    email = _column(report, "public.accounts.email")
    assert email["authenticated"] == 300
    assert email["tampered"] == 0


async def test_audit_finds_plaintext_tamper_foreign_envelope_and_missing_guard(
    migrated: DbaEnv,
) -> None:
    con = await migrated.connect()
    try:
        await con.execute("ALTER TABLE accounts DROP CONSTRAINT pgseal_guard_iban")
        await con.execute("UPDATE accounts SET iban = $1::text::bytea WHERE id = 5", PLAINTEXT)
        # One bit of the ciphertext flipped: still well formed, so the guard lets it in.
        email = await con.fetchval("SELECT email FROM accounts WHERE id = 7")
        raw = bytearray(dearmor(email))
        raw[30] ^= 0x04
        import base64

        await con.execute(
            "UPDATE accounts SET email = $1 WHERE id = 7",
            "pgseal1:" + base64.b64encode(bytes(raw)).decode(),
        )
        # Row 8 belongs to business 3, row 9 to business 1: copy 8's envelope into 9.
        rows = await con.fetch("SELECT id, business_id FROM accounts WHERE id IN (8, 9)")
        tenants = {r[0]: r[1] for r in rows}
        assert tenants[8] != tenants[9]
        await con.execute(
            "UPDATE accounts SET iban = (SELECT iban FROM accounts WHERE id = 8) WHERE id = 9"
        )
        assert is_envelope(await con.fetchval("SELECT iban FROM accounts WHERE id = 9"))
    finally:
        await con.close()

    report = _audit(migrated, status=1)
    assert report["ok"] is False
    iban = _column(report, "public.accounts.iban")
    assert iban["plaintext"] == 1
    assert iban["plaintext_keys"] == ["5"]
    assert iban["tenant_mismatch"] == 1
    assert iban["tenant_mismatch_keys"] == ["9"]
    assert iban["guard"] == "missing"
    email = _column(report, "public.accounts.email")
    assert email["tampered"] == 0  # not detectable without the master key
    assert email["guard"] == "installed"
    assert sorted(report["findings"]) == [
        "public.accounts.iban: 1 envelope(s) under another tenant's key (pk 9)",
        "public.accounts.iban: 1 plaintext value(s) (pk 5)",
        "public.accounts.iban: guard missing",
    ]

    report = _audit(migrated, "--master-key", "env:PGSEAL_TEST_MK", status=1)
    email = _column(report, "public.accounts.email")
    assert email["tampered"] == 1
    assert email["tampered_keys"] == ["7"]
    assert email["authenticated"] == 299
    assert "public.accounts.email: 1 envelope(s) fail authentication (pk 7)" in (report["findings"])

    # The human table says the same, by primary key and never by value.
    done = migrated.run(
        "audit", "--config", migrated.directory / "final.yaml", "--master-key",
        "env:PGSEAL_TEST_MK", check_status=1,
    )  # fmt: skip
    assert "FINDING: public.accounts.iban: 1 plaintext value(s) (pk 5)" in done.stdout
    assert "1 (pk 5)" in done.stdout
    assert "1 (pk 9)" in done.stdout
    assert "1 (pk 7)" in done.stdout
    assert PLAINTEXT not in done.stdout


def test_audit_works_on_a_read_only_role(migrated: DbaEnv) -> None:
    import asyncio

    asyncio.run(
        migrated.execute(
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditor') THEN"
            " CREATE ROLE auditor LOGIN; END IF; END$$;"
            "GRANT USAGE ON SCHEMA pgseal TO auditor;"
            "GRANT SELECT ON accounts TO auditor;"
            "GRANT SELECT (key_id, tenant, kind, version, state) ON pgseal.keys TO auditor;"
        )
    )
    dsn = migrated.dsn.replace("postgres@", "auditor@", 1)
    report = json.loads(
        migrated.run(
            "audit", "--config", migrated.directory / "final.yaml", "--dsn", dsn, "--json"
        ).stdout
    )
    assert _column(report, "public.accounts.iban")["rows"] == 300


def test_values_of_a_shredded_tenant_are_counted_not_findings(migrated: DbaEnv) -> None:
    before = _audit(migrated, "--master-key", "env:PGSEAL_TEST_MK", status=None)
    # Business 3: not the one of the tampered row 7 (a shredded value cannot be authenticated).
    migrated.run("keys", "shred", "--tenant", "3", "--yes", "--dsn", migrated.dsn, check_status=0)
    after = _audit(migrated, "--master-key", "env:PGSEAL_TEST_MK", status=None)
    assert after["findings"] == before["findings"]  # nothing new to report
    for name in ("public.accounts.iban", "public.accounts.email"):
        column = _column(after, name)
        assert column["destroyed_key"] == column["by_key_version"]["3/v1"] > 0
        assert column["authenticated"] + column["destroyed_key"] + column["tampered"] == (
            column["envelopes"] - column["unknown_key"]
        )
    states = {(k["tenant"], k["state"]) for k in after["key_versions"]}
    assert ("3", "destroyed") in states
