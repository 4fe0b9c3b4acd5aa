"""The session's authentication phases, driven by scripted messages (no sockets).

Pass-through: -PLUS is hidden from the client, and the downgrade flag 'y' is
refused exactly when the server had offered -PLUS. Terminate: what matters is
the order: no upstream connection before the client
proved its password, the server's authentication requests never reach the
client, and the client's AuthenticationOk is the server's.
"""

from __future__ import annotations

import struct

from scramp import ScramClient, ScramMechanism

from proxy import codec
from proxy.auth import ScramSecret, TerminateConfig, UserSecret
from proxy.session import Close, ConnectUpstream, LookupSecret, Phase, RegisterCancelKey, Session

SEED = b"x" * 32
STARTUP = codec.StartupMessage(196608, {"user": "alice", "database": "app"})


def _drain(session: Session) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """(messages to the client, messages to the server) queued since the last drain."""

    def split(chunks: list[bytes]) -> list[tuple[bytes, bytes]]:
        buf = b"".join(chunks)
        if buf[4:8] == struct.pack("!I", 196608):  # the untyped startup packet
            return [(b"startup", buf)]
        return [(bytes([k]), buf[s + 5 : e]) for k, s, e in codec.frames(buf)]

    out = split(session.to_client), split(session.to_server)
    session.to_client.clear()
    session.to_server.clear()
    return out


def _phase(session: Session) -> Phase:
    """The phase now (a call, so type narrowing from an earlier assert does not stick)."""
    return session.phase


def _auth(code: int, data: bytes = b"") -> bytes:
    return codec.message(b"R", struct.pack("!I", code) + data)


def _sasl_initial(mechanism: str, data: str) -> bytes:
    raw = data.encode()
    return codec.message(b"p", mechanism.encode() + b"\x00" + struct.pack("!i", len(raw)) + raw)


def _client_login(session: Session, password: str) -> ScramClient:
    session.client_data(STARTUP.encode())
    assert session.actions == [LookupSecret("alice")]
    session.actions.clear()
    session.secret_found(UserSecret(ScramSecret.from_password("pw", salt=b"s" * 16)))
    to_client, to_server = _drain(session)
    assert to_client == [(b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256\x00\x00")]
    assert to_server == []
    client = ScramClient(["SCRAM-SHA-256"], "alice", password)
    session.client_data(_sasl_initial("SCRAM-SHA-256", client.get_client_first()))
    to_client, _ = _drain(session)
    assert to_client[0][1][:4] == struct.pack("!I", 11)
    client.set_server_first(to_client[0][1][4:].decode())
    session.client_data(codec.message(b"p", client.get_client_final().encode()))
    return client


def test_terminate_script_logs_in_upstream_with_the_client_key() -> None:
    session = Session(1, terminate=TerminateConfig(None, SEED))
    client = _client_login(session, "pw")
    to_client, to_server = _drain(session)
    assert to_client[0][1][:4] == struct.pack("!I", 12)
    client.set_server_final(to_client[0][1][4:].decode())  # pgseal proved it knows the secret
    assert session.actions == [ConnectUpstream(STARTUP)]
    assert to_server == []  # nothing went upstream before the proof
    session.actions.clear()
    assert session.phase is Phase.CONNECTING

    session.server_connected()
    _, to_server = _drain(session)
    assert to_server == [(b"startup", STARTUP.encode())]
    # The server (same verifier) asks for SCRAM: pgseal answers, the client sees nothing.
    verifier = ScramSecret.from_password("pw", salt=b"s" * 16)
    server = ScramMechanism().make_server(
        lambda _u: (verifier.salt, verifier.stored_key, verifier.server_key, verifier.iterations)
    )
    session.server_data(_auth(10, b"SCRAM-SHA-256\x00\x00"))
    to_client, to_server = _drain(session)
    assert to_client == []
    mechanism, first = codec.decode_sasl_initial(to_server[0][1])
    assert mechanism == "SCRAM-SHA-256"
    assert first is not None
    server.set_client_first(first.decode().replace("n=,", "n=alice,"))
    server.client_first_bare = first.decode().split(",", 2)[2]
    session.server_data(_auth(11, server.get_server_first().encode()))
    to_client, to_server = _drain(session)
    assert to_client == []
    server.set_client_final(to_server[0][1].decode())  # raises if the proof is wrong
    session.server_data(
        _auth(12, server.get_server_final().encode())
        + _auth(0)
        + codec.message(b"S", b"server_version\x0015\x00")
        + codec.backend_key_data(77, b"k" * 4)
        + codec.READY_IDLE
    )
    to_client, to_server = _drain(session)
    assert [kind for kind, _ in to_client] == [b"R", b"S", b"K", b"Z"]
    assert to_client[0][1] == struct.pack("!I", 0)
    assert to_client[2][1] != struct.pack("!I", 77) + b"k" * 4  # pgseal's own cancel key
    assert any(isinstance(a, RegisterCancelKey) and a.upstream_pid == 77 for a in session.actions)
    assert _phase(session) is Phase.READY


def test_wrong_password_never_connects_upstream() -> None:
    session = Session(2, terminate=TerminateConfig(None, SEED))
    _client_login(session, "wrong")
    to_client, to_server = _drain(session)
    assert to_server == []
    fields = codec.decode_error_fields(to_client[-1][1])
    assert (fields["S"], fields["C"]) == ("FATAL", "28P01")
    assert fields["M"] == 'password authentication failed for user "alice"'
    assert not any(isinstance(a, ConnectUpstream) for a in session.actions)
    assert any(isinstance(a, Close) for a in session.actions)
    assert session.phase is Phase.CLOSED


def test_server_refusal_names_pgseal_login() -> None:
    session = Session(3, terminate=TerminateConfig(None, SEED, upstream_user="svc"))
    _client_login(session, "pw")
    _drain(session)
    session.server_connected()
    _, to_server = _drain(session)
    assert b"user\x00svc\x00" in to_server[0][1]
    session.server_data(_auth(5, b"salt"))  # md5, and no upstream_password configured
    to_client, _ = _drain(session)
    fields = codec.decode_error_fields(to_client[-1][1])
    assert fields["C"] == "28000"
    assert 'asks for an md5 password for user "svc"' in fields["M"]
    assert "auth.upstream_password" in fields["H"]
    assert session.phase is Phase.CLOSED


def _passthrough_to_sasl(mechanisms: list[str]) -> Session:
    session = Session(4, tls_available=True)
    session.client_data(STARTUP.encode())
    assert session.actions == [ConnectUpstream(STARTUP)]
    session.server_connected()
    session.upstream_tls = True
    _drain(session)
    session.server_data(codec.encode_sasl_mechanisms(mechanisms))
    to_client, _ = _drain(session)
    assert to_client == [(b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256\x00\x00")]
    return session


def test_passthrough_hides_plus_and_refuses_the_downgrade_flag() -> None:
    session = _passthrough_to_sasl(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
    session.client_data(_sasl_initial("SCRAM-SHA-256", "y,,n=,r=abcdefgh"))
    to_client, to_server = _drain(session)
    assert to_server == []  # never reaches the server, which would call it an attack
    fields = codec.decode_error_fields(to_client[-1][1])
    assert fields["C"] == "28000"
    assert "channel binding cannot pass through pgseal" in fields["M"]
    assert "auth.mode: terminate" in fields["H"]


def test_passthrough_relays_y_when_the_server_offered_no_plus() -> None:
    # A TLS server without channel binding (or a unix socket): 'y' is fine there.
    session = _passthrough_to_sasl(["SCRAM-SHA-256"])
    initial = _sasl_initial("SCRAM-SHA-256", "y,,n=,r=abcdefgh")
    session.client_data(initial)
    to_client, to_server = _drain(session)
    assert to_client == []
    assert to_server == [(b"p", initial[5:])]
    assert _phase(session) is Phase.AUTH


def test_server_refusing_pgseal_login_is_reported_as_such() -> None:
    session = Session(5, terminate=TerminateConfig(None, SEED, "svc", "wrong-pw"))
    _client_login(session, "pw")
    _drain(session)
    session.server_connected()
    _drain(session)  # the startup packet
    session.server_data(_auth(3))  # cleartext: pgseal sends upstream_password
    _, to_server = _drain(session)
    assert to_server == [(b"p", b"wrong-pw\x00")]
    session.server_data(
        codec.encode_error(
            "28P01", 'password authentication failed for user "svc"', severity="FATAL"
        )
    )
    to_client, _ = _drain(session)
    fields = codec.decode_error_fields(to_client[-1][1])
    assert fields["C"] == "28P01"
    assert fields["M"] == (
        'pgseal: the database server refused pgseal\'s login as "svc": '
        'password authentication failed for user "svc"'
    )
    assert "accepted by pgseal" in fields["H"]
    assert _phase(session) is Phase.CLOSED
