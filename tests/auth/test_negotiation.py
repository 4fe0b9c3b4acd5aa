"""The untyped first messages on a live pgseal, byte by byte over a raw socket.

GSSENCRequest (libpq's ``gssencmode=prefer`` sends it first) is answered 'N'
and the same connection goes on with a startup packet, or with an SSLRequest
and TLS. Direct TLS makes pgseal peek at every new connection and run a TLS
handshake before any startup packet, so a client that stops in the middle of
its ClientHello must hold one connection slot and lose it at the startup
timeout, like a client that dribbles a startup packet.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from proxy import codec
from tests.auth.conftest import AuthServer, _start, _tls_yaml
from tests.auth.test_direct_tls import STARTUP, _client_context, _messages
from tests.pgseal_process import PgsealProcess

GSSENC_REQUEST = codec.SpecialRequest(codec.GSSENC_REQUEST_CODE).encode()


def _login_kinds(sock: socket.socket | ssl.SSLSocket) -> list[bytes]:
    """Send the trust_user startup packet; the kinds of messages up to ReadyForQuery."""
    sock.sendall(STARTUP)
    return [kind for kind, _ in _messages(sock, b"Z")]


def test_gssenc_request_is_refused_then_startup_continues(
    pt_plain_upstream: PgsealProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", pt_plain_upstream.port), timeout=10) as sock:
        sock.sendall(GSSENC_REQUEST)
        assert sock.recv(1) == b"N"
        kinds = _login_kinds(sock)
        assert kinds[0] == b"R"
        assert b"K" in kinds  # BackendKeyData: a real session was set up
        assert kinds[-1] == b"Z"
        sock.sendall(codec.message(b"Q", b"SELECT 40 + 2\x00"))
        rows = [body for kind, body in _messages(sock, b"Z") if kind == b"D"]
        assert rows == [b"\x00\x01\x00\x00\x00\x0242"]
        sock.sendall(codec.TERMINATE)


def test_gssenc_request_then_ssl_request_then_tls(pt_plain_upstream: PgsealProcess) -> None:
    raw = socket.create_connection(("127.0.0.1", pt_plain_upstream.port), timeout=10)
    raw.sendall(GSSENC_REQUEST)
    assert raw.recv(1) == b"N"
    raw.sendall(codec.SSL_REQUEST)
    assert raw.recv(1) == b"S"
    with _client_context(None).wrap_socket(raw) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        kinds = _login_kinds(sock)
        assert kinds[0] == b"R"
        assert kinds[-1] == b"Z"
        sock.sendall(codec.TERMINATE)


SLOTS = 4
STARTUP_TIMEOUT = 1.5
# The start of a TLS 1.2 record holding a ClientHello that claims 512 bytes.
PARTIAL_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(16)


@pytest.fixture(scope="module")
def small_pgseal(auth_server: AuthServer) -> Iterator[PgsealProcess]:
    """Direct TLS on, SLOTS client connections, a short startup timeout."""
    yield from _start(
        auth_server,
        "small-slots",
        _tls_yaml(auth_server, "allow", "disable", direct=True)
        + f"limits:\n  max_client_connections: {SLOTS}\n"
        f"  startup_timeout_seconds: {STARTUP_TIMEOUT}\n",
    )


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _plain_login(port: int) -> list[tuple[bytes, bytes]]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(STARTUP)
        messages = _messages(sock, b"Z")
        sock.sendall(codec.TERMINATE)
        return messages


def test_partial_client_hellos_hold_one_slot_each_until_startup_timeout(
    small_pgseal: PgsealProcess,
) -> None:
    port = small_pgseal.port
    assert _plain_login(port)[-1][0] == b"Z"
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(SLOTS)]
    opened = time.monotonic()
    try:
        for sock in socks[:-1]:
            sock.sendall(PARTIAL_HELLO)
        # The last one dribbles its ClientHello: each byte must not restart the clock.
        dribbler = socks[-1]
        for byte in PARTIAL_HELLO[:6]:
            dribbler.sendall(bytes([byte]))
            time.sleep(0.1)
        # Every slot is taken by a half-done handshake: one more client is refused
        # at once with Postgres's error, not queued behind them.
        refused = _plain_login(port)
        fields = codec.decode_error_fields(refused[-1][1])
        assert refused[-1][0] == b"E"
        assert fields["C"] == "53300"
        # Each is cut at the startup deadline counted from its connect.
        for sock in socks:
            assert _closed_by_server(sock, STARTUP_TIMEOUT + 5), "a partial ClientHello was kept"
        held = time.monotonic() - opened
        assert STARTUP_TIMEOUT - 0.2 <= held <= STARTUP_TIMEOUT + 3, held
    finally:
        for sock in socks:
            sock.close()
    # The slots are free again.
    deadline = time.monotonic() + 5
    while (last := _plain_login(port)[-1])[0] != b"Z" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert last[0] == b"Z"
    assert "Traceback" not in small_pgseal.log_text()


def test_silent_connections_are_cut_at_startup_timeout(small_pgseal: PgsealProcess) -> None:
    """A connection that never sends its first byte (pgseal is waiting to peek)."""
    with socket.create_connection(("127.0.0.1", small_pgseal.port), timeout=10) as sock:
        opened = time.monotonic()
        assert _closed_by_server(sock, STARTUP_TIMEOUT + 5)
        held = time.monotonic() - opened
    assert STARTUP_TIMEOUT - 0.2 <= held <= STARTUP_TIMEOUT + 3, held


def test_stalled_handshake_after_ssl_request_is_cut_at_startup_timeout(
    small_pgseal: PgsealProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", small_pgseal.port), timeout=10) as sock:
        opened = time.monotonic()
        sock.sendall(codec.SSL_REQUEST)
        assert sock.recv(1) == b"S"
        sock.sendall(PARTIAL_HELLO)
        assert _closed_by_server(sock, STARTUP_TIMEOUT + 5)
        held = time.monotonic() - opened
    assert STARTUP_TIMEOUT - 0.2 <= held <= STARTUP_TIMEOUT + 3, held
    assert _plain_login(small_pgseal.port)[-1][0] == b"Z"
