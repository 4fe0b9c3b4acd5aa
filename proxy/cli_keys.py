"""``pgseal keys``: master keys, the key store, rotation and shredding.

::

    pgseal keys generate-master [--out PATH]
    pgseal keys init           [--dsn DSN | --config PATH] [--dry-run]
    pgseal keys rotate-master  --to ID  [--batch-size N] [--master-key SPEC ...] [--dry-run]
    pgseal keys rotate         (--tenant T | --all) [--master-key SPEC ...] [--dry-run]
    pgseal keys shred          --tenant T [--yes] [--no-vacuum] [--dry-run]
    pgseal keys list           [--tenant T] [--config PATH]
    pgseal keys destroy        --tenant T --version V [--force] [--no-vacuum] [--dry-run]

Every subcommand that talks to the database takes ``--dsn`` (pgseal's service
DSN) and/or ``--config PATH`` (``service_dsn`` and ``master_key`` are read from
it; explicit options win), plus repeatable ``--master-key env:VAR|file:PATH``
(the first is the current key). The work is done by ``crypto.rotation`` and
``crypto.store``; this module only parses, runs and reports. Handlers are set
with ``set_defaults(func=..., handler=...)`` and return the exit status: 0 on
success, 1 on any error (one line on stderr, never a traceback), 2 for a bad
configuration file (as ``pgseal`` does for every command). Nothing printed ever
contains key bytes; ``generate-master`` prints the new key only to stdout (or
writes it to a 0600 file with ``--out``).

With ``--config``, ``list`` also counts the values under each data-key version
in the configured columns (``proxy.audit.key_version_usage``) and ``destroy``
refuses a retired version that still seals any. :func:`command_handler` is the
one error wrapper of every ``pgseal`` subcommand outside ``proxy.cli`` (here and
in ``proxy.cli_dba``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import asyncpg

    from crypto.master import MasterKeyRing
    from crypto.store import KeyInfo, KeyStore
    from proxy.audit import KeyVersionUsage

__all__ = ["CommandError", "command_handler", "register", "set_handler"]

Handler = Callable[[argparse.Namespace], int]
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2


class CommandError(Exception):
    """A failure the user can fix; printed as one line."""


def _print(text: str = "", stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def _mask(dsn: str) -> str:
    try:
        from rules.config import mask_dsn
    except ImportError:  # pragma: no cover - rules is part of pgseal
        return "(dsn)"
    return mask_dsn(dsn)


# -- option resolution ---------------------------------------------------------


def _config(args: argparse.Namespace) -> Any | None:
    path = getattr(args, "config", None)
    if not path:
        return None
    try:
        from rules.config import load_config
    except ImportError as exc:
        raise CommandError(f"--config is not available in this build ({exc})") from None
    return load_config(path)


def _dsn(args: argparse.Namespace) -> str:
    if args.dsn:
        return str(args.dsn)
    config = _config(args)
    if config is not None and config.service_dsn:
        return str(config.service_dsn)
    raise CommandError("no database given: pass --dsn DSN or --config PATH with service_dsn")


def _ring(args: argparse.Namespace) -> MasterKeyRing:
    from crypto.master import load_master_keys

    specs: list[str] = list(args.master_key or [])
    if not specs:
        config = _config(args)
        if config is not None:
            specs = list(config.master_keys)
    if not specs:
        raise CommandError(
            "no master key given: pass --master-key env:VAR or file:PATH (or --config PATH)"
        )
    return load_master_keys(specs)


async def _with_connection(
    dsn: str, work: Callable[[asyncpg.Connection[Any]], Awaitable[int]]
) -> int:
    """Run ``work`` on one direct connection, closed whatever happens."""
    import asyncpg

    try:
        con = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise CommandError(f"cannot connect to {_mask(dsn)}: {exc}") from None
    try:
        return await work(con)
    finally:
        await con.close()


async def _with_store(dsn: str, work: Callable[[KeyStore], Awaitable[int]]) -> int:
    from crypto.store import KeyStore

    return await _with_connection(dsn, lambda con: work(KeyStore(con)))


def command_handler(
    command: str,
    body: Callable[[argparse.Namespace], int],
    *,
    errors: Callable[[], tuple[type[Exception], ...]] = tuple,
    interrupted: str = "interrupted",
) -> Handler:
    """Wrap a command body so every failure is one line and a status code.

    The one wrapper of every command in this module and in ``proxy.cli_dba``
    (``command`` is the full name after ``pgseal``, e.g. ``"keys list"``):
    a bad config file exits 2 with its line-numbered message; a failure the
    user can fix (``CommandError``, ``CryptoError``, those ``errors()`` returns:
    a function, so that a command's heavy modules load only when it runs), a
    database or network error exits 1 with ``pgseal <command>: error: ...``;
    anything else is a bug, still one line, with the traceback under ``--debug``.
    """

    def handler(args: argparse.Namespace) -> int:
        import asyncpg

        from crypto.errors import CryptoError
        from rules.config import ConfigError

        prefix = f"pgseal {command}: error:"
        user_errors: tuple[type[Exception], ...] = (CommandError, CryptoError, *errors())
        try:
            return body(args)
        except ConfigError as exc:
            _print(f"pgseal {command}: {exc}", sys.stderr)
            return EXIT_CONFIG
        except user_errors as exc:
            _print(f"{prefix} {exc}", sys.stderr)
        except asyncpg.PostgresError as exc:
            _print(f"{prefix} database error {exc.sqlstate}: {exc}", sys.stderr)
        except (OSError, asyncpg.InterfaceError) as exc:
            _print(f"{prefix} {exc}", sys.stderr)
        except KeyboardInterrupt:
            _print(f"pgseal {command}: {interrupted}", sys.stderr)
            return 130
        except Exception as exc:  # a bug: still one line, unless --debug
            _print(f"{prefix} unexpected {type(exc).__name__}: {exc}", sys.stderr)
        if getattr(args, "debug", False):
            traceback.print_exc()
        return EXIT_ERROR

    return handler


def set_handler(parser: argparse.ArgumentParser, handler: Handler) -> None:
    """Make ``handler`` the parser's command (``func`` and ``handler``: both
    spellings of the dispatch convention, see ``proxy.cli``)."""
    parser.set_defaults(func=handler, handler=handler)


# -- commands ------------------------------------------------------------------


def _generate_master(args: argparse.Namespace) -> int:
    from crypto.master import LocalMasterKey, generate_master_key

    text = generate_master_key()
    key = LocalMasterKey.from_text(text, "generated")
    key_id = key.key_id
    key.wipe()
    if args.out:
        try:
            fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CommandError(f"{args.out} already exists; refusing to overwrite a key") from None
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text + "\n")
        _print(f"wrote a new master key to {args.out} (mode 0600)")
        _print(f"master key id: {key_id}")
        _print(f"use it with: --master-key file:{os.path.abspath(args.out)}")
        return EXIT_OK
    _print(text)
    _print(f"master key id: {key_id}", sys.stderr)
    _print(
        "keep it secret; pass it as env:VAR (e.g. PGSEAL_MASTER_KEY) or in a 0600 file:PATH",
        sys.stderr,
    )
    return EXIT_OK


def _init(args: argparse.Namespace) -> int:
    from crypto.store import SCHEMA_SQL

    dsn = _dsn(args)

    async def work(store: KeyStore) -> int:
        exists = await store.schema_exists()
        if args.dry_run:
            state = "exists; it would be checked" if exists else "would be created"
            _print(f"dry run: the key store (schema pgseal) {state} with:")
            _print(SCHEMA_SQL)
            return EXIT_OK
        created = await store.init_schema()
        _print("created the key store (schema pgseal)" if created else "key store already present")
        return EXIT_OK

    return asyncio.run(_with_store(dsn, work))


def _rotate_master(args: argparse.Namespace) -> int:
    from crypto.rotation import rotate_master

    dsn, ring = _dsn(args), _ring(args)
    to_id = args.to.lower()

    def progress(done: int) -> None:
        _print(f"re-wrapped {done} keys so far", sys.stderr)

    async def work(store: KeyStore) -> int:
        summary = await rotate_master(
            store,
            ring,
            to_id,
            batch_size=args.batch_size,
            dry_run=args.dry_run,
            progress=progress,
        )
        usage = ", ".join(f"{mid}: {n}" for mid, n in summary.usage_before.items()) or "none"
        if summary.dry_run:
            _print(f"dry run: keys per master key now: {usage}")
            _print(f"dry run: {summary.rewrapped} keys would be re-wrapped under {to_id}")
            return EXIT_OK
        after = ", ".join(f"{mid}: {n}" for mid, n in summary.usage_after.items()) or "none"
        _print(
            f"re-wrapped {summary.rewrapped} keys under master key {to_id} "
            f"in {summary.batches} batch(es); keys per master key now: {after}"
        )
        if set(summary.usage_after) <= {to_id}:
            _print("no key needs the old master key(s) any more; they can be unloaded")
        return EXIT_OK

    return asyncio.run(_with_store(dsn, work))


def _rotate(args: argparse.Namespace) -> int:
    from crypto.rotation import rotate

    dsn, ring = _dsn(args), _ring(args)

    async def work(store: KeyStore) -> int:
        summary = await rotate(
            store, ring, tenant=args.tenant, all_tenants=args.all, dry_run=args.dry_run
        )
        if summary.dry_run:
            for p in summary.planned:
                _print(
                    f"dry run: tenant {p.tenant!r}: data key version {p.current_version} "
                    f"-> {p.current_version + 1}"
                )
            _print(f"dry run: {len(summary.planned)} tenant(s) would get a new data key")
            return EXIT_OK
        for r in summary.done:
            _print(
                f"tenant {r.tenant!r}: new data key version {r.new_version} (key id "
                f"{r.new_key_id}); older key ids still readable: "
                f"{', '.join(map(str, r.old_key_ids)) or 'none'}"
            )
        _print(
            f"rotated {len(summary.done)} tenant(s); old values keep opening, "
            "'pgseal reencrypt' moves them to the new version"
        )
        return EXIT_OK

    return asyncio.run(_with_store(dsn, work))


def _confirm_shred(args: argparse.Namespace) -> None:
    if args.yes or args.dry_run:
        return
    if not sys.stdin.isatty():
        raise CommandError("shredding is irreversible; add --yes to confirm")
    answer = input(f"type the tenant id ({args.tenant}) to destroy all its keys: ")
    if answer.strip() != args.tenant:
        raise CommandError("not confirmed; nothing was shredded")


def _shred(args: argparse.Namespace) -> int:
    from crypto.rotation import shred

    dsn = _dsn(args)
    _confirm_shred(args)

    async def work(store: KeyStore) -> int:
        summary = await shred(store, args.tenant, dry_run=args.dry_run, vacuum=not args.no_vacuum)
        live = [k for k in summary.keys if k.state != "destroyed"]
        if summary.dry_run:
            _print(
                f"dry run: {len(live)} key(s) of tenant {args.tenant!r} would be destroyed "
                f"({len(summary.keys) - len(live)} already are)"
            )
            return EXIT_OK
        assert summary.result is not None
        _print(
            f"destroyed {len(summary.result.destroyed_key_ids)} key(s) of tenant "
            f"{args.tenant!r} ({summary.result.already_destroyed} already destroyed); "
            "its values can no longer be opened by any pgseal process"
        )
        if summary.vacuumed:
            _print("vacuumed pgseal.keys (old row versions with wrapped keys removed)")
        return EXIT_OK

    return asyncio.run(_with_store(dsn, work))


def _list(args: argparse.Namespace) -> int:
    from crypto.rotation import list_keys
    from crypto.store import KeyStore

    dsn, config = _dsn(args), _config(args)

    async def work(con: asyncpg.Connection[Any]) -> int:
        keys = await list_keys(KeyStore(con), args.tenant)
        if not keys:
            _print("no keys" + (f" for tenant {args.tenant!r}" if args.tenant else ""))
            return EXIT_OK
        usage = None if config is None else await _usage(con, config)
        rows: list[tuple[str, ...]] = [
            ("TENANT", "KIND", "VERSION", "STATE", "KEY ID", "MASTER KEY", "CREATED")
        ]
        if usage is not None:
            rows[0] += ("VALUES",)
        for k in keys:
            row: tuple[str, ...] = (
                k.tenant,
                k.kind,
                str(k.version),
                k.state,
                str(k.key_id),
                k.master_key_id,
                k.created_at.isoformat(timespec="seconds"),
            )
            if usage is not None:
                # Blind-index keys seal no value; a destroyed key opens none.
                count = usage.get((k.tenant, k.version))
                row += (str(count) if k.kind == "data" and count is not None else "-",)
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            _print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        if usage is None:
            # On stderr: stdout stays the table alone.
            _print(
                "values per key version: pass --config PATH (its configured columns are counted)",
                sys.stderr,
            )
            return EXIT_OK
        _print_retirement(keys, usage)
        return EXIT_OK

    return asyncio.run(_with_connection(dsn, work))


async def _usage(con: asyncpg.Connection[Any], config: Any) -> dict[tuple[str, int], int]:
    """Values per (tenant, data-key version) in the config's columns (see
    ``proxy.audit.key_version_usage``); destroyed versions are left out."""
    from proxy.audit import key_version_usage

    found: list[KeyVersionUsage] = await key_version_usage(con, config.rules)
    return {(u.tenant, u.version): u.envelopes for u in found if u.state != "destroyed"}


def _print_retirement(keys: list[KeyInfo], usage: dict[tuple[str, int], int]) -> None:
    """Say, per retired data key, whether it can be destroyed or what it still seals."""
    lines = []
    for k in keys:
        if k.kind != "data" or k.state != "retired":
            continue
        count = usage.get((k.tenant, k.version), 0)
        if count:
            lines.append(
                f"tenant {k.tenant!r} version {k.version} (retired) still seals {count} "
                "value(s): run 'pgseal reencrypt --config PATH' first"
            )
        else:
            lines.append(
                f"tenant {k.tenant!r} version {k.version} (retired) seals no value: destroy it "
                f"with 'pgseal keys destroy --tenant {k.tenant} --version {k.version} "
                "--config PATH'"
            )
    if lines:
        _print()
        for line in lines:
            _print(line)


def _destroy(args: argparse.Namespace) -> int:
    from crypto.store import KeyStore

    dsn, config = _dsn(args), _config(args)
    if config is None and not args.force:
        raise CommandError(
            "cannot tell whether the version still seals values without --config PATH "
            "(its configured columns are counted); pass --config, or --force"
        )
    what = f"version {args.version} of tenant {args.tenant!r}"

    async def work(con: asyncpg.Connection[Any]) -> int:
        store = KeyStore(con)
        if config is not None:
            count = (await _usage(con, config)).get((args.tenant, args.version), 0)
            if count and not args.force:
                raise CommandError(
                    f"{what} still seals {count} value(s); run 'pgseal reencrypt --config "
                    "PATH' first (--force destroys it anyway: those values become unreadable)"
                )
            if count:
                _print(f"--force: {count} value(s) under {what} become unreadable", sys.stderr)
        if args.dry_run:
            _print(f"dry run: {what} would be destroyed")
            return EXIT_OK
        result = await store.destroy_version(args.tenant, args.version)
        if not result.destroyed_key_ids:
            _print(f"{what} was already destroyed")
            return EXIT_OK
        _print(
            f"destroyed {what} (key id {result.destroyed_key_ids[0]}); no pgseal process "
            "can open a value under it any more"
        )
        if not args.no_vacuum:
            await store.vacuum()
            _print("vacuumed pgseal.keys (old row versions with wrapped keys removed)")
        return EXIT_OK

    return asyncio.run(_with_connection(dsn, work))


# -- parser ----------------------------------------------------------------------


def _db_options(parser: argparse.ArgumentParser, *, master: bool) -> None:
    parser.add_argument("--dsn", help="pgseal's service DSN (postgresql://USER@HOST/DB)")
    parser.add_argument(
        "--config", metavar="PATH", help="read service_dsn and master_key from this config.yaml"
    )
    if master:
        parser.add_argument(
            "--master-key",
            action="append",
            metavar="SPEC",
            help="master key spec env:VAR or file:PATH; repeat for several, current first",
        )


def _dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="show what would change and change nothing"
    )


def _set(
    parser: argparse.ArgumentParser, name: str, body: Callable[[argparse.Namespace], int]
) -> None:
    set_handler(parser, command_handler(f"keys {name}", body))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``keys`` command and its subcommands to a ``pgseal`` parser."""
    keys = subparsers.add_parser(
        "keys",
        help="master keys, key store, rotation and shredding",
        description="Manage pgseal's master keys and per-tenant keys (pgseal.keys).",
    )
    keys.set_defaults(func=_help(keys), handler=_help(keys))
    sub = keys.add_subparsers(title="subcommands", metavar="SUBCOMMAND")

    p = sub.add_parser(
        "generate-master",
        help="print a new random master key (base64 of 32 bytes) and its id",
        description="Print a new random 256-bit master key as base64, for env: or file: specs.",
    )
    p.add_argument("--out", metavar="PATH", help="write the key to a new 0600 file instead")
    _set(p, "generate-master", _generate_master)

    p = sub.add_parser(
        "init",
        help="create the key store (schema pgseal) if missing",
        description="Create schema pgseal and table pgseal.keys; safe to run again.",
    )
    _db_options(p, master=False)
    _dry_run(p)
    _set(p, "init", _init)

    p = sub.add_parser(
        "rotate-master",
        help="re-wrap every key under another master key",
        description=(
            "Re-wrap every tenant key (data and index) under master key --to, in batches, "
            "one transaction each; resumable; no data rows are touched. Load the new key "
            "and every old one with --master-key."
        ),
    )
    p.add_argument("--to", required=True, metavar="ID", help="target master key id (16 hex)")
    p.add_argument("--batch-size", type=int, default=500, help="keys per transaction")
    _db_options(p, master=True)
    _dry_run(p)
    _set(p, "rotate-master", _rotate_master)

    p = sub.add_parser(
        "rotate",
        help="new data-key version for a tenant or all tenants",
        description=(
            "Make a new data-key version for new writes; old versions keep decrypting. "
            "Blind-index keys are not rotated."
        ),
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--tenant", metavar="T", help="the tenant to rotate")
    which.add_argument("--all", action="store_true", help="rotate every tenant")
    _db_options(p, master=True)
    _dry_run(p)
    _set(p, "rotate", _rotate)

    p = sub.add_parser(
        "shred",
        help="destroy all keys of a tenant (irreversible)",
        description=(
            "Destroy every key of a tenant: its values become unreadable at once in every "
            "running pgseal process. Irreversible."
        ),
    )
    p.add_argument("--tenant", required=True, metavar="T", help="the tenant to shred")
    p.add_argument("--yes", action="store_true", help="confirm without a prompt")
    p.add_argument("--no-vacuum", action="store_true", help="skip VACUUM of pgseal.keys afterwards")
    _db_options(p, master=True)
    _dry_run(p)
    _set(p, "shred", _shred)

    p = sub.add_parser(
        "list",
        help="list tenants' keys: versions, states, master key ids (never key bytes)",
        description="List key rows: tenant, kind, version, state, key id, master key id, date.",
    )
    p.add_argument("--tenant", metavar="T", help="only this tenant")
    _db_options(p, master=True)
    _set(p, "list", _list)

    p = sub.add_parser(
        "destroy",
        help="destroy one retired data-key version that seals no value any more",
        description=(
            "Destroy one retired data-key version of a tenant (wrapped key removed), the "
            "last step of a rotation after 'pgseal reencrypt'. With --config the configured "
            "columns are counted first, and a version that still seals values is refused "
            "unless --force. The active version is always refused."
        ),
    )
    p.add_argument("--tenant", required=True, metavar="T", help="the tenant")
    p.add_argument("--version", required=True, type=int, metavar="V", help="the data-key version")
    p.add_argument(
        "--force", action="store_true", help="destroy even if values (or no count) say otherwise"
    )
    p.add_argument("--no-vacuum", action="store_true", help="skip VACUUM of pgseal.keys afterwards")
    _db_options(p, master=False)
    _dry_run(p)
    _set(p, "destroy", _destroy)


def _help(parser: argparse.ArgumentParser) -> Handler:
    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG

    return show
