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
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Final

from proxy import cli_dba, cli_keys
from proxy.logging_setup import configure_logging
from rules.config import (
    LOG_FORMATS,
    LOG_LEVELS,
    Config,
    ConfigError,
    load_config,
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
    cli_dba.register(commands)
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
    from proxy import demo  # the demo's own module: proxy/demo.py

    demo.add_parser(commands)


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
