"""One TLS + SCRAM PostgreSQL for all auth tests, and pgseal processes in front of it.

The server is Debian's PostgreSQL (the pip build has no OpenSSL) with
``ssl=on``, ``password_encryption=scram-sha-256`` and a pg_hba.conf that gives
each test user its own method. Certificates come from ``trustme``: one CA, one
certificate for Postgres and a different one for pgseal, so that a client
binding to the wrong one is noticed.
"""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
import trustme

from proxy.auth import ScramSecret
from proxy.embedded import EmbeddedPostgres, find_binaries
from tests.pgseal_process import PgsealProcess, start_pgseal

PASSWORDS = {
    "scram_user": "scram-pw",
    "md5_user": "md5-pw",
    "password_user": "cleartext-pw",
    "file_plain": "plain-pw",
    "file_salted": "salted-pw",
}
HBA = [
    "local all scram_user scram-sha-256",
    "local all all trust",
    "host all trust_user 127.0.0.1/32 trust",
    "host all md5_user 127.0.0.1/32 md5",
    "host all password_user 127.0.0.1/32 password",
    "host all all 127.0.0.1/32 scram-sha-256",
]


@dataclass(frozen=True)
class AuthServer:
    cluster: EmbeddedPostgres
    ca: Path
    pgseal_cert: Path
    pgseal_key: Path
    workdir: Path

    @property
    def upstream(self) -> str:
        return f"postgresql://127.0.0.1:{self.cluster.port}/postgres"

    @property
    def service_dsn(self) -> str:
        # The superuser over the unix socket (trust): it may read pg_shadow.
        return f"postgresql://postgres@/postgres?host={self.cluster.socket_dir}&port={self.cluster.port}"

    def secret_of(self, user: str) -> str:
        return self.cluster.psql(
            f"SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'"
        ).strip()


def cancel_once_running(
    server: AuthServer, conn: psycopg.Connection[Any], query: str
) -> threading.Thread:
    """Call ``conn.cancel_safe()`` as soon as the server runs ``query``.

    A fixed delay races a loaded machine: a cancel that arrives before the
    query starts cancels nothing, and the test waits out the whole sleep. The
    thread watches pg_stat_activity (as the superuser, over the unix socket)
    instead, which also proves the statement really reached the server.
    """
    cluster = server.cluster

    def watch() -> None:
        dsn = f"host={cluster.socket_dir} port={cluster.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as watcher:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = %s",
                    (query,),
                ).fetchone()
                if row is not None and row[0] > 0:
                    conn.cancel_safe()
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _scram_text(secret: ScramSecret) -> str:
    enc = base64.b64encode
    return (
        f"SCRAM-SHA-256${secret.iterations}:{enc(secret.salt).decode()}"
        f"${enc(secret.stored_key).decode()}:{enc(secret.server_key).decode()}"
    )


@pytest.fixture(scope="package")
def auth_server() -> Iterator[AuthServer]:
    try:
        binaries = find_binaries(need_ssl=True)
    except RuntimeError as exc:
        pytest.fail(f"TLS tests need Debian's PostgreSQL (.ci/run installs it): {exc}")
    base = Path(tempfile.mkdtemp(prefix="pgseal-auth-"))
    ca = trustme.CA()
    pg_cert = ca.issue_cert("127.0.0.1", "localhost")
    pgseal_cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {}
    for name, blob in (
        ("pg.crt", pg_cert.cert_chain_pems[0].bytes()),
        ("pg.key", pg_cert.private_key_pem.bytes()),
        ("pgseal.crt", pgseal_cert.cert_chain_pems[0].bytes()),
        ("pgseal.key", pgseal_cert.private_key_pem.bytes()),
        ("ca.crt", ca.cert_pem.bytes()),
    ):
        path = base / name
        path.write_bytes(blob)
        paths[name] = path
    cluster = EmbeddedPostgres(
        datadir=base / "data",
        binaries=binaries,
        ssl_cert=paths["pg.crt"],
        ssl_key=paths["pg.key"],
        hba=HBA,
    )
    cluster.start()
    try:
        cluster.psql(
            "CREATE ROLE trust_user LOGIN;"
            f"CREATE ROLE scram_user LOGIN PASSWORD '{PASSWORDS['scram_user']}';"
            f"CREATE ROLE file_plain LOGIN PASSWORD '{PASSWORDS['file_plain']}';"
            f"CREATE ROLE file_salted LOGIN PASSWORD '{PASSWORDS['file_salted']}';"
            f"CREATE ROLE password_user LOGIN PASSWORD '{PASSWORDS['password_user']}';"
            "SET password_encryption = 'md5';"
            f"CREATE ROLE md5_user LOGIN PASSWORD '{PASSWORDS['md5_user']}';"
            "GRANT pg_read_all_stats TO scram_user, md5_user, trust_user, file_plain, "
            "password_user;"
        )
        yield AuthServer(cluster, paths["ca.crt"], paths["pgseal.crt"], paths["pgseal.key"], base)
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


def _tls_yaml(server: AuthServer, client: str, upstream: str, direct: bool = False) -> str:
    return (
        f"tls:\n  cert: {server.pgseal_cert}\n  key: {server.pgseal_key}\n"
        f"  client: {client}\n  upstream: {upstream}\n"
        + (f"  upstream_ca: {server.ca}\n" if upstream == "verify-full" else "")
        + f"  direct: {'true' if direct else 'false'}\n"
    )


def _start(
    server: AuthServer, name: str, yaml: str, upstream: str | None = None
) -> Iterator[PgsealProcess]:
    proc = start_pgseal(server.workdir / name, upstream or server.upstream, yaml)
    try:
        yield proc
    finally:
        proc.stop()
        # pgseal logs at debug level in tests: no password may be in it.
        log = proc.log_text()
        leaked = [user for user, password in PASSWORDS.items() if password in log]
        assert not leaked, f"pgseal {name} logged the password of {leaked}"


def run_psql(dsn: str, password: str) -> subprocess.CompletedProcess[str]:
    """psql -c (Debian's, libpq 15) asking which TLS the upstream leg uses."""
    return subprocess.run(
        [
            find_binaries(need_ssl=True).tool("psql"),
            "-X",
            "-A",
            "-t",
            "-d",
            dsn,
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ],
        env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def asyncpg_upstream_leg(proc: PgsealProcess, ca: Path) -> tuple[object, ...]:
    """Log in as scram_user with asyncpg over verified TLS; (upstream TLS?, current_user)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    conn = await asyncpg.connect(
        proc.dsn(user="scram_user", password=PASSWORDS["scram_user"]), ssl=ctx
    )
    try:
        row = await conn.fetchrow(
            "SELECT s.ssl, current_user FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()"
        )
        assert row is not None
        assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
        return tuple(row)
    finally:
        await conn.close()


@pytest.fixture(scope="package")
def pt_plain_upstream(auth_server: AuthServer) -> Iterator[PgsealProcess]:
    """Pass-through; clients plain or TLS; plain upstream; direct TLS on."""
    yield from _start(
        auth_server, "pt-plain", _tls_yaml(auth_server, "allow", "disable", direct=True)
    )


@pytest.fixture(scope="package")
def pt_tls_upstream(auth_server: AuthServer) -> Iterator[PgsealProcess]:
    """Pass-through; clients plain or TLS; TLS upstream (verified); direct TLS off."""
    yield from _start(auth_server, "pt-tls", _tls_yaml(auth_server, "allow", "verify-full"))


@pytest.fixture(scope="package")
def pt_unix_upstream(auth_server: AuthServer) -> Iterator[PgsealProcess]:
    """Pass-through; TLS clients; the upstream leg is the server's unix socket."""
    cluster = auth_server.cluster
    yield from _start(
        auth_server,
        "pt-unix",
        _tls_yaml(auth_server, "require", "prefer"),
        f"postgresql:///postgres?host={cluster.socket_dir}&port={cluster.port}",
    )


@pytest.fixture(scope="package")
def term_query(auth_server: AuthServer) -> Iterator[PgsealProcess]:
    """Terminate with the default auth_query; TLS required on both legs; direct TLS on."""
    yield from _start(
        auth_server,
        "term-query",
        _tls_yaml(auth_server, "require", "verify-full", direct=True)
        + f"service_dsn: {auth_server.service_dsn}\nauth:\n  mode: terminate\n",
    )


@pytest.fixture(scope="package")
def term_file(auth_server: AuthServer) -> Iterator[PgsealProcess]:
    """Terminate with auth_file: the server's own secret, a password, a re-salted secret."""
    users = auth_server.workdir / "userlist.txt"
    users.write_text(
        f'"scram_user" "{auth_server.secret_of("scram_user")}"\n'
        f'"file_plain" "{PASSWORDS["file_plain"]}"\n'
        f'"password_user" "{PASSWORDS["password_user"]}"\n'
        f'"file_salted" "{_scram_text(ScramSecret.from_password(PASSWORDS["file_salted"]))}"\n'
        f'"md5_user" "{_scram_text(ScramSecret.from_password(PASSWORDS["md5_user"]))}"\n'
    )
    yield from _start(
        auth_server,
        "term-file",
        _tls_yaml(auth_server, "allow", "require")
        + f"auth:\n  mode: terminate\n  auth_file: {users}\n",
    )


@pytest.fixture(scope="package")
def term_service_user(auth_server: AuthServer) -> Iterator[PgsealProcess]:
    """Terminate with auth_file; upstream always as scram_user with its password."""
    users = auth_server.workdir / "apps.txt"
    users.write_text('"app" "app-pw"\n')
    yield from _start(
        auth_server,
        "term-service",
        _tls_yaml(auth_server, "allow", "require")
        + f"auth:\n  mode: terminate\n  auth_file: {users}\n"
        f"  upstream_user: scram_user\n  upstream_password: {PASSWORDS['scram_user']}\n",
    )
