"""proxy.auth without sockets: pgseal's SCRAM server against scramp's client,
ClientKey recovery and the upstream login it enables, auth_file parsing."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scramp import ScramClient, ScramMechanism

from proxy import codec
from proxy.auth import (
    AUTH_CLEARTEXT,
    AUTH_MD5,
    AUTH_OK,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    AuthError,
    AuthFileError,
    ClientScram,
    ScramSecret,
    TerminateConfig,
    UpstreamLogin,
    UserSecret,
    parse_auth_file,
)

SEED = b"s" * 32
CERT_HASH = hashlib.sha256(b"pgseal certificate").digest()


def secret_for(password: str) -> UserSecret:
    return UserSecret(ScramSecret.from_password(password))


def run_client(
    server: ClientScram,
    password: str,
    mechanism: str = "SCRAM-SHA-256",
    binding: bytes | None = None,
    empty_user: bool = True,
) -> ScramClient:
    """A scramp client against ``server``; libpq's empty user name by default."""
    client = ScramClient(
        [mechanism],
        "ignored",
        password,
        channel_binding=("tls-server-end-point", binding) if binding else None,
    )
    first = client.get_client_first()
    if empty_user:
        first = first.replace("n=ignored,", "n=,")
        client.client_first_bare = client.client_first_bare.replace("n=ignored,", "n=,")
    client.set_server_first(server.initial(mechanism, first.encode()).decode())
    final = server.final(client.get_client_final().encode())
    client.set_server_final(final.decode())
    return client


def test_secret_parse_round_trip_and_rejects() -> None:
    made = ScramSecret.from_password("pw")
    text = (
        f"SCRAM-SHA-256${made.iterations}:{_b64(made.salt)}"
        f"${_b64(made.stored_key)}:{_b64(made.server_key)}"
    )
    assert ScramSecret.parse(text) == made
    assert ScramSecret.parse("md5" + "0" * 32) is None
    assert ScramSecret.parse(text.replace("$4096", "$0")) is None
    assert "pw" not in repr(made)
    assert _b64(made.stored_key) not in repr(made)


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


@pytest.mark.parametrize("empty_user", [True, False])
def test_scram_round_trip_recovers_client_key(empty_user: bool) -> None:
    secret = secret_for("right")
    server = ClientScram("alice", secret, None, SEED)
    assert server.mechanisms == ["SCRAM-SHA-256"]
    run_client(server, "right", empty_user=empty_user)
    # ClientKey recovered from the proof: its hash is the StoredKey.
    assert server.client_key is not None
    assert hashlib.sha256(server.client_key).digest() == secret.scram.stored_key


def test_wrong_password_and_unknown_user_fail_alike() -> None:
    with pytest.raises(AuthError) as wrong:
        run_client(ClientScram("alice", secret_for("right"), None, SEED), "wrong")
    with pytest.raises(AuthError) as unknown:
        run_client(ClientScram("alice", None, None, SEED), "whatever")
    assert wrong.value.sqlstate == unknown.value.sqlstate == "28P01"
    assert (
        wrong.value.message
        == unknown.value.message
        == ('password authentication failed for user "alice"')
    )
    # The made-up salt is stable per user: probing twice tells nothing.
    first = ClientScram("bob", None, None, SEED).initial("SCRAM-SHA-256", b"n,,n=,r=abcdefgh")
    again = ClientScram("bob", None, None, SEED).initial("SCRAM-SHA-256", b"n,,n=,r=abcdefgh")
    assert first.split(b",")[1] == again.split(b",")[1]


def test_plus_binds_to_pgseal_certificate() -> None:
    server = ClientScram("alice", secret_for("pw"), CERT_HASH, SEED)
    assert server.mechanisms == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    run_client(server, "pw", "SCRAM-SHA-256-PLUS", CERT_HASH)
    assert server.client_key is not None
    other = ClientScram("alice", secret_for("pw"), CERT_HASH, SEED)
    with pytest.raises(AuthError, match="channel binding check failed") as bad:
        run_client(other, "pw", "SCRAM-SHA-256-PLUS", hashlib.sha256(b"mitm").digest())
    assert bad.value.sqlstate == "28000"


def test_downgrade_flag_y_is_refused_when_plus_was_offered() -> None:
    server = ClientScram("alice", secret_for("pw"), CERT_HASH, SEED)
    with pytest.raises(AuthError, match="channel binding negotiation error"):
        server.initial("SCRAM-SHA-256", b"y,,n=,r=abcdefgh")
    plain = ClientScram("alice", secret_for("pw"), None, SEED)
    with pytest.raises(AuthError, match="invalid SASL authentication mechanism"):
        plain.initial("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=abcdefgh")
    with pytest.raises(AuthError, match="malformed SCRAM message") as bad:
        plain.initial("SCRAM-SHA-256", b"garbage")
    assert bad.value.sqlstate == "08P01"


def _server_requests(
    login: UpstreamLogin, verifier: ScramSecret, binding: bytes | None = None
) -> None:
    """Play a Postgres-like SCRAM server (scramp) against ``login``."""
    mechanisms = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"] if binding else ["SCRAM-SHA-256"]
    start = login.answer(AUTH_SASL, b"".join(m.encode() + b"\x00" for m in mechanisms) + b"\x00")
    assert start is not None
    mechanism, first = codec.decode_sasl_initial(start[5:])
    assert first is not None
    server = ScramMechanism(mechanism).make_server(
        lambda _u: (verifier.salt, verifier.stored_key, verifier.server_key, verifier.iterations),
        channel_binding=("tls-server-end-point", binding) if mechanism.endswith("PLUS") else None,
    )
    server.set_client_first(first.decode().replace("n=,", "n=x,"))
    server.client_first_bare = first.decode().split(",", 2)[2]
    final = login.answer(AUTH_SASL_CONTINUE, server.get_server_first().encode())
    assert final is not None
    server.set_client_final(final[5:].decode())
    assert login.answer(AUTH_SASL_FINAL, server.get_server_final().encode()) is None
    assert login.answer(AUTH_OK, b"") is None


def _login_with_recovered_key(secret: UserSecret, binding: bytes | None) -> UpstreamLogin:
    """The client logs in to pgseal; pgseal's upstream login then holds its ClientKey."""
    client_side = ClientScram("alice", secret, None, SEED)
    run_client(client_side, "pw")
    return UpstreamLogin(
        "alice",
        password=None,
        client_key=client_side.client_key,
        secret=secret,
        server_cert_hash=binding,
    )


@pytest.mark.parametrize("binding", [None, CERT_HASH])
def test_recovered_client_key_logs_in_upstream(binding: bytes | None) -> None:
    secret = secret_for("pw")
    _server_requests(_login_with_recovered_key(secret, binding), secret.scram, binding)


def test_client_key_against_another_verifier_says_what_to_configure() -> None:
    login = _login_with_recovered_key(secret_for("pw"), None)
    with pytest.raises(AuthError, match="not the server's own") as err:
        _server_requests(login, ScramSecret.from_password("pw"))  # same password, new salt
    assert err.value.hint is not None
    assert "auth.upstream_password" in err.value.hint


def test_password_login_md5_cleartext_and_scram() -> None:
    login = UpstreamLogin("bob", password="pw", client_key=None, secret=None, server_cert_hash=None)
    md5 = login.answer(AUTH_MD5, b"salt")
    inner = hashlib.md5(b"pwbob").hexdigest().encode()
    assert md5 == codec.message(
        b"p", b"md5" + hashlib.md5(inner + b"salt").hexdigest().encode() + b"\x00"
    )
    assert login.answer(AUTH_CLEARTEXT, b"") == codec.message(b"p", b"pw\x00")
    _server_requests(
        UpstreamLogin(
            "bob", password="pw", client_key=None, secret=None, server_cert_hash=CERT_HASH
        ),
        ScramSecret.from_password("pw"),
        CERT_HASH,
    )


def test_md5_without_password_says_what_to_configure() -> None:
    login = UpstreamLogin(
        "bob", password=None, client_key=b"k" * 32, secret=secret_for("x"), server_cert_hash=None
    )
    with pytest.raises(AuthError, match='asks for an md5 password for user "bob"') as err:
        login.answer(AUTH_MD5, b"salt")
    assert err.value.hint is not None
    assert "auth.upstream_user" in err.value.hint


def test_upstream_credentials_preference() -> None:
    config = TerminateConfig(None, SEED)
    with_password = UserSecret(ScramSecret.from_password("pw"), password="pw")
    assert config.upstream_credentials(with_password, b"k") == ("pw", b"k")
    fixed = TerminateConfig(None, SEED, upstream_user="svc", upstream_password="svc-pw")
    assert fixed.upstream_credentials(with_password, b"k") == ("svc-pw", None)
    user_only = TerminateConfig(None, SEED, upstream_user="svc")
    assert user_only.upstream_credentials(with_password, b"k") == (None, None)
    assert "svc-pw" not in repr(fixed)


def test_auth_file_formats_and_errors() -> None:
    made = ScramSecret.from_password("pw")
    scram_text = (
        f"SCRAM-SHA-256${made.iterations}:{_b64(made.salt)}"
        f"${_b64(made.stored_key)}:{_b64(made.server_key)}"
    )
    users = parse_auth_file(f'"alice" "{scram_text}"\n;c\n"bo""b" "plain"\n', "users.txt")
    assert users["alice"].scram == made
    assert users["alice"].password is None
    assert users['bo"b'].password == "plain"
    assert "plain" not in repr(users['bo"b'])
    with pytest.raises(AuthFileError, match=r"users.txt:2: user 'carol' has an md5 secret"):
        parse_auth_file('"a" "b"\n"carol" "md5' + "0" * 32 + '"\n', "users.txt")
    with pytest.raises(AuthFileError, match=r"users.txt:1: malformed SCRAM-SHA-256 secret"):
        parse_auth_file('"a" "SCRAM-SHA-256$4096:xx"\n', "users.txt")
    with pytest.raises(AuthFileError, match=r'users.txt:1: expected "user" "secret"'):
        parse_auth_file("alice secret\n", "users.txt")


_WELL_FORMED_START = st.binary(max_size=40).map(lambda tail: b"n,,n=,r=abcdefgh" + tail)


@settings(max_examples=200, deadline=None)
@given(
    first=st.binary(max_size=80) | st.text(max_size=80).map(str.encode) | _WELL_FORMED_START,
    final=st.binary(max_size=120) | st.text(max_size=120).map(str.encode),
    plus=st.booleans(),
)
def test_garbage_scram_messages_only_ever_fail_as_auth_errors(
    first: bytes, final: bytes, plus: bool
) -> None:
    """Whatever a client sends, the answer is an AuthError (a FATAL for it), never a crash."""
    server = ClientScram("alice", secret_for("pw"), CERT_HASH if plus else None, SEED)
    mechanism = "SCRAM-SHA-256-PLUS" if plus else "SCRAM-SHA-256"

    def exchange() -> None:
        server.initial(mechanism, first)
        server.final(final)

    with pytest.raises(AuthError) as err:
        exchange()
    assert err.value.sqlstate in ("08P01", "28000", "28P01")
