"""The ``pgseal`` command line (the console script, and ``python -m proxy``).

One argparse tree. Every command's parser sets ``handler`` with
``set_defaults(handler=fn)``: ``fn(args: argparse.Namespace) -> int`` returns the
exit status. Commands that live in other modules attach themselves through a
``register(subparsers)`` function (``proxy.cli_keys.register`` adds ``keys``);
they may pass ``parents=[common_options()]`` to accept ``--debug`` after the
command name.

``main`` owns failure, so that no command ever shows a traceback: a
``ConfigError`` prints its one line (``config.yaml:12: ...``) and exits 2, as do
usage errors; any other exception prints one ``pgseal: error: ...`` line and
exits 1 (``--debug`` adds the traceback); Ctrl-C exits 130. Heavy imports (the
server, asyncpg) happen inside the handlers, so ``pgseal --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from proxy import cli_keys
from proxy.logging_setup import configure_logging
from rules.config import (
    LOG_FORMATS,
    LOG_LEVELS,
    Config,
    ConfigError,
    HostPort,
    Upstream,
    load_config,
    mask_dsn,
)

__all__ = [
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "UsageError",
    "build_parser",
    "common_options",
    "main",
]

EXIT_ERROR: Final = 1
EXIT_CONFIG: Final = 2  # also argparse's status for a usage error
EXIT_INTERRUPTED: Final = 130

Handler = Callable[[argparse.Namespace], int]

_DEMO_PROXY_PORT = 6432


class UsageError(Exception):
    """Options that parse but do not make sense together; exits 2 like argparse."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pgseal")
    except PackageNotFoundError:
        return "unknown"


def common_options() -> argparse.ArgumentParser:
    """A parent parser with the options every command accepts after its name."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the Python traceback when the command fails",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgseal",
        description=(
            "pgseal is a PostgreSQL wire-protocol proxy that keeps the columns listed "
            "in config.yaml encrypted per business (tenant). Applications connect to "
            "pgseal exactly as to Postgres."
        ),
        epilog="Run 'pgseal COMMAND --help' for the options of one command.",
    )
    parser.add_argument(
        "--version", action="version", version=f"pgseal {_version()}", help="print the version"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback when a command fails"
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_serve(commands)
    _add_demo(commands)
    cli_keys.register(commands)
    return parser


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        parents=[common_options()],
        help="run the proxy",
        description=(
            "Run the proxy until SIGINT or SIGTERM; in-flight queries then get\n"
            "limits.shutdown_grace_seconds to finish. Options given here override\n"
            "the configuration file's."
        ),
        epilog=(
            "examples:\n"
            "  pgseal serve --config config.yaml\n"
            "  pgseal serve --upstream postgresql://127.0.0.1:5432/app --listen 0.0.0.0:6432"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--config",
        metavar="PATH",
        help="the configuration file (see the commented config.yaml); optional when "
        "--upstream is given, every other setting then takes its default",
    )
    serve.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="address to accept clients on (overrides 'listen'; default 127.0.0.1:6432)",
    )
    serve.add_argument(
        "--upstream",
        metavar="URL",
        help="postgresql://HOST:PORT/DATABASE of the database to proxy, without "
        "credentials (overrides 'upstream')",
    )
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="log as readable text or as one JSON object per line (overrides 'log_format')",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="least severe level to log (overrides 'log_level'; default info)",
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        type=_worker_count,
        default=1,
        help="run N server processes sharing the listen port (SO_REUSEPORT), supervised "
        "by this one; each has its own caches, kept consistent by key-change "
        "notifications; limits apply per worker (default 1: a single process)",
    )
    serve.set_defaults(handler=_serve)


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {text!r}") from None
    if not 1 <= count <= 256:
        raise argparse.ArgumentTypeError(f"must be from 1 to 256, got {count}")
    return count


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        parents=[common_options()],
        help="start PostgreSQL and pgseal on this machine and show how to connect",
        description=(
            "Start PostgreSQL (from the pip-installed binaries) and pgseal "
            "in front of it, print how to connect with psql directly and through "
            "pgseal, then run a smoke check through pgseal and stop everything. "
            "With --keep-running both stay up until Ctrl-C."
        ),
    )
    demo.add_argument(
        "--dir",
        metavar="PATH",
        help="keep PostgreSQL's data here and reuse it next time (default: a temporary "
        "directory, removed on exit)",
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="leave PostgreSQL and pgseal running until Ctrl-C instead of exiting "
        "after the smoke check",
    )
    demo.add_argument(
        "--upstream",
        metavar="DSN",
        help="use this existing PostgreSQL (postgresql://USER[:PASSWORD]@HOST:PORT/DB) "
        "instead of starting one; the credentials are only used by the smoke check",
    )
    demo.set_defaults(handler=_demo)


# -- main ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        return handler(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as exc:
        print(f"pgseal: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("pgseal: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"pgseal: error: {_describe(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _describe(exc: BaseException) -> str:
    """One line for an exception: its message, else its type."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return text or type(exc).__name__


# -- serve -----------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    if args.config is None and args.upstream is None:
        raise UsageError(
            "serve needs --config PATH, or --upstream URL to run with default settings"
        )
    if args.config is not None:
        config = load_config(args.config, listen=args.listen, upstream=args.upstream)
    else:
        config = Config.for_upstream(args.upstream).with_overrides(listen=args.listen)
    config = config.with_overrides(log_format=args.log_format, log_level=args.log_level)
    configure_logging(config.log_format, config.log_level)
    from proxy.server import run  # imported here: the server's imports are heavy

    return run(config) if args.workers == 1 else run(config, workers=args.workers)


# -- demo ------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    # The signal context is the outer one, so that it still holds while the
    # ExitStack stops pgseal and PostgreSQL.
    with _demo_signals() as shield, contextlib.ExitStack() as cleanup:
        if args.upstream is not None:
            client_dsn = args.upstream
            upstream = _upstream_of(client_dsn)
            where = None
        else:
            client_dsn, where = _start_embedded(cleanup, args.dir)
            upstream = _upstream_of(client_dsn)
        listen = HostPort("127.0.0.1", _pick_port(_DEMO_PROXY_PORT))
        proxy = _start_proxy(cleanup, upstream, listen, quiet=not args.keep_running)
        proxy_dsn = _redirect(client_dsn, listen)
        box = _demo_box(
            client_dsn, proxy_dsn, where, kept=args.dir is not None,
            keep_running=args.keep_running,
        )  # fmt: skip
        if args.keep_running:
            try:
                print(box, flush=True)
                status = proxy.wait()
            except KeyboardInterrupt:
                shield()
                print("\nstopping pgseal and PostgreSQL ...", flush=True)
                return 0
            print(f"pgseal exited unexpectedly with status {status}", file=sys.stderr)
            return EXIT_ERROR
        print(box, flush=True)
        try:
            value, version = asyncio.run(_smoke_check(proxy_dsn))
        except Exception as exc:
            raise RuntimeError(
                f"smoke check through pgseal at {listen} failed: {_describe(exc)}"
            ) from exc
        print(f"smoke check: SELECT 1 through pgseal returned {value} (PostgreSQL {version})")
        return 0 if value == 1 else EXIT_ERROR


@contextlib.contextmanager
def _demo_signals() -> Iterator[Callable[[], None]]:
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


def _start_embedded(cleanup: contextlib.ExitStack, directory: str | None) -> tuple[str, Path]:
    from proxy.embedded import EmbeddedPostgres

    if directory is not None:
        base = Path(directory).resolve()
        base.mkdir(parents=True, exist_ok=True)
    else:
        base = Path(tempfile.mkdtemp(prefix="pgseal-demo-"))
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
    cluster = EmbeddedPostgres(datadir=base / "postgres")
    # Registered before start() so that Ctrl-C during startup still stops it.
    cleanup.callback(cluster.stop if directory is not None else cluster.destroy)
    print(f"starting PostgreSQL {cluster.binaries.version} in {base} ...", flush=True)
    cluster.start()
    return cluster.dsn(), base


def _upstream_of(dsn: str) -> Upstream:
    """The DSN without its credentials: pgseal relays the client's own."""
    parts = urlsplit(dsn)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    try:
        return Upstream.parse(urlunsplit(parts._replace(netloc=netloc)))
    except ValueError as exc:
        raise UsageError(f"--upstream {exc}") from None


def _redirect(dsn: str, listen: HostPort) -> str:
    """The same DSN (user, password, database) pointed at pgseal."""
    parts = urlsplit(dsn)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    path = parts.path if parts.path not in ("", "/") else "/postgres"
    return urlunsplit(("postgresql", f"{userinfo}{listen}", path, "", ""))


def _pick_port(preferred: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_proxy(
    cleanup: contextlib.ExitStack, upstream: Upstream, listen: HostPort, *, quiet: bool
) -> subprocess.Popen[bytes]:
    # A child process rather than a thread: the server owns its event loop and
    # signal handlers. Its own session keeps Ctrl-C away from it, so that it is
    # stopped in order (SIGTERM, then PostgreSQL).
    command = [
        sys.executable, "-m", "proxy", "serve",
        "--upstream", str(upstream), "--listen", str(listen),
        "--log-level", "warning" if quiet else "info",
    ]  # fmt: skip
    proxy = subprocess.Popen(command, start_new_session=True)
    cleanup.callback(_stop_process, proxy)
    deadline = time.monotonic() + 30
    while True:
        if proxy.poll() is not None:
            raise RuntimeError(f"pgseal exited with status {proxy.returncode} before listening")
        try:
            socket.create_connection((listen.host, listen.port), timeout=1).close()
            return proxy
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"pgseal did not start listening on {listen} in 30 s") from None
            time.sleep(0.1)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=35)  # the server's default shutdown grace is 30 s
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _smoke_check(dsn: str) -> tuple[int, str]:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        value: int = await connection.fetchval("SELECT 1")
        version: str = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return value, version


def _psql() -> str:
    if shutil.which("psql"):
        return "psql"
    with contextlib.suppress(RuntimeError):
        from proxy.embedded import find_binaries

        candidate = Path(find_binaries().tool("psql"))
        if candidate.exists():
            return str(candidate)
    return "psql"


def _demo_box(
    direct: str, proxied: str, where: Path | None, *, kept: bool, keep_running: bool
) -> str:
    psql = _psql()
    lines = [
        f"PostgreSQL (direct)   {mask_dsn(direct)}",
        f"pgseal (the proxy)    {mask_dsn(proxied)}",
        "",
        "Connect through pgseal, as an application does:",
        f'  {psql} "{mask_dsn(proxied)}"',
        "Connect directly, as an auditor does:",
        f'  {psql} "{mask_dsn(direct)}"',
        "",
    ]
    if where is not None:
        lines.append(f"Data directory: {where}" + ("" if kept else " (removed on exit)"))
    lines.append(
        "Press Ctrl-C to stop both." if keep_running else "Running a smoke check, then stopping."
    )
    return _box("pgseal demo", lines)


def _box(title: str, lines: list[str]) -> str:
    width = max(len(title) + 4, *(len(line) for line in lines))
    top = f"┌─ {title} " + "─" * (width - len(title) - 1) + "┐"
    body = [f"│ {line.ljust(width)} │" for line in lines]
    return "\n".join([top, *body, "└" + "─" * (width + 2) + "┘"])
