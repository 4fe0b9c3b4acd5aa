"""``pgseal migrate`` on real Postgres: 100k rows under live traffic, a kill, a resume;
``--dry-run``, idempotence, and ``--reverse`` restoring the original values."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from crypto.envelope import is_armored, is_envelope
from tests.conftest import PgServer
from tests.dba.conftest import DbaEnv, drop_env, make_env
from tests.pgseal_process import PgsealProcess, start_pgseal

ROWS = 100_000
TENANTS = 7

SCHEMA = f"""
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    business_id bigint NOT NULL,
    name text,
    phone text,
    tax_id text,
    note text
);
INSERT INTO customers (business_id, name, phone, tax_id, note)
SELECT 1 + i % {TENANTS}, 'name ' || i, '+1-555-' || lpad(i::text, 7, '0'), 'TX-' || i,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'note ' || i || ' é' END
FROM generate_series(1, {ROWS}) AS i;
ANALYZE customers;
"""

TABLES = """
tables:
  customers:
    tenant_column: business_id
    columns:
      phone: {type: text, migrating: true}
      tax_id: {type: text, searchable: tax_id_bidx, normalize: [trim, casefold], migrating: true}
      note: {type: text, storage: text, migrating: true}
"""


def original(i: int) -> tuple[int, str, str, str | None]:
    """Row ``i`` as SCHEMA makes it: (business, phone, tax_id, note)."""
    return (1 + i % TENANTS, f"+1-555-{i:07d}", f"TX-{i}", None if i % 10 == 0 else f"note {i} é")


@pytest.fixture(scope="module")
def big(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbaEnv]:
    env = make_env(pg_server, tmp_path_factory.mktemp("migrate"), "mig")
    try:
        asyncio.run(env.execute(SCHEMA))
        yield env
    finally:
        drop_env(env)


async def _job_rows_seen(env: DbaEnv) -> int:
    con = await env.connect()
    try:
        value = await con.fetchval(
            "SELECT rows_seen FROM pgseal.jobs WHERE job = 'migrate' AND table_name = $1",
            "public.customers",
        )
        return int(value or 0)
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await con.close()


class Traffic:
    """The application writing and reading through pgseal while the migration runs."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.expected: dict[int, tuple[int, str, str, str | None]] = {}
        self.updates = self.inserts = self.reads = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        rng = random.Random(7)
        con = await asyncpg.connect(self.dsn)
        try:
            while not self.stop.is_set():
                i = rng.randrange(1, ROWS + 1)
                business, _, tax, note = self.expected.get(i, original(i))
                phone = f"+44-{rng.randrange(10**9):09d}"
                await con.execute(
                    "UPDATE customers SET phone = $1 WHERE id = $2 AND business_id = $3",
                    phone,
                    i,
                    business,
                )
                self.expected[i] = (business, phone, tax, note)
                self.updates += 1
                if self.updates % 4 == 0:
                    business = rng.randrange(1, TENANTS + 1)
                    row = (business, f"+49-{self.inserts}", f"NEW-{self.inserts}", "new é")
                    new_id = await con.fetchval(
                        "INSERT INTO customers (business_id, phone, tax_id, note)"
                        " VALUES ($1, $2, $3, $4) RETURNING id",
                        *row,
                    )
                    self.expected[int(new_id)] = row
                    self.inserts += 1
                # Reads accept plaintext and envelopes alike while migrating.
                j = rng.randrange(1, ROWS + 1)
                got = await con.fetchrow(
                    "SELECT phone, tax_id, note FROM customers WHERE id = $1", j
                )
                assert got is not None
                assert tuple(got) == self.expected.get(j, original(j))[1:]
                self.reads += 1
                await asyncio.sleep(0.002)
        finally:
            await con.close()


def _rates(output: str) -> str:
    match = re.search(r"([\d,]+) rows/s", output)
    return match.group(0) if match else "?"


async def test_migrate_100k_with_traffic_kill_and_resume(big: DbaEnv, tmp_path: Path) -> None:
    config = big.config(TABLES)
    big.run("rules", "check", "--config", config, "--apply", check_status=0)
    dry = big.run("migrate", "--config", config, "--dry-run", check_status=0)
    assert f"would have sealed {ROWS * 3 - ROWS // 10} value(s) in {ROWS} of {ROWS} row(s)" in (
        dry.stdout
    )
    proxy: PgsealProcess = start_pgseal(
        tmp_path / "pgseal",
        big.upstream,
        f"service_dsn: {big.dsn}\nmaster_key: env:PGSEAL_TEST_MK\n{TABLES}",
        env=big.env,
    )
    try:
        traffic = Traffic(proxy.dsn(database=big.database))
        writer = asyncio.create_task(traffic.run())
        first = big.popen("migrate", "--config", config, "--batch-size", "1000", "--rate", "20000")
        deadline = time.monotonic() + 60
        while await _job_rows_seen(big) < 30_000:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)  # reaps it and closes the pipes
        killed_at = await _job_rows_seen(big)
        assert 30_000 <= killed_at < ROWS

        started = time.monotonic()
        second = await asyncio.to_thread(
            big.run, "migrate", "--config", config, "--batch-size", "2000"
        )
        seconds = time.monotonic() - started
        traffic.stop.set()
        await writer
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"resumed after {killed_at} rows" in second.stdout
        assert "installed pgseal_guard_phone" in second.stdout
        assert traffic.updates > 20
        assert traffic.inserts > 5
        assert traffic.reads > 20
        print(f"resumed migration: {second.stdout.strip()} (wall {seconds:.1f} s)")

        direct = await big.connect()
        try:
            raw = await direct.fetch("SELECT id, phone, tax_id, tax_id_bidx, note FROM customers")
            guards = await direct.fetch(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'customers'::regclass"
                " AND contype = 'c' AND convalidated"
            )
        finally:
            await direct.close()
        assert len(raw) == ROWS + traffic.inserts
        for r in raw:
            assert is_envelope(r["phone"]), r["id"]
            assert is_envelope(r["tax_id"]), r["id"]
            assert len(r["tax_id_bidx"]) == 16
            assert r["note"] is None or is_armored(r["note"]), r["id"]
        assert {g["conname"] for g in guards} == {
            "pgseal_guard_phone",
            "pgseal_guard_tax_id",
            "pgseal_guard_note",
        }

        # Every row reads back identical through pgseal.
        app = await asyncpg.connect(proxy.dsn(database=big.database))
        try:
            rows = await app.fetch("SELECT id, business_id, phone, tax_id, note FROM customers")
            assert len(rows) == len(raw)
            for r in rows:
                want = traffic.expected.get(r["id"]) or original(r["id"])
                assert tuple(r)[1:] == want, r["id"]
            # The blind index the migration computed finds rows (normalised).
            hit = await app.fetchval(
                "SELECT id FROM customers WHERE tax_id = $1 AND business_id = $2",
                "  tx-4242 ",
                original(4242)[0],
            )
            assert hit == 4242
        finally:
            await app.close()

        # Idempotent: a new run seals nothing.
        again = big.run("migrate", "--config", config, "--batch-size", "5000", check_status=0)
        assert "sealed 0 value(s) in 0 of" in again.stdout
    finally:
        proxy.stop()


REVERSE_SCHEMA = """
CREATE TABLE people (
    id integer PRIMARY KEY,
    business_id integer,
    email varchar(80),
    born date,
    memo text
);
INSERT INTO people
SELECT i, CASE WHEN i = 13 THEN NULL ELSE 1 + i % 3 END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE 'P' || i || '@Example.com' END,
       date '1950-01-01' + i * 17,
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'memo ' || i || E' \\u00e9\\u4e2d' END
FROM generate_series(1, 600) AS i;
"""

REVERSE_TABLES = """
tables:
  people:
    tenant_column: business_id
    columns:
      email: {type: varchar(80), searchable: email_bidx, migrating: true}
      born: {type: date, migrating: true}
      memo: {type: text, storage: text, migrating: true}
"""


async def _snapshot(env: DbaEnv) -> tuple[list[tuple[object, ...]], dict[str, str]]:
    con = await env.connect()
    try:
        rows = await con.fetch("SELECT id, business_id, email, born, memo FROM people ORDER BY id")
        types = await con.fetch(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'people'::regclass AND attnum > 0 AND NOT attisdropped"
        )
        return [tuple(r) for r in rows], {t[0]: t[1] for t in types}
    finally:
        await con.close()


async def test_reverse_restores_the_original_values(dba: DbaEnv) -> None:
    await dba.execute(REVERSE_SCHEMA)
    before, types_before = await _snapshot(dba)
    config = dba.config(REVERSE_TABLES, name="people.yaml")
    done = dba.run("migrate", "--config", config, "--table", "people")
    # Row 13 has no tenant: its values stay plaintext, the job reports it and fails.
    assert done.returncode == 1
    assert "FAILED 3 value(s), no tenant; primary keys: 13" in done.stdout
    assert "column email: character varying(80) -> bytea" in done.stdout
    assert "installed" not in done.stdout  # no guard while plaintext is left
    await dba.execute("DELETE FROM people WHERE id = 13")
    before = [r for r in before if r[0] != 13]
    done = dba.run(
        "migrate", "--config", config, "--table", "people", "--rate", "1500", "--batch-size",
        "100", check_status=0,
    )  # fmt: skip
    assert "installed pgseal_guard_memo" in done.stdout
    # --rate: 599 rows at 1500 rows/s cannot take less than 0.4 s.
    took = float(re.search(r"; ([\d.]+) s, ", done.stdout).group(1))  # type: ignore[union-attr]
    assert took >= 0.35

    con = await dba.connect()
    try:
        raw = await con.fetch("SELECT email, born, memo, email_bidx FROM people")
        with pytest.raises(asyncpg.CheckViolationError):
            await con.execute("UPDATE people SET born = 'x'::bytea WHERE id = 1")
    finally:
        await con.close()
    assert all(r["born"] is not None and is_envelope(r["born"]) for r in raw)
    assert all(r["email"] is None or is_envelope(r["email"]) for r in raw)
    assert all((r["email"] is None) == (r["email_bidx"] is None) for r in raw)

    done = dba.run(
        "migrate", "--config", config, "--reverse", "--restore-type", "--table", "people",
        check_status=0,
    )  # fmt: skip
    assert "dropped pgseal_guard_born" in done.stdout
    assert "column born: bytea -> date" in done.stdout
    after, types_after = await _snapshot(dba)
    assert after == before
    assert {k: v for k, v in types_after.items() if k != "email_bidx"} == types_before
    con = await dba.connect()
    try:
        assert await con.fetchval("SELECT count(email_bidx) FROM people") == 0
    finally:
        await con.close()


def test_refusals_are_one_line(dba: DbaEnv) -> None:
    asyncio.run(dba.execute("CREATE TABLE nokey (business_id int, secret text)"))
    config = dba.config(
        "tables:\n  nokey:\n    tenant_column: business_id\n    columns:\n"
        "      secret: {type: text, migrating: true}\n",
        name="nokey.yaml",
    )
    for args in (("migrate",), ("reencrypt",), ("migrate", "--table", "other")):
        done = dba.run(*args, "--config", config, check_status=1)
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr
    done = dba.run("migrate", "--config", config)
    assert "table public.nokey has no primary key" in done.stderr
    done = dba.run("migrate", "--config", config, "--table", "other")
    assert "table public.other is not configured" in done.stderr
