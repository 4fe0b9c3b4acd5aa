"""The scenario, the seed and the command line, end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

import asyncpg

from app.accounts import owner_actor
from app.reports import business_report
from app.scenario import STORIES, run_scenario
from app.seed import seed_businesses
from tests.app.conftest import ROUNDS, AppDatabase
from tests.app.plaintexts import scan_for_plaintext

ROOT = Path(__file__).resolve().parents[2]


async def test_scenario_reads_back_plaintext_and_refuses_twice(
    db: asyncpg.Pool[asyncpg.Record],
) -> None:
    result = await run_scenario(db, rounds=ROUNDS)
    assert [name for _, name in result.businesses] == [s.name for s in STORIES]
    text = {(r.business, r.action): r.result for r in result.readings}
    for story in STORIES:
        assert story.customer.email is not None
        search = f"search email {story.customer.email.upper()!r}"
        assert text[(story.name, search)] == story.customer.company_name
        assert story.bank.iban is not None
        assert text[(story.name, "read bank details")].startswith(story.bank.iban)
        assert text[(story.name, "read Stripe key")] == story.stripe_key
        assert text[(story.name, "log in with password + TOTP")] == "signed in as owner"
    refused = [r for r in result.readings if r.refused]
    assert len(refused) == 4  # staff x3 on bank details, one cross-business read
    assert all("refused" in r.result for r in refused)
    assert any("not found" in r.result for r in refused)


async def test_seed_creates_complete_businesses(db: asyncpg.Pool[asyncpg.Record]) -> None:
    seeded = await seed_businesses(db, 2, seed=7, rounds=ROUNDS)
    assert len(seeded) == 2
    for business in seeded:
        report = await business_report(db, await owner_actor(db, business.id))
        assert len(report.users) == 3
        assert len(report.customers) == business.customers >= 4
        assert len(report.invoices) == business.invoices >= 1
        assert report.invoiced > 0
        assert report.expenses_total > 0


async def _cli(*args: str) -> tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_migrate_is_idempotent(fresh_db: str) -> None:
    code, out, _ = await _cli("migrate", "--dsn", fresh_db, "--plaintext-baseline")
    assert code == 0
    assert "applied 0001_invoicing_schema (plaintext)" in out
    code, out, _ = await _cli("migrate", "--dsn", fresh_db, "--plaintext-baseline")
    assert (code, out.strip()) == (0, "schema is up to date")


def _story_plaintexts() -> set[str]:
    """Values the scenario writes into encrypted columns (the CLI's own, unrecorded)."""
    values = {s.stripe_key for s in STORIES}
    for story in STORIES:
        for details in (story.customer, story.bank):
            values |= {v for v in dataclasses.astuple(details) if isinstance(v, str)}
        values |= set(story.work) | {story.journey[0], story.journey[1], story.owner}
    return values


async def test_cli_seed_report_scenario_through_pgseal(app_database: AppDatabase) -> None:
    dsn = app_database.app_dsn
    code, out, _ = await _cli(
        "seed", "--dsn", dsn, "--businesses", "1", "--seed", "3", "--bcrypt-rounds", "4"
    )
    assert code == 0, out
    assert "Seeded businesses" in out
    conn = await asyncpg.connect(app_database.direct_dsn)
    try:
        business = await conn.fetchval("SELECT max(id) FROM businesses")
    finally:
        await conn.close()
    code, out, _ = await _cli("report", "--dsn", dsn, "--business", str(business))
    assert code == 0, out
    assert "Invoices" in out
    assert "INV-00001" in out
    code, out, _ = await _cli("scenario", "--dsn", dsn, "--bcrypt-rounds", "4")
    assert code == 0, out
    assert "What the app read" in out
    assert STORIES[0].stripe_key in out
    leaks = await scan_for_plaintext(app_database.direct_dsn, _story_plaintexts())
    assert not leaks, leaks[:5]


async def test_cli_errors_are_one_line(fresh_db: str) -> None:
    code, _, _ = await _cli("migrate", "--dsn", fresh_db)  # bytea
    assert code == 0
    code, _out, err = await _cli("migrate", "--dsn", fresh_db, "--plaintext-baseline")
    assert code == 1
    assert err.startswith("error: the database was migrated with bytea storage")
    assert "Traceback" not in err
    assert err.count("\n") == 1
    code, _, err = await _cli("report", "--dsn", fresh_db, "--business", "999")
    assert (code, err.strip()) == (1, "error: business 999 not found")
