"""Protocol 3.2 (PostgreSQL 18) through pgseal: longer cancel keys, real cancels.

The embedded server is PostgreSQL 18 and psycopg's libpq is 18, so a client
can ask for 3.2; the server then hands out a 32-byte cancel key, pgseal gives
the client its own key of the same length and must map a cancel made with it
back to the right backend.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import psycopg
import pytest
from psycopg import errors

from proxy import codec
from tests.clients.conftest import Relay
from tests.wire import messages_until_ready

pytestmark = pytest.mark.skipif(
    psycopg.pq.version() < 180000, reason="libpq < 18 cannot speak protocol 3.2"
)


@pytest.fixture(scope="module")
def server_speaks_3_2(relay: Relay) -> bool:
    """PostgreSQL 18 and later (PGSEAL_TEST_PG_VERSION=15 runs the suite on 15)."""
    with psycopg.connect(relay.direct_dsn) as conn:
        return conn.info.server_version >= 180000


def test_protocol_3_2_startup_gets_a_32_byte_key_of_pgseals_own(
    relay: Relay, server_speaks_3_2: bool
) -> None:
    startup = codec.StartupMessage(
        codec.PROTOCOL_3_2, {"user": relay.user, "database": relay.database}
    )
    with socket.create_connection((relay.proxy.host, relay.proxy.port)) as sock:
        sock.sendall(startup.encode())
        messages = messages_until_ready(sock)
        kinds = bytes(kind for kind, _ in messages)
        (key,) = [body for kind, body in messages if kind == ord("K")]
        pid, secret = codec.decode_backend_key_data(key)
        if server_speaks_3_2:
            assert b"v" not in kinds, "the server should accept 3.2 as it is"
            assert len(secret) == 32
        else:  # an older server answers 3.0: relayed, and a 3.0 key of pgseal's own
            assert b"v" in kinds
            assert len(secret) == 4
        sock.sendall(codec.message(b"Q", b"SELECT pg_backend_pid()\x00"))
        answer = messages_until_ready(sock)
        (row,) = [body for kind, body in answer if kind == ord("D")]
        backend_pid = int(codec.decode_data_row(row)[0] or b"0")
        # The pid is the backend's (it is public: pg_backend_pid(), the pid of
        # every notification); the secret is pgseal's own (a forged one cancels
        # nothing: test_a_forged_3_2_cancel_key_cancels_nothing).
        assert backend_pid == pid
        sock.sendall(codec.TERMINATE)


def test_psycopg_with_protocol_3_2_cancels_a_query_through_pgseal(
    relay: Relay, server_speaks_3_2: bool
) -> None:
    conninfo = relay.conninfo(min_protocol_version="3.2", max_protocol_version="3.2")
    if not server_speaks_3_2:  # libpq refuses the older server, through pgseal as directly
        with pytest.raises(psycopg.OperationalError) as through:
            psycopg.connect(conninfo)
        with pytest.raises(psycopg.OperationalError) as direct:
            psycopg.connect(relay.direct_dsn, min_protocol_version="3.2")
        assert "protocol" in str(through.value)
        assert "protocol" in str(direct.value)
        return
    with psycopg.connect(conninfo) as conn:
        assert conn.pgconn.full_protocol_version == 30002
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 10
        timer.join()
        conn.rollback()
        assert conn.execute("SELECT 32").fetchone() == (32,)


def test_a_forged_3_2_cancel_key_cancels_nothing(relay: Relay) -> None:
    conninfo = relay.conninfo(max_protocol_version="3.2")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        backend_pid = conn.info.backend_pid  # the backend's pid, pgseal's secret
        done = threading.Event()
        result: list[object] = []

        def sleep() -> None:
            try:
                result.append(conn.execute("SELECT pg_sleep(1.5)").fetchone())
            except psycopg.Error as exc:  # pragma: no cover - the failure case
                result.append(exc)
            done.set()

        worker = threading.Thread(target=sleep)
        worker.start()
        time.sleep(0.3)
        forged = struct.pack("!III", 12 + 32, codec.CANCEL_REQUEST_CODE, backend_pid)
        with socket.create_connection((relay.proxy.host, relay.proxy.port)) as sock:
            sock.sendall(forged + bytes(32))
            sock.settimeout(5)
            assert sock.recv(1) == b""  # closed without an answer, like Postgres
        assert done.wait(10)
        worker.join()
        assert result == [("",)]
