"""auth.mode: terminate against a real TLS + SCRAM PostgreSQL, with real clients.

pgseal checks the client's SCRAM proof itself (channel binding to its own
certificate) and logs in upstream over TLS with the recovered ClientKey, a
password from auth_file, or the configured upstream_user.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import warnings
from collections.abc import Iterator

import asyncpg
import psycopg
import pytest

from tests.auth.conftest import (
    PASSWORDS,
    AuthServer,
    asyncpg_upstream_leg,
    cancel_once_running,
    run_psql,
)
from tests.pgseal_process import PgsealProcess


def _connect(
    proc: PgsealProcess, user: str, password: str, **params: str
) -> psycopg.Connection[tuple[object, ...]]:
    params.setdefault("sslmode", "require")
    return psycopg.connect(proc.dsn(user=user, password=password, **params), connect_timeout=10)


def _upstream_leg(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[object, ...]:
    row = conn.execute(
        "SELECT s.ssl, s.version, current_user FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()"
    ).fetchone()
    assert row is not None
    return row


@pytest.mark.parametrize("channel_binding", ["require", "prefer", "disable"])
def test_auth_query_scram_plus_both_legs_tls(
    term_query: PgsealProcess, channel_binding: str
) -> None:
    before = term_query.log_text().count("authenticated the client with SCRAM-SHA-256-PLUS")
    with _connect(
        term_query, "scram_user", PASSWORDS["scram_user"], channel_binding=channel_binding
    ) as conn:
        assert conn.pgconn.ssl_in_use
        # libpq binds unless told not to; pgseal's log says which mechanism ran.
        after = term_query.log_text().count("authenticated the client with SCRAM-SHA-256-PLUS")
        assert after - before == (0 if channel_binding == "disable" else 1)
        tls, version, user = _upstream_leg(conn)
        assert tls is True
        assert version in ("TLSv1.2", "TLSv1.3")
        assert user == "scram_user"


class Refused:
    """How a login failed, seen by psycopg (libpq's text) and asyncpg (SQLSTATE)."""

    def __init__(self, sqlstate: str, text: str) -> None:
        self.sqlstate = sqlstate
        self.text = text

    def __str__(self) -> str:
        return self.text


def _fails(proc: PgsealProcess, user: str, password: str, **params: str) -> Refused:
    with pytest.raises(psycopg.OperationalError) as err:
        _connect(proc, user, password, **params)
    # libpq does not hand the SQLSTATE of a failed login to psycopg; asyncpg
    # does: the same login again through it.
    ctx: ssl.SSLContext | bool = False
    if params.get("sslmode", "require") != "disable":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    # asyncpg's ssl=False is sslmode=disable.

    async def again() -> asyncpg.PostgresError:
        with pytest.raises(asyncpg.PostgresError) as again_err:
            await asyncpg.connect(proc.dsn(user=user, password=password), ssl=ctx)
        return again_err.value

    with _collect_asyncpg_leftovers():
        same = asyncio.run(again())
    assert str(same) in str(err.value)
    return Refused(str(same.sqlstate), str(err.value))


@contextlib.contextmanager
def _collect_asyncpg_leftovers() -> Iterator[None]:
    """asyncpg can leave the socket of a refused TLS login for the GC (a client-side
    ResourceWarning that would surface in a later test): collect it here."""
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def test_wrong_password_and_unknown_user_get_the_same_28p01(term_query: PgsealProcess) -> None:
    wrong = _fails(term_query, "scram_user", "nope")
    unknown = _fails(term_query, "nobody_here", "nope")
    assert wrong.sqlstate == unknown.sqlstate == "28P01"
    assert 'password authentication failed for user "scram_user"' in str(wrong)
    assert 'password authentication failed for user "nobody_here"' in str(unknown)
    assert "nope" not in term_query.log_text()


def test_md5_secret_on_server_is_refused_like_a_wrong_password(term_query: PgsealProcess) -> None:
    err = _fails(term_query, "md5_user", PASSWORDS["md5_user"])
    assert err.sqlstate == "28P01"
    assert "has no SCRAM-SHA-256 secret on the server" in term_query.log_text()


def test_plain_client_refused_when_tls_required(term_query: PgsealProcess) -> None:
    err = _fails(term_query, "scram_user", PASSWORDS["scram_user"], sslmode="disable")
    assert err.sqlstate == "28000"
    assert "requires TLS" in str(err)


async def test_asyncpg_over_tls(term_query: PgsealProcess, auth_server: AuthServer) -> None:
    assert await asyncpg_upstream_leg(term_query, auth_server.ca) == (True, "scram_user")
    ctx = ssl.create_default_context(cafile=str(auth_server.ca))
    with (
        _collect_asyncpg_leftovers(),
        pytest.raises(asyncpg.InvalidPasswordError, match="password authentication failed"),
    ):
        await asyncpg.connect(term_query.dsn(user="scram_user", password="bad"), ssl=ctx)


def test_psql_sslmode_require(term_query: PgsealProcess) -> None:
    result = run_psql(term_query.dsn(user="scram_user", sslmode="require"), PASSWORDS["scram_user"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "t"


def test_auth_file_server_secret_and_password(term_file: PgsealProcess) -> None:
    # The server's own verifier in the file: the ClientKey logs in upstream.
    with _connect(term_file, "scram_user", PASSWORDS["scram_user"], channel_binding="require") as c:
        assert _upstream_leg(c)[0::2] == (True, "scram_user")
    # A plaintext password in the file: used for the upstream login.
    with _connect(term_file, "file_plain", PASSWORDS["file_plain"]) as conn:
        assert _upstream_leg(conn)[0::2] == (True, "file_plain")
    # ... also when the server asks for it in cleartext (pg_hba "password").
    with _connect(term_file, "password_user", PASSWORDS["password_user"]) as conn:
        assert _upstream_leg(conn)[0::2] == (True, "password_user")
    assert _fails(term_file, "file_plain", "wrong").sqlstate == "28P01"


def test_auth_file_secret_other_than_the_servers_says_what_to_configure(
    term_file: PgsealProcess,
) -> None:
    err = _fails(term_file, "file_salted", PASSWORDS["file_salted"])
    assert err.sqlstate == "28000"
    assert "is not the server's own" in str(err)
    assert "auth.upstream_password" in str(err)


def test_md5_upstream_without_password_says_what_to_configure(term_file: PgsealProcess) -> None:
    err = _fails(term_file, "md5_user", PASSWORDS["md5_user"])
    assert err.sqlstate == "28000"
    assert 'asks for an md5 password for user "md5_user"' in str(err)


def test_upstream_user_and_password(term_service_user: PgsealProcess) -> None:
    with _connect(term_service_user, "app", "app-pw", channel_binding="require") as conn:
        assert _upstream_leg(conn)[0::2] == (True, "scram_user")
    assert _fails(term_service_user, "app", "bad").sqlstate == "28P01"
    assert PASSWORDS["scram_user"] not in term_service_user.log_text()


def test_unusable_auth_file_stops_serve_with_one_line(auth_server: AuthServer) -> None:
    from tests.pgseal_process import start_pgseal

    users = auth_server.workdir / "md5-users.txt"
    users.write_text('"alice" "md5' + "0" * 32 + '"\n')
    with pytest.raises(RuntimeError) as err:
        start_pgseal(
            auth_server.workdir / "bad-auth-file",
            auth_server.upstream,
            f"auth:\n  mode: terminate\n  auth_file: {users}\n",
        )
    assert f"pgseal: error: {users}:1: user 'alice' has an md5 secret" in str(err.value)
    assert "Traceback" not in str(err.value)


def test_auth_file_is_reread_when_it_changes(
    auth_server: AuthServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.pgseal_process import start_pgseal

    users = tmp_path_factory.mktemp("reread") / "users.txt"
    users.write_text('"file_plain" "old-password"\n')
    proc = start_pgseal(
        auth_server.workdir / "reread",
        auth_server.upstream,
        f"auth:\n  mode: terminate\n  auth_file: {users}\n",
    )
    try:
        params = {"sslmode": "disable"}
        assert _fails(proc, "file_plain", PASSWORDS["file_plain"], **params).sqlstate == "28P01"
        users.write_text(f'"file_plain" "{PASSWORDS["file_plain"]}"\n')
        with _connect(proc, "file_plain", PASSWORDS["file_plain"], **params) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("file_plain",)
    finally:
        proc.stop()


def test_direct_tls_with_channel_binding(term_query: PgsealProcess) -> None:
    with _connect(
        term_query,
        "scram_user",
        PASSWORDS["scram_user"],
        sslnegotiation="direct",
        channel_binding="require",
    ) as conn:
        assert conn.pgconn.ssl_in_use
        assert _upstream_leg(conn)[0::2] == (True, "scram_user")


def test_unreachable_auth_query_fails_every_login_alike(auth_server: AuthServer) -> None:
    from proxy.embedded import free_port
    from tests.pgseal_process import start_pgseal

    proc = start_pgseal(
        auth_server.workdir / "dead-service",
        auth_server.upstream,
        f"service_dsn: postgresql://postgres@127.0.0.1:{free_port()}/postgres\n"
        "auth:\n  mode: terminate\n",
    )
    try:
        for user in ("scram_user", "nobody_here"):
            err = _fails(proc, user, "whatever", sslmode="disable")
            assert err.sqlstate == "28000"
            assert "cannot authenticate now: the auth_query on the service connection" in str(err)
    finally:
        proc.stop()


def test_cancel_over_tls_interrupts_pg_sleep(
    term_query: PgsealProcess, auth_server: AuthServer
) -> None:
    """A cancel (psycopg's cancel_safe, libpq's PQcancelCreate, sslmode=require) reaches the
    backend of a terminate-mode session through pgseal's own cancel key."""
    import time

    with _connect(term_query, "scram_user", PASSWORDS["scram_user"]) as conn:
        watcher = cancel_once_running(auth_server, conn, "SELECT pg_sleep(20)")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(20)")
        assert time.monotonic() - started < 10
        watcher.join(5)
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)
