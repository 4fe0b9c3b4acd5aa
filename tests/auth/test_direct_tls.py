"""Direct TLS (PostgreSQL 17 ``sslnegotiation=direct``): the ClientHello comes first.

psycopg's libpq is 18, so it is tested with a real client; a Python ssl socket
checks the ALPN rule (``postgresql`` required) and the refusal when direct TLS
is not enabled.
"""

from __future__ import annotations

import socket
import ssl

import psycopg
import pytest

from proxy import codec
from tests.pgseal_process import PgsealProcess

STARTUP = codec.StartupMessage(196608, {"user": "trust_user", "database": "postgres"}).encode()


def _messages(sock: socket.socket | ssl.SSLSocket, until: bytes) -> list[tuple[bytes, bytes]]:
    """Read backend messages until one of kind ``until`` (or EOF)."""
    buf = b""
    out: list[tuple[bytes, bytes]] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        buf += chunk
        last = 0
        for kind, start, end in codec.frames(buf):
            out.append((bytes([kind]), buf[start + 5 : end]))
            last = end
            if bytes([kind]) == until:
                return out
        buf = buf[last:]


def _client_context(alpn: list[str] | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def test_psycopg_sslnegotiation_direct(pt_plain_upstream: PgsealProcess) -> None:
    if psycopg.pq.version() < 170000:
        pytest.fail("psycopg's libpq is older than 17: install psycopg[binary] >= 3.2")
    dsn = pt_plain_upstream.dsn(user="trust_user", sslmode="require", sslnegotiation="direct")
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 40 + 2").fetchone() == (42,)


def test_ssl_socket_with_alpn_postgresql(pt_plain_upstream: PgsealProcess) -> None:
    raw = socket.create_connection(("127.0.0.1", pt_plain_upstream.port), timeout=10)
    with _client_context(["postgresql"]).wrap_socket(raw) as sock:
        assert sock.selected_alpn_protocol() == "postgresql"
        sock.sendall(STARTUP)
        kinds = [kind for kind, _ in _messages(sock, b"Z")]
        assert kinds[0] == b"R"
        assert kinds[-1] == b"Z"
        sock.sendall(codec.TERMINATE)


def test_direct_tls_without_alpn_is_refused(pt_plain_upstream: PgsealProcess) -> None:
    raw = socket.create_connection(("127.0.0.1", pt_plain_upstream.port), timeout=10)
    with _client_context(None).wrap_socket(raw) as sock:
        messages = _messages(sock, b"E")
    assert messages[-1][0] == b"E"
    fields = codec.decode_error_fields(messages[-1][1])
    assert fields["C"] == "08P01"
    assert "without ALPN protocol negotiation extension 'postgresql'" in fields["M"]


def test_direct_tls_not_enabled_is_refused_clearly(pt_tls_upstream: PgsealProcess) -> None:
    # A ClientHello where a startup packet belongs: a plaintext error with a hint.
    with socket.create_connection(("127.0.0.1", pt_tls_upstream.port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32))
        messages = _messages(sock, b"E")
    fields = codec.decode_error_fields(messages[-1][1])
    assert fields["C"] == "08P01"
    assert "direct TLS connection, which is not enabled" in fields["M"]
    assert "tls.direct: true" in fields["H"]
    # libpq 18 gets the refusal at once (no hang).
    dsn = pt_tls_upstream.dsn(user="trust_user", sslmode="require", sslnegotiation="direct")
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(dsn, connect_timeout=10)
    # libpq expected a TLS record and reports the plaintext error as such.
    assert "SSL error: wrong version number" in str(err.value)
