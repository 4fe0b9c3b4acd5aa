"""Pass-through authentication over every TLS combination, with psycopg (libpq 18).

client leg (plain / TLS) x upstream leg (plain / TLS) x server auth (trust / password /
md5 / scram-sha-256) x client channel_binding (disable / prefer / require).
Each combination either logs in - and the test checks on the server which
legs really used TLS - or fails with the error docs/AUTH.md lists for it.
"""

from __future__ import annotations

import itertools

import psycopg
import pytest

from tests.auth.conftest import PASSWORDS, AuthServer, asyncpg_upstream_leg, run_psql
from tests.conftest import PgServer
from tests.pgseal_process import PgsealProcess

USERS = {
    "trust": "trust_user",
    "password": "password_user",
    "md5": "md5_user",
    "scram": "scram_user",
}

# pgseal's own refusal: the client's gs2 flag 'y' would be rejected by a TLS
# server as a downgrade, so pgseal says what to configure before that happens.
CROSSING = "SCRAM channel binding cannot pass through pgseal"
# libpq's own refusals with channel_binding=require (pgseal strips -PLUS, which
# could never verify at the server).
NO_SSL = "channel binding required, but SSL not in use"
REQUIRE = {
    "trust": "channel binding required, but server authenticated client without channel binding",
    "md5": "channel binding required but not supported by server's authentication request",
    "password": "channel binding required but not supported by server's authentication request",
    "scram": "channel binding is required, but server did not offer an authentication method "
    "that supports channel binding",
}


def expected_failure(client_tls: bool, upstream_tls: bool, auth: str, binding: str) -> str | None:
    if binding == "require":
        return NO_SSL if auth == "scram" and not client_tls else REQUIRE[auth]
    if binding == "prefer" and client_tls and upstream_tls and auth == "scram":
        return CROSSING
    return None


MATRIX = list(
    itertools.product([False, True], [False, True], USERS, ["disable", "prefer", "require"])
)


@pytest.mark.parametrize(
    ("client_tls", "upstream_tls", "auth", "binding"),
    MATRIX,
    ids=[
        f"{'tls' if c else 'plain'}-{'tls' if u else 'plain'}up-{a}-cb_{b}" for c, u, a, b in MATRIX
    ],
)
def test_passthrough_matrix(
    pt_plain_upstream: PgsealProcess,
    pt_tls_upstream: PgsealProcess,
    client_tls: bool,
    upstream_tls: bool,
    auth: str,
    binding: str,
) -> None:
    proc = pt_tls_upstream if upstream_tls else pt_plain_upstream
    user = USERS[auth]
    dsn = proc.dsn(
        user=user,
        password=PASSWORDS.get(user, ""),
        sslmode="require" if client_tls else "disable",
        channel_binding=binding,
    )
    failure = expected_failure(client_tls, upstream_tls, auth, binding)
    if failure is not None:
        with pytest.raises(psycopg.OperationalError) as err:
            psycopg.connect(dsn, connect_timeout=10).close()
        assert failure in str(err.value)
        if failure == CROSSING:
            assert "auth.mode: terminate" in str(err.value)
            assert "channel_binding=disable" in str(err.value)
        return
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert conn.pgconn.ssl_in_use == client_tls
        row = conn.execute(
            "SELECT s.ssl, current_user FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()"
        ).fetchone()
        assert row == (upstream_tls, user)


def test_wrong_password_is_postgres_own_error(pt_tls_upstream: PgsealProcess) -> None:
    dsn = pt_tls_upstream.dsn(user="scram_user", password="bad", sslmode="disable")
    with pytest.raises(
        psycopg.OperationalError, match='password authentication failed for user "scram_user"'
    ):
        psycopg.connect(dsn, connect_timeout=10)


def test_upstream_tls_verify_full_checks_the_server(
    auth_server: AuthServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """tls.upstream: verify-full with a CA that did not sign the server: refused, clearly."""
    import trustme

    from tests.pgseal_process import start_pgseal

    other_ca = tmp_path_factory.mktemp("other-ca") / "ca.crt"
    other_ca.write_bytes(trustme.CA().cert_pem.bytes())
    proc = start_pgseal(
        auth_server.workdir / "pt-wrong-ca",
        auth_server.upstream,
        f"tls:\n  upstream: verify-full\n  upstream_ca: {other_ca}\n",
    )
    try:
        with pytest.raises(psycopg.OperationalError) as err:
            psycopg.connect(proc.dsn(user="trust_user", sslmode="disable"), connect_timeout=10)
        assert "could not connect to the database server" in str(err.value)
        assert "certificate verify failed" in str(err.value)
    finally:
        proc.stop()


@pytest.mark.parametrize("binding", ["disable", "prefer", "require"])
def test_tls_client_over_unix_socket_upstream(
    pt_unix_upstream: PgsealProcess, binding: str
) -> None:
    """A unix-socket upstream has no TLS, so a TLS client's gs2 flag 'y' is accepted."""
    dsn = pt_unix_upstream.dsn(
        user="scram_user",
        password=PASSWORDS["scram_user"],
        sslmode="require",
        channel_binding=binding,
    )
    if binding == "require":
        with pytest.raises(psycopg.OperationalError, match=REQUIRE["scram"]):
            psycopg.connect(dsn, connect_timeout=10)
        return
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert conn.pgconn.ssl_in_use
        row = conn.execute(
            "SELECT inet_client_addr() IS NULL, s.ssl FROM pg_stat_ssl s "
            "WHERE s.pid = pg_backend_pid()"
        ).fetchone()
        assert row == (True, False)


def test_psql_sslmode_require_passthrough(
    pt_plain_upstream: PgsealProcess, pt_tls_upstream: PgsealProcess
) -> None:
    password = PASSWORDS["scram_user"]
    ok = run_psql(pt_plain_upstream.dsn(user="scram_user", sslmode="require"), password)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "f"  # the upstream leg is plain
    # TLS on both legs with psql's default channel_binding=prefer: pgseal's error.
    crossed = run_psql(pt_tls_upstream.dsn(user="scram_user", sslmode="require"), password)
    assert crossed.returncode == 2
    assert CROSSING in crossed.stderr
    assert "auth.mode: terminate" in crossed.stderr
    fixed = run_psql(
        pt_tls_upstream.dsn(user="scram_user", sslmode="require", channel_binding="disable"),
        password,
    )
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == "t"


async def test_asyncpg_tls_both_legs_passthrough(
    pt_tls_upstream: PgsealProcess, auth_server: AuthServer
) -> None:
    """asyncpg has no channel binding (gs2 flag 'n'), so SCRAM crosses TLS on both legs."""
    assert await asyncpg_upstream_leg(pt_tls_upstream, auth_server.ca) == (True, "scram_user")


def test_upstream_tls_required_but_server_has_none(
    pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The pip-installed Postgres has no OpenSSL: tls.upstream: require says so."""
    if pg_server.cluster is None or pg_server.cluster.binaries.has_ssl:
        pytest.skip("needs the embedded pip-installed server, which has no TLS")
    from tests.pgseal_process import start_pgseal

    proc = start_pgseal(
        tmp_path_factory.mktemp("no-server-tls"),
        f"postgresql://{pg_server.host}:{pg_server.port}/postgres",
        "tls:\n  upstream: require\n",
    )
    try:
        with pytest.raises(psycopg.OperationalError) as err:
            psycopg.connect(proc.dsn(user="postgres", sslmode="disable"), connect_timeout=10)
        assert "does not accept TLS, but tls.upstream is 'require'" in str(err.value)
        # No tls.cert: pgseal answers SSLRequest with 'N', and libpq says so.
        with pytest.raises(psycopg.OperationalError, match="server does not support SSL"):
            psycopg.connect(proc.dsn(user="postgres", sslmode="require"), connect_timeout=10)
    finally:
        proc.stop()
