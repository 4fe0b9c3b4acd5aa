"""``pgseal rules check [--apply]`` and the database-side guard, on real Postgres."""

from __future__ import annotations

import asyncpg
import pytest

from tests.dba.conftest import DbaEnv

SCHEMA = """
CREATE TABLE contacts (
    id bigserial PRIMARY KEY,
    business_id bigint NOT NULL,
    email text,
    phone integer,
    note text
);
"""

TABLES = """
tables:
  contacts:
    tenant_column: business_id
    columns:
      email: {type: text, searchable: email_bidx}
      phone: {type: text}
      note: {type: text, storage: text}
"""

ENVELOPE = b"\x01" + bytes(8) + bytes(12) + bytes(16)  # shape only: 37 bytes


@pytest.fixture(scope="module")
def checked(dba: DbaEnv) -> DbaEnv:
    import asyncio

    asyncio.run(dba.execute(SCHEMA))
    return dba


def test_check_reports_every_problem_with_its_fix(checked: DbaEnv) -> None:
    config = checked.config(TABLES)
    done = checked.run("rules", "check", "--config", config, check_status=1)
    out = done.stdout
    # the table names each column, and the problems and their SQL
    for column in ("public.contacts.email", "public.contacts.phone", "public.contacts.note"):
        assert column in out
    assert "blind-index column email_bidx missing" in out
    assert "public.contacts.phone is integer" in out
    assert "ALTER TABLE public.contacts ADD COLUMN email_bidx bytea;" in out
    assert (
        "ALTER TABLE public.contacts ALTER COLUMN phone TYPE bytea "
        "USING convert_to(phone::text, 'UTF8');" in out
    )
    assert (
        "ALTER TABLE public.contacts ADD CONSTRAINT pgseal_guard_email "
        "CHECK (pgseal.is_envelope(email));" in out
    )
    assert "CHECK (pgseal.is_armored_envelope(note))" in out
    assert "run again with --apply" in out


async def test_apply_fixes_and_guard_blocks_plaintext(checked: DbaEnv) -> None:
    config = checked.config(TABLES)
    done = checked.run("rules", "check", "--config", config, "--apply", check_status=0)
    assert "applying, in one transaction:" in done.stdout
    assert "applied; consistent" in done.stdout
    checked.run("rules", "check", "--config", config, check_status=0)

    con = await checked.connect()
    try:
        rows = await con.fetch(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'contacts'::regclass AND attnum > 0"
        )
        types = {r[0]: r[1] for r in rows}
        assert types["phone"] == "bytea"
        assert types["email_bidx"] == "bytea"
        # The guard itself: Postgres refuses plaintext written around pgseal.
        with pytest.raises(asyncpg.CheckViolationError, match="pgseal_guard_email"):
            await con.execute(
                "INSERT INTO contacts (business_id, email) VALUES (1, 'ann@example.com'::bytea)"
            )
        with pytest.raises(asyncpg.CheckViolationError, match="pgseal_guard_note"):
            await con.execute("INSERT INTO contacts (business_id, note) VALUES (1, 'plain')")
        with pytest.raises(asyncpg.CheckViolationError, match="pgseal_guard_phone"):
            await con.execute(
                "INSERT INTO contacts (business_id, phone) VALUES (1, $1)", ENVELOPE[:36]
            )
        with pytest.raises(asyncpg.CheckViolationError, match="pgseal_guard_phone"):
            await con.execute(
                "INSERT INTO contacts (business_id, phone) VALUES (1, $1)", b"\x02" + ENVELOPE[1:]
            )
        # NULL and well-formed envelopes pass.
        import base64

        armored = "pgseal1:" + base64.b64encode(ENVELOPE).decode()
        await con.execute(
            "INSERT INTO contacts (business_id, email, phone, note) VALUES (1, $1, NULL, $2)",
            ENVELOPE,
            armored,
        )
        with pytest.raises(asyncpg.CheckViolationError, match="pgseal_guard_note"):
            await con.execute(
                "INSERT INTO contacts (business_id, note) VALUES (1, $1)", armored[:-8]
            )
        await con.execute("DELETE FROM contacts")
    finally:
        await con.close()


async def test_altered_guard_function_is_reported(checked: DbaEnv) -> None:
    config = checked.config(TABLES)
    checked.run("rules", "check", "--config", config, "--apply")
    con = await checked.connect()
    try:
        await con.execute(
            "CREATE OR REPLACE FUNCTION pgseal.is_envelope(bytea) RETURNS boolean"
            " LANGUAGE sql IMMUTABLE STRICT AS $$SELECT true$$"
        )
    finally:
        await con.close()
    done = checked.run("rules", "check", "--config", config, check_status=1)
    assert "guard pgseal_guard_email altered" in done.stdout
    done = checked.run("rules", "check", "--config", config, "--apply", check_status=0)
    checked.run("rules", "check", "--config", config, check_status=0)


def test_apply_refuses_plaintext_and_changes_nothing(checked: DbaEnv) -> None:
    import asyncio

    asyncio.run(
        checked.execute(
            "CREATE TABLE legacy (id int PRIMARY KEY, business_id int, secret text);"
            "INSERT INTO legacy VALUES (1, 1, 'plain value')"
        )
    )
    config = checked.config(
        "tables:\n  legacy:\n    tenant_column: business_id\n    columns:\n"
        "      secret: {type: text}\n",
        name="legacy.yaml",
    )
    done = checked.run("rules", "check", "--config", config, "--apply", check_status=1)
    assert "hold plaintext" in done.stderr
    assert "plain value" not in done.stdout + done.stderr

    async def physical() -> str:
        con = await checked.connect()
        try:
            return str(
                await con.fetchval(
                    "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                    " WHERE attrelid = 'legacy'::regclass AND attname = 'secret'"
                )
            )
        finally:
            await con.close()

    assert asyncio.run(physical()) == "text"  # the one transaction was rolled back
    # Marked migrating, the guard is deferred and the rest applies.
    config = checked.config(
        "tables:\n  legacy:\n    tenant_column: business_id\n    columns:\n"
        "      secret: {type: text, migrating: true}\n",
        name="legacy.yaml",
    )
    done = checked.run("rules", "check", "--config", config, "--apply", check_status=0)
    assert "deferred (migrating)" in done.stdout
    assert asyncio.run(physical()) == "bytea"


def test_errors_are_one_line(checked: DbaEnv) -> None:
    config = checked.config(TABLES)
    done = checked.run(
        "rules", "check", "--config", config, "--dsn", "postgresql://nobody@127.0.0.1:1/x"
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "cannot connect" in done.stderr
    assert "Traceback" not in done.stderr
    bad = checked.directory / "bad.yaml"
    bad.write_text("tables: [1\n")
    done = checked.run("rules", "check", "--config", bad)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
