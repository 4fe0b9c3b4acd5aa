"""Connection limits and timeouts of a running pgseal, against a real Postgres.

One pgseal for the module, behind which a ``FaultHop`` relays to the shared
test server, so that the upstream can be made silent without a server of its
own (``tls.upstream: disable``). Limits are small (4 clients, 1.5 s startup,
2 s idle, 1 s connect) so every timeout is seen within seconds.
"""

from __future__ import annotations

import asyncio
import struct
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import trustme

from proxy.embedded import free_port
from tests.conftest import PgServer
from tests.faulthop import FaultHop, silent_listener
from tests.fuzz.engine import startup_packet
from tests.pgseal_process import PgsealProcess, start_pgseal

MAX_CLIENTS = 4
STARTUP_TIMEOUT = 1.5
IDLE_TIMEOUT = 2.0
CONNECT_TIMEOUT = 1.0
#: The proxy checks its timers every 0.5 s; allow that plus scheduling noise.
SLACK = 2.0


@dataclass(frozen=True)
class Limited:
    proxy: PgsealProcess
    hop: FaultHop
    metrics_port: int
    user: str

    def dsn(self) -> str:
        return self.proxy.dsn(user=self.user)

    def open_connections(self) -> int:
        return gauge(self.metrics_port, "pgseal_connections")


def gauge(metrics_port: int, name: str) -> int:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body: str = response.read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError(f"no {name} gauge")


@pytest.fixture(scope="module")
async def limited(
    pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Limited]:
    hop = await FaultHop(pg_server.host, pg_server.port).start()
    metrics_port = free_port()
    proxy = await asyncio.to_thread(
        start_pgseal,
        tmp_path_factory.mktemp("limits"),
        f"postgresql://127.0.0.1:{hop.port}/postgres",
        # No SSLRequest upstream, so a silent server is caught after the startup
        # packet (the SSLRequest wait has its own timeout, seen in the last test).
        f"metrics_listen: 127.0.0.1:{metrics_port}\ntls: {{upstream: disable}}\n"
        f"limits: {{max_client_connections: {MAX_CLIENTS}, "
        f"startup_timeout_seconds: {STARTUP_TIMEOUT}, idle_timeout_seconds: {IDLE_TIMEOUT}, "
        f"connect_timeout_seconds: {CONNECT_TIMEOUT}}}\n",
    )
    user = pg_server.base_dsn.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0]
    try:
        yield Limited(proxy, hop, metrics_port, user)
    finally:
        proxy.stop()
        await hop.close()


async def _raw(limited: Limited) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", limited.proxy.port)


async def _read_until_closed(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float]:
    """Everything the proxy sends until it closes; and how long that took."""
    started = time.monotonic()
    data = b""
    async with asyncio.timeout(limit):
        while chunk := await reader.read(65536):
            data += chunk
    return data, time.monotonic() - started


async def _wait_connections(limited: Limited, expected: int, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while (now := await asyncio.to_thread(limited.open_connections)) != expected:
        assert time.monotonic() < deadline, f"{now} connections open, expected {expected}"
        await asyncio.sleep(0.1)


async def test_excess_clients_get_53300_and_the_slot_comes_back(limited: Limited) -> None:
    conns = [await asyncpg.connect(limited.dsn()) for _ in range(MAX_CLIENTS)]
    try:
        with pytest.raises(asyncpg.TooManyConnectionsError, match="too many clients"):
            await asyncpg.connect(limited.dsn())
        for conn in conns:  # the refused client disturbed nobody
            assert await conn.fetchval("SELECT 1") == 1
        await conns.pop().close()
        conns.append(await asyncpg.connect(limited.dsn()))
        assert await conns[-1].fetchval("SELECT 2") == 2
    finally:
        for conn in conns:
            await conn.close()
    await _wait_connections(limited, 0)


@pytest.mark.parametrize("sent", [b"", b"\x00\x00\x00"], ids=["nothing", "half-a-length"])
async def test_silent_or_partial_startup_is_closed_after_the_startup_timeout(
    limited: Limited, sent: bytes
) -> None:
    reader, writer = await _raw(limited)
    writer.write(sent or startup_packet(limited.user, "postgres")[:9])
    await writer.drain()
    data, took = await _read_until_closed(reader, STARTUP_TIMEOUT + SLACK + 2)
    writer.close()
    assert STARTUP_TIMEOUT - 0.1 <= took <= STARTUP_TIMEOUT + SLACK
    assert b"C08006\x00" in data
    assert b"timeout waiting for startup" in data
    await _wait_connections(limited, 0)


async def test_slowloris_sockets_hold_one_slot_each_and_a_healthy_client_is_served(
    limited: Limited,
) -> None:
    """Three sockets dribble a startup packet a byte at a time: each holds exactly
    one slot, dribbling does not extend the deadline, the fourth slot serves a
    healthy client throughout, and every slot is free again after the timeout."""
    packet = startup_packet(limited.user, "postgres")
    dribblers = [await _raw(limited) for _ in range(MAX_CLIENTS - 1)]

    async def dribble(writer: asyncio.StreamWriter) -> bool:
        """True when the proxy cut the socket before the packet was complete."""
        try:
            for i in range(len(packet) - 1):
                writer.write(packet[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.1)
        except (ConnectionError, OSError):
            return True
        return False

    started = time.monotonic()
    tasks = [asyncio.ensure_future(dribble(w)) for _, w in dribblers]
    try:
        await _wait_connections(limited, MAX_CLIENTS - 1)
        healthy = await asyncpg.connect(limited.dsn())
        try:
            for i in range(5):
                assert await healthy.fetchval("SELECT $1::int", i) == i
            with pytest.raises(asyncpg.TooManyConnectionsError):
                await asyncpg.connect(limited.dsn())
        finally:
            await healthy.close()
        for reader, _ in dribblers:
            data, _took = await _read_until_closed(reader, STARTUP_TIMEOUT + SLACK + 2)
            assert b"C08006\x00" in data
        assert time.monotonic() - started <= STARTUP_TIMEOUT + SLACK + 0.5
        assert await asyncio.wait_for(asyncio.gather(*tasks), 5) == [True] * len(tasks)
    finally:
        for task in tasks:
            task.cancel()
        for _, writer in dribblers:
            writer.close()
    await _wait_connections(limited, 0)
    conns = [await asyncpg.connect(limited.dsn()) for _ in range(MAX_CLIENTS)]
    for conn in conns:
        await conn.close()


def _frame(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


async def _ready(reader: asyncio.StreamReader) -> bytes:
    data = b""
    async with asyncio.timeout(10):
        while b"Z\x00\x00\x00\x05" not in data:
            chunk = await reader.read(65536)
            assert chunk, data
            data += chunk
    return data


async def test_idle_timeout_closes_idle_sessions_only(limited: Limited) -> None:
    async def session() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await _raw(limited)
        writer.write(startup_packet(limited.user, "postgres"))
        await _ready(reader)
        return reader, writer

    idle_r, idle_w = await session()
    in_txn_r, in_txn_w = await session()
    busy_r, busy_w = await session()
    in_txn_w.write(_frame(b"Q", b"BEGIN\x00"))
    await _ready(in_txn_r)
    busy_w.write(_frame(b"Q", b"SELECT pg_sleep(3.5)\x00"))
    data, took = await _read_until_closed(idle_r, IDLE_TIMEOUT + SLACK + 2)
    assert IDLE_TIMEOUT - 0.1 <= took <= IDLE_TIMEOUT + SLACK
    assert b"C57P05\x00" in data
    # The query outlives the idle timeout and still returns, then idles out itself.
    answer = await _ready(busy_r)
    assert b"C57P05" not in answer
    assert b"D\x00" in answer
    # Inside a transaction block the session is not idle: it is still alive.
    in_txn_w.write(_frame(b"Q", b"SELECT 7\x00"))
    assert b"7" in await _ready(in_txn_r)
    for writer in (idle_w, in_txn_w, busy_w):
        writer.close()
    await _wait_connections(limited, 0)


async def test_upstream_that_accepts_but_never_answers_gives_08001(limited: Limited) -> None:
    limited.hop.answer = False
    try:
        started = time.monotonic()
        with pytest.raises(asyncpg.PostgresError, match="did not answer within 1 s") as info:
            await asyncpg.connect(limited.dsn(), timeout=10)
        assert time.monotonic() - started <= CONNECT_TIMEOUT + SLACK
        assert info.value.sqlstate == "08001"
    finally:
        limited.hop.answer = True
    conn = await asyncpg.connect(limited.dsn())
    assert await conn.fetchval("SELECT 3") == 3
    await conn.close()


async def test_upstream_connect_that_hangs_times_out_with_08001(tmp_path: Path) -> None:
    with silent_listener() as port:
        proxy = await asyncio.to_thread(
            start_pgseal,
            tmp_path,
            f"postgresql://127.0.0.1:{port}/postgres",
            f"limits: {{connect_timeout_seconds: {CONNECT_TIMEOUT}}}\n",
        )
        try:
            started = time.monotonic()
            with pytest.raises(asyncpg.PostgresError, match="timed out after 1 s") as info:
                await asyncpg.connect(proxy.dsn(), timeout=10)
            assert time.monotonic() - started <= CONNECT_TIMEOUT + SLACK
            assert info.value.sqlstate == "08001"
            assert f"127.0.0.1:{port}" in str(info.value)
        finally:
            proxy.stop()


async def test_direct_tls_sockets_waiting_for_their_first_byte_hold_a_slot(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """With ``tls.direct`` pgseal peeks at the first byte before it knows whether
    TLS comes first; a socket still silent there counts against the limit like
    any other, and its slot comes back when it closes."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "pgseal.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "pgseal.key"))
    metrics_port = free_port()
    proxy = await asyncio.to_thread(
        start_pgseal,
        tmp_path / "pgseal",
        f"postgresql://{pg_server.host}:{pg_server.port}/postgres",
        f"tls:\n  cert: {tmp_path / 'pgseal.crt'}\n  key: {tmp_path / 'pgseal.key'}\n"
        "  direct: true\n  upstream: disable\n"
        "limits: {max_client_connections: 2, startup_timeout_seconds: 30}\n"
        f"metrics_listen: 127.0.0.1:{metrics_port}\n",
    )
    user = pg_server.base_dsn.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0]
    dsn = proxy.dsn(user=user, sslmode="disable")
    silent = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(2)]
    try:
        with pytest.raises(asyncpg.TooManyConnectionsError, match="too many clients"):
            await asyncpg.connect(dsn, timeout=10)
        # The metrics show them: slots held, though no session exists yet.
        assert await asyncio.to_thread(gauge, metrics_port, "pgseal_client_sockets") == 2
        assert await asyncio.to_thread(gauge, metrics_port, "pgseal_connections") == 0
        for _, writer in silent:
            writer.close()
        # The slots come back as soon as pgseal sees the close, not at the timeout.
        deadline = time.monotonic() + 5
        while True:
            try:
                conn = await asyncpg.connect(dsn, timeout=10)
                break
            except asyncpg.TooManyConnectionsError:
                assert time.monotonic() < deadline, "the silent sockets' slots never came back"
                await asyncio.sleep(0.1)
        try:
            assert await conn.fetchval("SELECT 5") == 5
            second = await asyncpg.connect(dsn, timeout=10)
            assert await second.fetchval("SELECT 6") == 6
            await second.close()
        finally:
            await conn.close()
    finally:
        for _, writer in silent:
            writer.close()
        proxy.stop()
