"""``pgseal demo``: the invoicing app through pgseal on this machine, in one command.

What a new user sees first, so it does the whole deployment for real, in order:
PostgreSQL (embedded from the pip-installed binaries, in a temporary or given
directory; or ``--upstream DSN``), a fresh master key (random, only in memory and
in pgseal's environment, never printed or written), the key store
(``pgseal.keys``), the app's bytea schema (``app.schema.migrate``, directly, as a
DBA would), then ``pgseal serve`` as a child process with the root config.yaml's
``tables:`` rules. The app (``app.scenario``, plain asyncpg) plays its story for
three businesses through pgseal. The demo then shows, side by side, what the app
read and what an auditor reading the same rows directly sees (envelopes, their key
ids, the per-business keys, wrapped), and two things pgseal refuses: a query it
cannot run on ciphertext (0A000) and a session pinned to one business reading
another's data (42501).

The demo is the one place where ``proxy`` imports ``app``: it is the app's
showcase, imported lazily so that ``pgseal serve`` never loads it.

Output is rich tables for people, not logs: pgseal's own log goes to a file in the
demo's work directory and is shown (its tail) only if pgseal fails to start. Any
failure is one line from ``proxy.cli.main``. Cleanup (pgseal, then the demo
database or the embedded PostgreSQL, then the work directory) runs on normal exit,
on Ctrl-C and on SIGTERM, in that order, with both signals ignored meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import asyncpg
    from rich.console import Console

__all__ = ["add_parser", "run_demo"]

_PREFERRED_PROXY_PORT: Final = 6432
_MASTER_KEY_ENV: Final = "PGSEAL_DEMO_MASTER_KEY"
_EMBEDDED_DATABASE: Final = "invorce"
#: The root config.yaml, whose ``tables:`` section holds the app's rules.
_RULES_FILE: Final = Path(__file__).resolve().parents[1] / "config.yaml"

#: What the side-by-side table shows for each business: (label, table, column).
_SHOWN_FIELDS: Final = (
    ("customer", "customers", "company_name"),
    ("customer email", "customers", "email"),
    ("customer tax id", "customers", "tax_id"),
    ("invoice notes", "invoices", "notes"),
    ("line item", "line_items", "description"),
    ("payment reference", "payments", "reference"),
    ("journey", "mileage_logs", "to_place"),
    ("miles", "mileage_logs", "distance_miles"),
    ("IBAN", "bank_accounts", "iban"),
    ("Stripe API key", "integration_credentials", "api_key"),
)

#: Queries pgseal must refuse (0A000), with what a reader should take from each.
_UNSAFE_QUERIES: Final = (
    (
        "SELECT company_name FROM customers ORDER BY email",
        "sorting needs the plaintext, which only the app has; the query never reaches PostgreSQL",
    ),
    (
        "SELECT company_name FROM customers WHERE email LIKE '%@example'",
        "pattern search cannot run on ciphertext; the query never reaches PostgreSQL",
    ),
)


class DemoError(Exception):
    """A step of the demo failed; one line for the user."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``pgseal demo`` (called from ``proxy.cli.build_parser``)."""
    from proxy.cli import common_options

    demo = commands.add_parser(
        "demo",
        parents=[common_options()],
        help="run the invoicing app through pgseal on this machine and show what is encrypted",
        description=(
            "Start PostgreSQL (from the pip-installed binaries), create a master key and "
            "the key store, apply the invoicing app's schema, start pgseal in front of "
            "it, run the app for three businesses through pgseal, and show side by side "
            "what the app reads and what an auditor sees in the database. Then stop and "
            "clean up, or with --keep-running stay up until Ctrl-C."
        ),
    )
    demo.add_argument(
        "--dir",
        metavar="PATH",
        help="keep PostgreSQL's data here (default: a temporary directory, removed on "
        f"exit); the demo database {_EMBEDDED_DATABASE!r} in it is recreated each run",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave PostgreSQL and pgseal running and print how to connect with psql; "
        "Ctrl-C stops and cleans up",
    )
    demo.add_argument(
        "--upstream",
        metavar="DSN",
        help="use this existing PostgreSQL (postgresql://USER[:PASSWORD]@HOST:PORT/DB, a "
        "user that may create databases) instead of starting one; the demo creates its "
        "own database there and drops it on exit",
    )
    demo.add_argument(
        "--bcrypt-rounds",
        type=int,
        default=12,
        metavar="N",
        help="bcrypt work factor for the demo users' passwords (default 12, as in production)",
    )
    demo.set_defaults(handler=run_demo)


# -- the run -------------------------------------------------------------------------


@dataclass
class _Deployment:
    """Where everything runs: filled in step by step."""

    workdir: Path
    admin_dsn: str = ""  # a superuser-ish DSN on the server (database postgres or given)
    direct_dsn: str = ""  # the demo database, directly: the DBA's and the auditor's view
    app_dsn: str = ""  # the demo database through pgseal: the app's view
    data_dir: Path | None = None  # the embedded cluster's, if any
    kept: bool = False


def run_demo(args: argparse.Namespace) -> int:
    """The ``demo`` command's handler; returns the exit status."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 150)
    if args.bcrypt_rounds < 4 or args.bcrypt_rounds > 31:
        from proxy.cli import UsageError

        raise UsageError("--bcrypt-rounds must be between 4 and 31")
    # The signal context is the outer one, so that it still holds while the
    # ExitStack stops pgseal and PostgreSQL.
    with _interrupt_on_sigterm() as shield, contextlib.ExitStack() as cleanup:
        try:
            return _run(console, args, cleanup)
        except KeyboardInterrupt:
            shield()
            console.print("\nstopping pgseal and PostgreSQL, cleaning up ...")
            # With --keep-running, Ctrl-C is the normal way to finish.
            return 0 if args.keep_running else 130
        finally:
            shield()
    return 0  # pragma: no cover - mypy: the with block always returns


def _run(console: Console, args: argparse.Namespace, cleanup: contextlib.ExitStack) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="pgseal-demo-run-"))
    cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
    where = _Deployment(workdir)
    console.rule("[bold]pgseal demo[/]: an invoicing app whose database never sees its secrets")
    if args.upstream is not None:
        _use_upstream(console, cleanup, where, args.upstream)
    else:
        _start_embedded(console, cleanup, where, args.dir)
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    _step(console, "generated a master key (kept in memory only; never printed or stored)")
    asyncio.run(_prepare_database(where.direct_dsn))
    _step(console, "created the key store (schema pgseal) and the app's tables")
    preferred = _PREFERRED_PROXY_PORT
    for attempt in range(3):
        proxy_port = _pick_port(preferred)
        try:
            proxy = _start_proxy(cleanup, where, proxy_port, master_key)
            break
        except DemoError as exc:
            # The port was free a moment ago; another program may have taken it.
            if "already in use" not in str(exc) or attempt == 2:
                raise
            preferred = 0
    _step(console, f"started pgseal on 127.0.0.1:{proxy_port} in front of the database")
    with console.status("the app runs its story for three businesses through pgseal ..."):
        findings = asyncio.run(_play(where, args.bcrypt_rounds))
    _step(console, "the app ran its story for three businesses through pgseal")
    _show(console, findings)
    if not args.keep_running:
        console.print("\ndone; stopping pgseal and PostgreSQL and cleaning up.")
        return 0
    _show_connect(console, where, findings.search_example)
    status = proxy.wait()
    raise DemoError(f"pgseal exited unexpectedly with status {status}")


def _step(console: Console, text: str) -> None:
    console.print(f"[green]✓[/] {text}")


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[Callable[[], None]]:
    """SIGTERM unwinds like Ctrl-C, so the demo's cleanup runs either way; the
    yielded ``shield()`` ignores both while that cleanup runs."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    def shield() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield shield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: installed outside Python, leave it
                signal.signal(sig, handler)


# -- PostgreSQL --------------------------------------------------------------------


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def _start_embedded(
    console: Console, cleanup: contextlib.ExitStack, where: _Deployment, directory: str | None
) -> None:
    from proxy.embedded import EmbeddedPostgres, free_port

    if directory is not None:
        base = Path(directory).resolve()
        base.mkdir(parents=True, exist_ok=True)
    else:
        base = Path(tempfile.mkdtemp(prefix="pgseal-demo-"))
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
    cluster = EmbeddedPostgres(datadir=base / "postgres")
    # Registered before start() so that Ctrl-C during startup still stops it.
    cleanup.callback(cluster.stop if directory is not None else cluster.destroy)
    with console.status(f"starting PostgreSQL {cluster.binaries.version} ..."):
        for attempt in range(3):
            try:
                cluster.start()
                break
            except RuntimeError as exc:
                # The free port it was given can be taken by another program
                # before PostgreSQL binds it; then try another one.
                if "already in use" not in str(exc) or attempt == 2:
                    raise DemoError(f"PostgreSQL did not start: {exc}") from None
                cluster.port = free_port()
    where.admin_dsn = cluster.dsn()
    where.direct_dsn = _with_database(where.admin_dsn, _EMBEDDED_DATABASE)
    where.data_dir = base
    where.kept = directory is not None
    asyncio.run(_recreate_database(where.admin_dsn, _EMBEDDED_DATABASE))
    note = "kept" if where.kept else "removed on exit"
    _step(
        console,
        f"started PostgreSQL {cluster.binaries.version} in {base} ({note}),"
        f" database {_EMBEDDED_DATABASE!r}",
    )


def _use_upstream(
    console: Console, cleanup: contextlib.ExitStack, where: _Deployment, dsn: str
) -> None:
    from rules.config import mask_dsn

    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise DemoError(
            f"--upstream {mask_dsn(dsn)}: expected postgresql://USER[:PASSWORD]@HOST:PORT/DB"
        )
    name = "pgseal_demo_" + secrets.token_hex(3)
    where.admin_dsn = dsn
    where.direct_dsn = _with_database(dsn, name)
    asyncio.run(_recreate_database(dsn, name))
    # Dropped after pgseal has stopped (callbacks run last-in first-out).
    cleanup.callback(lambda: asyncio.run(_drop_database(dsn, name)))
    _step(console, f"created database {name!r} on {mask_dsn(dsn)} (dropped on exit)")


async def _admin(dsn: str) -> asyncpg.Connection[asyncpg.Record]:
    import asyncpg

    from rules.config import mask_dsn

    try:
        return await asyncpg.connect(dsn, timeout=15)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DemoError(f"cannot connect to {mask_dsn(dsn)}: {exc}") from None


async def _recreate_database(admin_dsn: str, name: str) -> None:
    conn = await _admin(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(admin_dsn: str, name: str) -> None:
    conn = await _admin(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _prepare_database(direct_dsn: str) -> None:
    """The key store and the app's bytea schema, over a direct connection."""
    from app.schema import EncryptedStorage, migrate
    from crypto.store import KeyStore

    conn = await _admin(direct_dsn)
    try:
        await KeyStore(conn).init_schema()
    finally:
        await conn.close()
    await migrate(direct_dsn, storage=EncryptedStorage.BYTEA)


# -- pgseal ------------------------------------------------------------------------


def _pick_port(preferred: int) -> int:
    """``preferred`` if nothing listens on it, else a free port (0: any free port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _app_rules() -> dict[str, Any]:
    import yaml

    try:
        document = yaml.safe_load(_RULES_FILE.read_text())
    except FileNotFoundError:
        raise DemoError(
            f"{_RULES_FILE} not found: run the demo from a clone of pgseal"
            " (pip install -e .), whose config.yaml holds the app's rules"
        ) from None
    tables: dict[str, Any] = document["tables"]
    return tables


def _start_proxy(
    cleanup: contextlib.ExitStack, where: _Deployment, port: int, master_key: str
) -> subprocess.Popen[bytes]:
    import yaml

    from rules.config import mask_dsn

    upstream = urlsplit(where.direct_dsn)
    config = {
        "listen": f"127.0.0.1:{port}",
        # No credentials: pgseal relays the app's own.
        "upstream": f"postgresql://{upstream.hostname}:{upstream.port or 5432}{upstream.path}",
        "service_dsn": where.direct_dsn,
        "master_key": f"env:{_MASTER_KEY_ENV}",
        "log_level": "warning",
        "tables": _app_rules(),
    }
    path = where.workdir / "pgseal-demo.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = where.workdir / "pgseal.log"
    # A child process rather than a thread: the server owns its event loop and
    # signal handlers. Its own session keeps Ctrl-C away from it, so that it is
    # stopped in order (SIGTERM, then PostgreSQL).
    with log_path.open("wb") as log:
        proxy = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(path)],
            env={**os.environ, _MASTER_KEY_ENV: master_key},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cleanup.callback(_stop_process, proxy)
    where.app_dsn = _through(where.direct_dsn, port)
    deadline = time.monotonic() + 30
    while True:
        if proxy.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise DemoError(
                f"pgseal exited with status {proxy.returncode} before listening"
                + (f": {' / '.join(tail)}" if tail else "")
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proxy
        except OSError:
            if time.monotonic() > deadline:
                raise DemoError(
                    f"pgseal did not start listening on 127.0.0.1:{port} in 30 s"
                    f" (upstream {mask_dsn(where.direct_dsn)})"
                ) from None
            time.sleep(0.1)


def _through(direct_dsn: str, port: int) -> str:
    """The same DSN (user, password, database) pointed at pgseal."""
    parts = urlsplit(direct_dsn)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(("postgresql", f"{userinfo}127.0.0.1:{port}", parts.path, "", ""))


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=35)  # the server's default shutdown grace is 30 s
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the story and the audit -------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    """One value: what the app read through pgseal, what is on disk."""

    business: str
    label: str
    plaintext: str
    envelope: bytes | None


@dataclass(frozen=True)
class _Key:
    business: str
    key_id: int
    kind: str
    version: int
    state: str
    master_key_id: str
    wrapped_size: int


@dataclass(frozen=True)
class _Refusal:
    what: str
    sql: str
    sqlstate: str
    message: str
    why: str


@dataclass
class _Findings:
    readings: list[tuple[str, str, str, str, bool]] = field(default_factory=list)
    pairs: list[_Pair] = field(default_factory=list)
    keys: list[_Key] = field(default_factory=list)
    refusals: list[_Refusal] = field(default_factory=list)
    #: (business id, a customer's email) for the psql search example.
    search_example: tuple[int, str] | None = None


async def _play(where: _Deployment, rounds: int) -> _Findings:
    import asyncpg

    from app.db import open_pool
    from app.scenario import run_scenario

    findings = _Findings()
    pool = await open_pool(where.app_dsn, max_size=4)
    try:
        story = await run_scenario(pool, rounds=rounds)
    finally:
        await pool.close()
    findings.readings = [(r.business, r.who, r.action, r.result, r.refused) for r in story.readings]
    names = dict(story.businesses)
    direct = await _admin(where.direct_dsn)
    app = await asyncpg.connect(where.app_dsn, timeout=15)
    try:
        for business_id, name in story.businesses:
            # The app's view uses a session pinned to the business, as a
            # multi-tenant app would; the auditor reads the same row directly.
            await app.execute(f"SET pgseal.tenant = '{business_id}'")
            for label, table, column in _SHOWN_FIELDS:
                row_id = await direct.fetchval(
                    f"SELECT min(id) FROM {table} WHERE business_id = $1", business_id
                )
                raw = await direct.fetchval(f"SELECT {column} FROM {table} WHERE id = $1", row_id)
                seen = await app.fetchval(
                    f"SELECT {column} FROM {table} WHERE business_id = $1 AND id = $2",
                    business_id,
                    row_id,
                )
                findings.pairs.append(_Pair(name, label, "" if seen is None else str(seen), raw))
                if column == "email" and seen is not None:
                    findings.search_example = (business_id, str(seen))
        await app.execute("RESET pgseal.tenant")
        rows = await direct.fetch(
            "SELECT key_id, tenant, kind, version, state, master_key_id,"
            " octet_length(wrapped_key) AS wrapped_size FROM pgseal.keys ORDER BY tenant, kind"
        )
        for r in rows:
            owner = names.get(int(r["tenant"])) if r["tenant"].isdigit() else None
            findings.keys.append(
                _Key(
                    owner or f"tenant {r['tenant']}",
                    r["key_id"],
                    r["kind"],
                    r["version"],
                    r["state"],
                    r["master_key_id"],
                    r["wrapped_size"] or 0,
                )
            )
        for sql, why in _UNSAFE_QUERIES:
            findings.refusals.append(await _attempt(app, "unsafe query", sql, why))
        (first_id, first), (second_id, second) = story.businesses[0], story.businesses[1]
        await app.execute(f"SET pgseal.tenant = '{second_id}'")
        findings.refusals.append(
            await _attempt(
                app,
                f"{second} reads {first}'s customers",
                f"SELECT company_name, email FROM customers WHERE business_id = {first_id}",
                f"the session belongs to {second}: pgseal opens only its values, and"
                " refuses the rows PostgreSQL sent back",
            )
        )
    finally:
        await app.close()
        await direct.close()
    return findings


async def _attempt(
    conn: asyncpg.Connection[asyncpg.Record], what: str, sql: str, why: str
) -> _Refusal:
    import asyncpg

    try:
        rows = await conn.fetch(sql)
    except asyncpg.PostgresError as exc:
        return _Refusal(what, sql, exc.sqlstate or "", str(exc), why)
    raise DemoError(f"pgseal did not refuse {sql!r} ({len(rows)} rows came back)")


# -- showing it --------------------------------------------------------------------


def _envelope_cells(raw: bytes | None) -> tuple[str, str]:
    """An envelope as an auditor would describe it: (key id, version and a few bytes)."""
    if raw is None:
        return "", "NULL"
    if len(raw) < 21 or raw[0] != 1:
        return "", f"NOT AN ENVELOPE ({len(raw)} bytes)"
    key_id = int.from_bytes(raw[1:9], "big")
    # Decimal, as pgseal.keys.key_id (bigint) and pgseal's error messages show it.
    return str(key_id), f"v1 {raw[21:25].hex()}… {len(raw)} B"


def _show(console: Console, findings: _Findings) -> None:
    from rich.markup import escape
    from rich.table import Table

    story = Table(title="What the app did and read (through pgseal, as usual)", expand=False)
    for name in ("business", "who", "did", "and got"):
        story.add_column(name, overflow="fold")
    first = findings.readings[0][0] if findings.readings else ""
    previous = ""
    for business, who, action, result, refused in findings.readings:
        if business != first and not refused:
            continue  # the other businesses did the same; their data is below
        style = "yellow" if refused else None
        story.add_row(business if business != previous else "", who, action, result, style=style)
        previous = business
    console.print()
    console.print(story)
    console.print(
        "[dim](the other two businesses did the same; their data is in the next table)[/]"
    )

    console.print()
    console.print(
        "[bold]The same rows, two views[/]: what the app reads through pgseal, and what an"
        " auditor reading PostgreSQL directly finds in the same cells (an envelope: format"
        " version, the id of the key that sealed it, AES-256-GCM ciphertext)."
    )
    businesses = list(dict.fromkeys(pair.business for pair in findings.pairs))
    for business in businesses:
        pairs = Table(title=business, expand=False, title_style="bold")
        pairs.add_column("field", no_wrap=True)
        pairs.add_column("the app reads", style="green", overflow="fold")
        pairs.add_column("on disk: key id", style="magenta", no_wrap=True)
        pairs.add_column("on disk: bytes", style="magenta", no_wrap=True)
        for pair in findings.pairs:
            if pair.business == business:
                pairs.add_row(pair.label, pair.plaintext, *_envelope_cells(pair.envelope))
        console.print()
        console.print(pairs)

    masters = sorted({key.master_key_id for key in findings.keys})
    keys = Table(
        title="pgseal.keys: one key per business and purpose, each stored wrapped"
        f" (AES-256-GCM) by master key {', '.join(masters)}",
        expand=False,
    )
    keys.add_column("business", overflow="fold")
    keys.add_column("purpose", no_wrap=True)
    keys.add_column("key id", no_wrap=True, min_width=19)
    keys.add_column("version", no_wrap=True)
    keys.add_column("state", no_wrap=True)
    keys.add_column("stored", no_wrap=True)
    for key in findings.keys:
        keys.add_row(
            key.business,
            "data" if key.kind == "data" else "search index",
            str(key.key_id),
            str(key.version),
            key.state,
            f"wrapped, {key.wrapped_size} B",
        )
    console.print()
    console.print(keys)

    refusals = Table(title="What pgseal refuses", expand=False)
    refusals.add_column("attempt, and why it cannot work", overflow="fold", ratio=2)
    refusals.add_column("the SQL, and pgseal's answer", overflow="fold", ratio=3)
    for r in findings.refusals:
        refusals.add_row(
            f"[bold]{escape(r.what)}[/]\n[dim]{escape(r.why)}[/]",
            f"[cyan]{escape(r.sql)}[/]\n[red]ERROR {r.sqlstate}[/] {escape(r.message)}",
        )
        refusals.add_section()
    console.print()
    console.print(refusals)
    console.print(
        "\nThe key id of every envelope above is its business's data key in pgseal.keys:"
        " each business's values open only with its own key, and the database holds that"
        " key only wrapped by the master key, which never leaves pgseal's memory."
    )


def _show_connect(console: Console, where: _Deployment, search: tuple[int, str] | None) -> None:
    from rich.markup import escape
    from rich.panel import Panel

    from rules.config import mask_dsn

    psql = _psql()
    lines = [
        "[bold]Through pgseal[/] (as the app; values decrypted):",
        f'  {psql} "{escape(mask_dsn(where.app_dsn))}"',
        "    SELECT company_name, email, phone FROM customers;",
    ]
    if search is not None:
        # A blind index is keyed per business: an equality search names it.
        business_id, email = search
        lines += [
            f"    SET pgseal.tenant = '{business_id}';",
            f"    SELECT id, company_name FROM customers WHERE business_id = {business_id}"
            f" AND email = '{escape(email)}';",
        ]
    lines += [
        "",
        "[bold]Directly[/] (as an auditor; ciphertext only):",
        f'  {psql} "{escape(mask_dsn(where.direct_dsn))}"',
        "    SELECT company_name, email, email_bidx FROM customers;",
        "    SELECT tenant, kind, version, state FROM pgseal.keys;",
        "",
    ]
    if where.data_dir is not None:
        note = "kept" if where.kept else "removed on exit"
        lines.append(f"PostgreSQL's data: {where.data_dir} ({note})")
    lines.append("Press Ctrl-C to stop pgseal and PostgreSQL and clean up.")
    console.print()
    console.print(Panel("\n".join(lines), title="pgseal demo is running", expand=False))


def _psql() -> str:
    if shutil.which("psql"):
        return "psql"
    with contextlib.suppress(RuntimeError):
        from proxy.embedded import find_binaries

        candidate = Path(find_binaries().tool("psql"))
        if candidate.exists():
            return str(candidate)
    return "psql"
