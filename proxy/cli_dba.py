"""``pgseal rules check``, ``migrate``, ``reencrypt`` and ``audit``: the DBA and auditor tools.

::

    pgseal rules check --config PATH [--dsn DSN] [--apply]
    pgseal migrate     --config PATH [--dsn DSN] [--reverse [--restore-type]] [--table T ...]
                       [--batch-size N] [--rate ROWS_PER_S] [--dry-run] [--restart] [--no-guard]
    pgseal reencrypt   --config PATH [--dsn DSN] [--table T ...] [--batch-size N] [--rate R]
                       [--dry-run] [--restart]
    pgseal audit       --config PATH [--dsn DSN] [--master-key SPEC ...] [--json] [--list N]

Every command reads the column rules from ``--config`` and connects *directly*
to Postgres: ``--dsn``, else the config's ``service_dsn``. Keys are read from
the config's ``service_dsn`` (else the same DSN) and unwrapped with
``--master-key`` (else the config's ``master_key``); ``audit`` uses a master
key only when ``--master-key`` is given. The work is done by
``rules.schema_check``, ``proxy.migrate`` and ``proxy.audit``; this module
parses, shows progress (rich, on stderr) and reports. Exit status: 0 when
everything is consistent / done, 1 on findings or an error (one line on stderr,
never a traceback), 2 for a bad configuration file, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from proxy.cli_keys import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, CommandError, _mask, _print, _ring

if TYPE_CHECKING:
    import asyncpg

    from crypto.field import FieldCrypto
    from proxy.audit import AuditReport
    from proxy.migrate import Job, TableResult
    from rules.config import Config

__all__ = ["register"]


# -- shared ------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Config:
    from rules.config import load_config

    config = load_config(args.config)
    if not config.rules.tables:
        raise CommandError(f"{args.config} configures no protected tables")
    return config


def _data_dsn(args: argparse.Namespace, config: Config) -> str:
    dsn = args.dsn or config.service_dsn
    if not dsn:
        raise CommandError("no database given: pass --dsn DSN (or service_dsn in the config)")
    return str(dsn)


async def _connect(dsn: str) -> asyncpg.Connection[Any]:
    import asyncpg

    try:
        return await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise CommandError(f"cannot connect to {_mask(dsn)}: {exc}") from None


def _on_database(dsn: str, work: Callable[[asyncpg.Connection[Any]], Awaitable[int]]) -> int:
    """Run ``work`` on one direct connection, closed whatever happens."""

    async def main() -> int:
        con = await _connect(dsn)
        try:
            return await work(con)
        finally:
            await con.close()

    return asyncio.run(main())


@asynccontextmanager
async def _crypto(args: argparse.Namespace, config: Config, dsn: str) -> AsyncIterator[FieldCrypto]:
    from crypto.field import FieldCrypto

    ring = _ring(args)
    try:
        crypto = await FieldCrypto.connect(
            config.service_dsn or dsn, ring, listen=False, pool_max=2
        )
    except OSError as exc:
        raise CommandError(f"cannot connect to the key store: {exc}") from None
    try:
        yield crypto
    finally:
        await crypto.close()


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar on stderr (rows, rows/s, ETA), one task per table."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not enabled:
        yield lambda table, done, total: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def update(table: str, done: int, total: int) -> None:
        if table not in tasks:
            tasks[table] = bar.add_task(table, total=total, completed=done, rate="-")
        task_id = tasks[table]
        bar.update(task_id, completed=done, total=total)
        speed = bar.tasks[task_id].speed
        bar.update(task_id, rate=f"{speed:,.0f}" if speed else "-")

    with bar:
        yield update


def _run(name: str, body: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Every failure is one line and a status code (like ``pgseal keys``)."""

    def handler(args: argparse.Namespace) -> int:
        import asyncpg

        from crypto.errors import CryptoError
        from proxy.migrate import JobError
        from rules.config import ConfigError

        prefix = f"pgseal {name}: error:"
        try:
            return body(args)
        except ConfigError as exc:
            _print(f"pgseal {name}: {exc}", sys.stderr)
            return EXIT_CONFIG
        except (CommandError, CryptoError, JobError) as exc:
            _print(f"{prefix} {exc}", sys.stderr)
        except asyncpg.PostgresError as exc:
            _print(f"{prefix} database error {exc.sqlstate}: {exc}", sys.stderr)
        except (OSError, asyncpg.InterfaceError) as exc:
            _print(f"{prefix} {exc}", sys.stderr)
        except KeyboardInterrupt:
            _print(f"pgseal {name}: interrupted; run it again to resume", sys.stderr)
            return 130
        except Exception as exc:  # a bug: still one line, unless --debug
            _print(f"{prefix} unexpected {type(exc).__name__}: {exc}", sys.stderr)
        if getattr(args, "debug", False):
            traceback.print_exc()
        return EXIT_ERROR

    return handler


def _table(headers: list[str], rows: list[list[str]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, title=title, title_justify="left", show_lines=False)
    for row in rows:
        table.add_row(*row)
    # Wide enough for every cell: a report is read in full, never truncated.
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    width = max(sum(widths) + 3 * len(widths) + 1, len(title or ""))
    Console(width=width).print(table)


# -- rules check -----------------------------------------------------------------


def _rules_check(args: argparse.Namespace) -> int:
    from proxy.live_schema import load_live_schema
    from rules.schema_check import check_schema

    config = _load(args)
    dsn = _data_dsn(args, config)

    async def work(con: asyncpg.Connection[Any]) -> int:
        live = await load_live_schema(con, sorted(config.rules.tables))
        report = check_schema(config.rules, live)
        mark = {True: "yes", False: "NO"}
        _table(
            ["column", "exists", "type", "type ok", "tenant col", "blind index", "guard"],
            [
                [
                    c.column,
                    mark[c.exists],
                    c.physical_type or "-",
                    mark[c.type_ok],
                    mark[c.tenant_ok],
                    c.blind_index,
                    c.guard,
                ]
                for c in report.columns
            ],
        )
        for problem in report.table_problems:
            _print(f"problem: {problem}")
        for c in report.columns:
            for problem in c.problems:
                _print(f"problem: {c.column}: {problem}")
        if report.ok:
            _print("consistent: config.yaml matches the database")
            return EXIT_OK
        _print("\nSQL that fixes it:" if not args.apply else "\napplying, in one transaction:")
        for statement in report.fix_sql:
            _print(statement)
        if not args.apply:
            _print("\nrun again with --apply to execute it in one transaction")
            return EXIT_ERROR
        try:
            async with con.transaction():
                for statement in report.fix_sql:
                    await con.execute(statement)
        except Exception as exc:
            import asyncpg

            if isinstance(exc, asyncpg.CheckViolationError):
                raise CommandError(
                    "a guard rejects existing rows, which hold plaintext: mark those "
                    "columns migrating: true and run `pgseal migrate`; nothing was changed"
                ) from None
            raise
        live = await load_live_schema(con, sorted(config.rules.tables))
        after = check_schema(config.rules, live)
        if after.ok:
            _print("applied; consistent: config.yaml matches the database")
            return EXIT_OK
        _print("applied, but still inconsistent:")
        for c in after.columns:
            for problem in c.problems:
                _print(f"problem: {c.column}: {problem}")
        return EXIT_ERROR

    return _on_database(dsn, work)


# -- migrate / reencrypt --------------------------------------------------------------


def _summary(result: TableResult) -> str:
    verb = {
        "migrate": "sealed",
        "reverse": "decrypted",
        "reencrypt": "re-encrypted",
    }[result.job]
    head = "dry run: would have " if result.dry_run else ""
    resumed = f", resumed after {result.resumed_from} rows" if result.resumed_from else ""
    text = (
        f"{result.table}: {head}{verb} {result.values_changed} value(s) in "
        f"{result.rows_changed} of {result.rows_seen} row(s){resumed}; "
        f"{result.seconds:.1f} s, {result.rows_per_second:,.0f} rows/s"
    )
    for line in result.converted:
        text += f"\n{result.table}: column {line}"
    for line in result.guards:
        text += f"\n{result.table}: {line}"
    if result.left_plaintext:
        text += f"\n{result.table}: {result.left_plaintext} plaintext value(s) left (migrate)"
    for kind, count in sorted(result.failure_counts.items()):
        keys = ", ".join(result.failures[kind])
        more = "" if count <= len(result.failures[kind]) else ", ..."
        text += f"\n{result.table}: FAILED {count} value(s), {kind}; primary keys: {keys}{more}"
    return text


def _job(job: Job) -> Callable[[argparse.Namespace], int]:
    def body(args: argparse.Namespace) -> int:
        from proxy.migrate import plan_tables, run_table

        mode: Job = "reverse" if job == "migrate" and args.reverse else job
        config = _load(args)
        dsn = _data_dsn(args, config)

        async def work(con: asyncpg.Connection[Any]) -> int:
            plans = await plan_tables(con, config.rules, args.table or ())
            old_ids: frozenset[int] = frozenset()
            failed = False
            async with _maybe_crypto(args, config, dsn, needed=not args.dry_run) as crypto:
                if mode == "reencrypt":
                    old_ids = await _old_key_ids(con)
                with _progress(sys.stderr.isatty() or args.progress) as progress:
                    results = []
                    for plan in plans:
                        results.append(
                            await run_table(
                                con,
                                plan,
                                mode,
                                crypto=crypto,
                                batch_size=args.batch_size,
                                rate=args.rate,
                                dry_run=args.dry_run,
                                restart=args.restart,
                                install_guards=not getattr(args, "no_guard", False),
                                restore_type=getattr(args, "restore_type", False),
                                old_key_ids=old_ids,
                                progress=progress,
                            )
                        )
            for result in results:
                _print(_summary(result))
                failed = failed or bool(result.failure_counts)
            if mode == "reencrypt" and not args.dry_run:
                await _print_key_usage(con, config)
            return EXIT_ERROR if failed else EXIT_OK

        return _on_database(dsn, work)

    return body


@asynccontextmanager
async def _maybe_crypto(
    args: argparse.Namespace, config: Config, dsn: str, *, needed: bool
) -> AsyncIterator[FieldCrypto | None]:
    if not needed:
        yield None
        return
    async with _crypto(args, config, dsn) as crypto:
        yield crypto


async def _old_key_ids(con: asyncpg.Connection[Any]) -> frozenset[int]:
    rows = await con.fetch(
        "SELECT key_id FROM pgseal.keys WHERE kind = 'data' AND state = 'retired'"
    )
    return frozenset(r["key_id"] for r in rows)


async def _print_key_usage(con: asyncpg.Connection[Any], config: Config) -> None:
    """Values per data-key version after a re-encryption (an old version at 0 can go)."""
    from proxy.audit import audit

    _print_key_versions(await audit(con, config.rules))


def _print_key_versions(report: AuditReport) -> None:
    _table(
        ["tenant", "version", "state", "values"],
        [[k.tenant, str(k.version), k.state, str(k.envelopes)] for k in report.key_versions],
        title="values per data-key version",
    )


# -- audit ------------------------------------------------------------------------


def _audit(args: argparse.Namespace) -> int:
    from proxy.audit import audit

    config = _load(args)
    dsn = _data_dsn(args, config)

    async def work(con: asyncpg.Connection[Any]) -> int:
        show = (sys.stderr.isatty() or args.progress) and not args.json
        async with _maybe_crypto(args, config, dsn, needed=bool(args.master_key)) as crypto:
            with _progress(show) as progress:
                report = await audit(
                    con, config.rules, crypto=crypto, listed=args.list, progress=progress
                )
        if args.json:
            _print(json.dumps(report.as_json(), indent=2, sort_keys=True))
        else:
            _print_audit(report)
        return EXIT_OK if report.ok else EXIT_ERROR

    return _on_database(dsn, work)


def _keys_text(keys: list[str], count: int) -> str:
    """A count and its first primary keys (the findings below list up to --list)."""
    if not count:
        return "0"
    shown = ", ".join(keys[:3])
    return f"{count} (pk {shown}{', ...' if count > min(len(keys), 3) else ''})"


def _print_audit(report: AuditReport) -> None:
    auth = "authenticated" if report.master_key else "authenticated (needs --master-key)"
    _table(
        [
            "column",
            "rows",
            "nulls",
            "envelopes",
            "plaintext",
            "tenant mismatch",
            "unknown key",
            auth,
            "tampered",
            "guard",
        ],
        [
            [
                c.column,
                str(c.rows),
                str(c.nulls),
                str(c.envelopes),
                _keys_text(c.plaintext_keys, c.plaintext),
                _keys_text(c.tenant_mismatch_keys, c.tenant_mismatch),
                _keys_text(c.unknown_key_keys, c.unknown_key),
                "-" if c.authenticated is None else str(c.authenticated),
                "-" if c.authenticated is None else _keys_text(c.tampered_keys, c.tampered),
                c.guard + (" (migrating)" if c.migrating else ""),
            ]
            for c in report.columns
        ],
        title="pgseal audit",
    )
    tenants: dict[str, int] = {}
    for c in report.columns:
        for k, n in c.by_tenant.items():
            tenants[k] = tenants.get(k, 0) + n
    if report.key_versions:
        _print_key_versions(report)
    if tenants:
        _print(
            "envelopes per row tenant: "
            + ", ".join(f"{k}: {n}" for k, n in sorted(tenants.items()))
        )
    if report.unconfigured_pii:
        _print(
            "columns that look like PII but are not configured: "
            + ", ".join(report.unconfigured_pii)
        )
    _print(
        f"scanned {report.rows_scanned} rows in {report.seconds:.1f} s "
        f"({report.rows_scanned / report.seconds if report.seconds else 0:,.0f} rows/s)"
    )
    findings = report.findings()
    if findings:
        for f in findings:
            _print(f"FINDING: {f}")
    else:
        _print("no findings: every configured value is a well-formed envelope of its row's tenant")


# -- parser --------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, *, master: bool) -> None:
    parser.add_argument("--config", required=True, metavar="PATH", help="config.yaml")
    parser.add_argument(
        "--dsn",
        help="direct connection to the database (default: the config's service_dsn)",
    )
    if master:
        parser.add_argument(
            "--master-key",
            action="append",
            metavar="SPEC",
            help="master key env:VAR or file:PATH; repeat for several (default: the config's)",
        )
    parser.add_argument("--debug", action="store_true", help="show a traceback on failure")


def _batch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", action="append", metavar="SCHEMA.TABLE", help="only this table")
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per transaction")
    parser.add_argument("--rate", type=float, metavar="ROWS_PER_S", help="at most this many rows/s")
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would change, change nothing"
    )
    parser.add_argument(
        "--restart", action="store_true", help="ignore saved progress and start from the first row"
    )
    parser.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not on a terminal"
    )


def _set(
    parser: argparse.ArgumentParser, name: str, body: Callable[[argparse.Namespace], int]
) -> None:
    handler = _run(name, body)
    parser.set_defaults(func=handler, handler=handler)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rules``, ``migrate``, ``reencrypt`` and ``audit`` to a ``pgseal`` parser."""
    rules = subparsers.add_parser(
        "rules", help="check config.yaml against the live schema",
        description="Check the column rules of config.yaml against the database.",
    )  # fmt: skip
    sub = rules.add_subparsers(title="subcommands", metavar="SUBCOMMAND")

    def rules_help(args: argparse.Namespace) -> int:
        rules.print_help(sys.stderr)
        return EXIT_CONFIG

    rules.set_defaults(handler=rules_help, func=rules_help)
    p = sub.add_parser(
        "check",
        help="per-column report and the SQL that fixes every problem",
        description=(
            "Compare config.yaml with the live schema: for every configured column whether it "
            "exists, has its storage type, its table's tenant column, its blind-index column "
            "(bytea) and its guard (a CHECK that accepts only NULL or a pgseal envelope). "
            "Prints the SQL that fixes each problem; --apply runs it in one transaction. "
            "Exit 0 only when everything is consistent."
        ),
    )
    _common(p, master=False)
    p.add_argument("--apply", action="store_true", help="run the fix SQL in one transaction")
    _set(p, "rules check", _rules_check)

    p = subparsers.add_parser(
        "migrate",
        help="encrypt existing plaintext in place (--reverse: decrypt for a rollback)",
        description=(
            "Encrypt the plaintext of every configured column in place, batched by primary "
            "key, one transaction per batch, resumable (progress in pgseal.jobs) and "
            "idempotent; converts text columns to bytea where the config says so, fills "
            "blind indexes, and installs the guards once no plaintext is left. Mark the "
            "columns migrating: true in the running pgseal while it runs."
        ),
    )
    _common(p, master=True)
    _batch_options(p)
    p.add_argument("--reverse", action="store_true", help="decrypt back to plaintext (rollback)")
    p.add_argument(
        "--restore-type",
        action="store_true",
        help="with --reverse: change the columns back to their logical type afterwards",
    )
    p.add_argument("--no-guard", action="store_true", help="do not install the guards at the end")
    _set(p, "migrate", _job("migrate"))

    p = subparsers.add_parser(
        "reencrypt",
        help="move values from retired key versions to each tenant's current key",
        description=(
            "After `pgseal keys rotate`: re-seal every value under a retired data key with "
            "its tenant's current key; same batching, resume and dry run as migrate. "
            "Prints the values per key version at the end (an old version at 0 can be retired)."
        ),
    )
    _common(p, master=True)
    _batch_options(p)
    _set(p, "reencrypt", _job("reencrypt"))

    p = subparsers.add_parser(
        "audit",
        help="report what the raw tables hold (for auditors; read-only)",
        description=(
            "Scan every configured column with a direct, read-only connection: rows, NULLs, "
            "envelopes, plaintext (by primary key, never by value), envelopes per key version "
            "and tenant, envelopes under another tenant's key, guard status; with "
            "--master-key also authenticates every envelope. Lists unconfigured columns that "
            "look like PII. Exit 1 on any finding."
        ),
    )
    _common(p, master=True)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--list", type=int, default=20, metavar="N", help="primary keys listed per finding"
    )
    p.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not on a terminal"
    )
    _set(p, "audit", _audit)
