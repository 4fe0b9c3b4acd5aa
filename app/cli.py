"""``python -m app``: the invoicing app's command line.

Commands: ``migrate`` (apply the schema, bytea or ``--plaintext-baseline``),
``seed`` (fake businesses), ``report`` (one business's overview), ``scenario``
(the three-business story, printing everything the app read). ``--dsn`` (or
``INVOICING_DSN``) points at Postgres or at pgseal alike, except ``migrate``,
which a DBA runs over a direct connection.

Errors are one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from collections.abc import Sequence

import asyncpg
from rich.console import Console
from rich.table import Table

from app.accounts import owner_actor
from app.auth import DEFAULT_BCRYPT_ROUNDS
from app.db import open_pool
from app.errors import AppError
from app.reports import BusinessReport, business_report
from app.scenario import ScenarioResult, run_scenario
from app.schema import EncryptedStorage, migrate
from app.seed import DEMO_PASSWORD, SeededBusiness, seed_businesses

__all__ = ["main"]

_DSN_ENV = "INVOICING_DSN"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="The sample invoicing application (plain asyncpg; works through pgseal).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--dsn",
            default=os.environ.get(_DSN_ENV),
            help=f"database (or pgseal) DSN; default ${_DSN_ENV}",
        )
        return sub

    sub = command("migrate", "apply the app's schema migrations (direct connection)")
    sub.add_argument(
        "--plaintext-baseline",
        action="store_true",
        help="create encrypted columns with their logical types instead of bytea"
        " (for running without pgseal)",
    )
    for name, help_text in (
        ("seed", "create fake businesses with a year's worth of records"),
        ("scenario", "play a short story for three businesses and print what the app read"),
    ):
        sub = command(name, help_text)
        sub.add_argument(
            "--bcrypt-rounds",
            type=int,
            default=DEFAULT_BCRYPT_ROUNDS,
            help=f"bcrypt work factor for new passwords (default {DEFAULT_BCRYPT_ROUNDS})",
        )
        if name == "seed":
            sub.add_argument("--businesses", type=int, default=3, help="how many (default 3)")
            sub.add_argument("--seed", type=int, default=None, help="random seed (reproducible)")
    sub = command("report", "print one business's overview")
    sub.add_argument("--business", type=int, required=True, help="business id")
    return parser


async def _run(args: argparse.Namespace, console: Console) -> None:
    if not args.dsn:
        raise AppError(f"no database: pass --dsn or set {_DSN_ENV}")
    if args.command == "migrate":
        storage = EncryptedStorage.PLAINTEXT if args.plaintext_baseline else EncryptedStorage.BYTEA
        applied = await migrate(args.dsn, storage=storage)
        if applied:
            for migration in applied:
                console.print(f"applied {migration.version}_{migration.name} ({storage.value})")
        else:
            console.print("schema is up to date")
        return
    pool = await open_pool(args.dsn, max_size=4)
    try:
        if args.command == "seed":
            if args.businesses < 1:
                raise AppError("--businesses must be at least 1")
            with console.status("seeding..."):
                seeded = await seed_businesses(
                    pool,
                    args.businesses,
                    seed=args.seed,
                    rounds=args.bcrypt_rounds,
                    progress=lambda b: console.print(f"seeded business {b.id}: {b.name}"),
                )
            _print_seeded(console, seeded)
        elif args.command == "report":
            actor = await owner_actor(pool, args.business)
            _print_report(console, await business_report(pool, actor))
        elif args.command == "scenario":
            _print_scenario(console, await run_scenario(pool, rounds=args.bcrypt_rounds))
    finally:
        await pool.close()


def _print_seeded(console: Console, seeded: Sequence[SeededBusiness]) -> None:
    table = Table(title="Seeded businesses")
    for column in ("id", "business", "owner login", "customers", "invoices"):
        table.add_column(column)
    for b in seeded:
        table.add_row(str(b.id), b.name, b.owner_email, str(b.customers), str(b.invoices))
    console.print(table)
    console.print(f"Every seeded user's password: [bold]{DEMO_PASSWORD}[/bold]")


def _print_report(console: Console, report: BusinessReport) -> None:
    today = dt.date.today()
    b = report.business
    console.print(f"[bold]{b.name}[/bold] (business {b.id}, {b.currency})")
    console.print(
        f"invoiced {report.invoiced:,.2f} · received {report.received:,.2f} ·"
        f" outstanding {report.outstanding:,.2f} · overdue {len(report.overdue(today))}"
    )
    team = Table(title="Team")
    for column in ("name", "email", "role", "TOTP", "minutes logged"):
        team.add_column(column)
    for u in report.users:
        team.add_row(
            u.full_name,
            u.email,
            u.role.value,
            "yes" if u.has_totp else "no",
            str(report.minutes_by_user.get(u.id, 0)),
        )
    console.print(team)
    invoices = Table(title="Invoices")
    for column in ("number", "customer", "issued", "due", "status", "gross", "balance"):
        invoices.add_column(column, justify="right" if column in ("gross", "balance") else "left")
    for i in report.invoices:
        invoices.add_row(
            i.number,
            i.customer_name,
            i.issue_date.isoformat(),
            i.due_date.isoformat(),
            i.status.value + (" (overdue)" if i.overdue(today) else ""),
            f"{i.totals.gross:,.2f}",
            f"{i.totals.balance:,.2f}",
        )
    console.print(invoices)
    customers = Table(title="Customers")
    for column in ("company", "contact", "email", "phone", "VAT number"):
        customers.add_column(column)
    for c in report.customers:
        customers.add_row(
            c.company_name, c.contact_name or "", c.email or "", c.phone or "", c.vat_number or ""
        )
    console.print(customers)
    expenses = Table(title="Expenses by category")
    expenses.add_column("category")
    expenses.add_column("total", justify="right")
    for category, total in report.expenses_by_category.items():
        expenses.add_row(category, f"{total:,.2f}")
    console.print(expenses)
    console.print(
        f"suppliers {len(report.suppliers)} · expenses {report.expenses_total:,.2f} ·"
        f" mileage {report.mileage.total_miles} miles in {report.mileage.journeys} journeys"
    )


def _print_scenario(console: Console, result: ScenarioResult) -> None:
    table = Table(title="What the app read")
    for column in ("business", "who", "action", "result"):
        table.add_column(column)
    for r in result.readings:
        style = "red" if r.refused else None
        table.add_row(r.business, r.who, r.action, r.result, style=style)
    console.print(table)
    ids = ", ".join(f"{name} = {business_id}" for business_id, name in result.businesses)
    console.print(f"businesses: {ids}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console()
    try:
        asyncio.run(_run(args, console))
    except (AppError, asyncpg.PostgresError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
