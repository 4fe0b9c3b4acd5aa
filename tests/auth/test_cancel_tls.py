"""A cancel forwarded by pgseal crosses the upstream leg inside TLS (``tls.upstream``).

Postgres reads a CancelRequest before it looks at pg_hba.conf, so a
``hostssl`` rule cannot tell a plaintext cancel from a TLS one. Instead the
upstream leg runs through ``TlsOnlyGate``, a loopback TCP hop in front of the
TLS Postgres that passes on only connections whose first message is an
SSLRequest and closes the others unread: had pgseal sent the cancel in clear,
the gate would drop it and ``pg_sleep`` would run to its end.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from proxy import codec
from tests.auth.conftest import AuthServer, _start, _tls_yaml, cancel_once_running
from tests.pgseal_process import PgsealProcess


class TlsOnlyGate:
    """Relay to Postgres the connections that open with SSLRequest; drop the rest."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.tls_links = 0
        self.dropped: list[bytes] = []  # the first 8 bytes of each dropped connection
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._link, args=(client,), daemon=True).start()

    def _link(self, client: socket.socket) -> None:
        with client:
            client.settimeout(30)
            first = b""
            with contextlib.suppress(OSError):
                while len(first) < 8 and (chunk := client.recv(8 - len(first))):
                    first += chunk
            if first != codec.SSL_REQUEST:
                with self._lock:
                    self.dropped.append(first)
                return
            with self._lock:
                self.tls_links += 1
            with socket.create_connection(("127.0.0.1", self.target_port), timeout=30) as server:
                server.sendall(first)
                back = threading.Thread(target=_pipe, args=(server, client), daemon=True)
                back.start()
                _pipe(client, server)
                back.join(30)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def gate(auth_server: AuthServer) -> Iterator[TlsOnlyGate]:
    hop = TlsOnlyGate(auth_server.cluster.port)
    yield hop
    hop.close()


@pytest.fixture(scope="module", params=["require", "verify-full", "prefer"])
def gated_pgseal(
    request: pytest.FixtureRequest, auth_server: AuthServer, gate: TlsOnlyGate
) -> Iterator[PgsealProcess]:
    """Pass-through, plain clients; the upstream is the gate, with tls.upstream = param."""
    mode = request.param
    yield from _start(
        auth_server,
        f"cancel-{mode}",
        _tls_yaml(auth_server, "allow", mode),
        f"postgresql://127.0.0.1:{gate.port}/postgres",
    )


SLEEP = "SELECT pg_sleep(20)"


def test_cancel_goes_to_the_upstream_inside_tls(
    gated_pgseal: PgsealProcess, gate: TlsOnlyGate, auth_server: AuthServer
) -> None:
    dsn = gated_pgseal.dsn(user="trust_user", sslmode="disable")
    with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
        assert conn.execute(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone() == (True,)
        links_before = gate.tls_links
        watcher = cancel_once_running(auth_server, conn, SLEEP)
        began = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as err:
            conn.execute(SLEEP)
        elapsed = time.monotonic() - began
        watcher.join(5)
        # The server says why it stopped: the cancel reached the backend.
        assert "canceling statement due to user request" in str(err.value)
        assert elapsed < 10, f"pg_sleep ran {elapsed:.1f} s: the cancel did not arrive"
        assert gate.tls_links == links_before + 1  # the cancel's own TLS connection
        # The session survives its cancelled statement.
        assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
    assert gate.dropped == [], "pgseal opened a plaintext connection to the upstream"
    assert "could not forward a cancel request" not in gated_pgseal.log_text()
