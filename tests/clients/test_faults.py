"""Faults around a pass-through pgseal: dead upstream, killed clients, limits, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from proxy.embedded import EmbeddedPostgres, temporary_cluster
from tests.clients.conftest import Relay
from tests.conftest import PgServer
from tests.fuzz.engine import startup_packet
from tests.pgseal_process import PgsealProcess, start_pgseal


@pytest.fixture
def own_cluster() -> Iterator[EmbeddedPostgres]:
    with temporary_cluster() as cluster:
        yield cluster


def _read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data
        if not chunk:
            return data
        data += chunk


def _ready(sock: socket.socket) -> bytes:
    data = b""
    while b"Z\x00\x00\x00\x05" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


async def test_upstream_restart_gives_a_fatal_08006_then_new_connections_work(
    own_cluster: EmbeddedPostgres, tmp_path: Path
) -> None:
    proxy = await asyncio.to_thread(
        start_pgseal, tmp_path, f"postgresql://127.0.0.1:{own_cluster.port}/postgres"
    )
    try:
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        sock.sendall(startup_packet("postgres", "postgres"))
        _ready(sock)
        other = await asyncpg.connect(proxy.dsn())
        await asyncio.to_thread(own_cluster.restart, "immediate")
        started = time.monotonic()
        tail = await asyncio.to_thread(_read_all, sock)
        assert time.monotonic() - started < 10
        # Whatever the dying backend said, pgseal's own FATAL 08006 ends the stream.
        assert b"C08006\x00" in tail
        assert b"SFATAL\x00" in tail
        sock.close()
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await asyncio.wait_for(other.fetchval("SELECT 1"), 10)
        fresh = await asyncpg.connect(proxy.dsn())
        assert await fresh.fetchval("SELECT 2") == 2
        await fresh.close()
    finally:
        proxy.stop()


async def test_client_killed_mid_copy_ends_its_backend(relay: Relay) -> None:
    direct = await asyncpg.connect(relay.direct_dsn)
    try:
        await direct.execute("CREATE TABLE IF NOT EXISTS killcopy (v text)")
        sock = socket.create_connection(("127.0.0.1", relay.proxy.port))
        sock.sendall(startup_packet(relay.user, relay.database, application_name="killcopy"))
        _ready(sock)
        query = b"COPY killcopy FROM STDIN\x00"
        sock.sendall(b"Q" + struct.pack("!I", len(query) + 4) + query)
        data = b"half a row\n" * 100
        sock.sendall(b"d" + struct.pack("!I", len(data) + 4) + data)
        await asyncio.sleep(0.2)
        # An abortive close (RST), like a killed process on another host.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        for _ in range(100):
            left = await direct.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'killcopy'"
            )
            if left == 0:
                break
            await asyncio.sleep(0.1)
        assert left == 0
        assert await direct.fetchval("SELECT count(*) FROM killcopy") == 0
        still = await asyncpg.connect(relay.dsn())
        assert await still.fetchval("SELECT 3") == 3
        await still.close()
    finally:
        await direct.close()


async def test_message_longer_than_the_limit_is_refused(relay: Relay) -> None:
    sock = socket.create_connection(("127.0.0.1", relay.proxy.port))
    try:
        sock.sendall(startup_packet(relay.user, relay.database))
        _ready(sock)
        sock.sendall(b"Q" + struct.pack("!I", 20 * 1024 * 1024))  # 20 MB announced, 10 MB limit
        answer = await asyncio.to_thread(_read_all, sock)
        assert b"SFATAL\x00" in answer
        assert b"C08P01\x00" in answer or b"C54000\x00" in answer
    finally:
        sock.close()
    conn = await asyncpg.connect(relay.dsn())
    assert await conn.fetchval("SELECT 4") == 4
    await conn.close()


async def test_too_many_clients_get_53300(pg_server: PgServer, tmp_path: Path) -> None:
    proxy = await asyncio.to_thread(
        start_pgseal,
        tmp_path,
        f"postgresql://{pg_server.host}:{pg_server.port}/postgres",
        "limits: {max_client_connections: 3}\n",
    )
    conns = []
    try:
        conns = [await asyncpg.connect(proxy.dsn()) for _ in range(3)]
        with pytest.raises(asyncpg.TooManyConnectionsError):
            await asyncpg.connect(proxy.dsn())
        await conns.pop().close()
        conns.append(await asyncpg.connect(proxy.dsn()))
        assert await conns[-1].fetchval("SELECT 5") == 5
    finally:
        for conn in conns:
            await conn.close()
        proxy.stop()


async def test_sigterm_lets_the_running_query_finish(pg_server: PgServer, tmp_path: Path) -> None:
    proxy: PgsealProcess = await asyncio.to_thread(
        start_pgseal,
        tmp_path,
        f"postgresql://{pg_server.host}:{pg_server.port}/postgres",
        "limits: {shutdown_grace_seconds: 20}\n",
    )
    try:
        conn = await asyncpg.connect(proxy.dsn())
        running = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(1.5)::text || 'done'"))
        await asyncio.sleep(0.3)
        proxy.signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        with pytest.raises(ConnectionRefusedError):
            await asyncpg.connect(proxy.dsn(), timeout=2)
        assert await asyncio.wait_for(running, 10) == "done"
        assert await asyncio.to_thread(proxy.wait, 10) == 0
    finally:
        proxy.stop()


async def test_log_has_one_line_per_connection_and_no_data(relay: Relay) -> None:
    secret = "param-secret-5d1e"
    conn = await asyncpg.connect(relay.dsn())
    try:
        assert await conn.fetchval("SELECT $1::text || '-row-value'", secret) == (
            secret + "-row-value"
        )
    finally:
        await conn.close()
    await asyncio.sleep(0.2)
    log = relay.proxy.log_text()
    assert secret not in log
    assert "-row-value" not in log
    closed = [line for line in log.splitlines() if "connection closed" in line]
    assert any("bytes_in=" in line and f"database={relay.database}" in line for line in closed)
