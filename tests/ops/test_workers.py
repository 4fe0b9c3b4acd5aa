"""``pgseal serve --workers 2`` as a real process tree in front of a real Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import psycopg
import pytest

from proxy.workers import STARTUP_WINDOW
from tests.conftest import PgServer
from tests.pgseal_process import REPO_ROOT, PgsealProcess, start_pgseal
from tests.stacks import TABLE_RULES, encrypted_database

_OPENED = re.compile(r"connection opened .*\bpid=(\d+)")


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _workers_listening(proxy: PgsealProcess, count: int) -> set[int]:
    """The worker pids, once ``count`` of them say they listen."""
    assert proxy.process is not None
    async with asyncio.timeout(20):
        while True:
            said = re.findall(r"worker \d+ listening on .*pid=(\d+)", proxy.log_text())
            pids = {int(m) for m in said}
            alive = _children(proxy.process.pid)
            if len(pids & alive) >= count and len(alive) == count:
                return alive
            await asyncio.sleep(0.1)


async def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def _pids_serving(proxy: PgsealProcess) -> list[int]:
    return [int(m.group(1)) for m in _OPENED.finditer(proxy.log_text())]


async def test_two_workers_share_the_port_restart_on_crash_and_stop_on_sigterm(
    pg_server: PgServer, tmp_path: Path
) -> None:
    proxy = await asyncio.to_thread(
        start_pgseal,
        tmp_path,
        f"postgresql://{pg_server.host}:{pg_server.port}/postgres",
        args=("--workers", "2"),
    )
    assert proxy.process is not None
    try:
        started = time.monotonic()
        workers = await _workers_listening(proxy, 2)
        assert proxy.process.pid not in workers
        # New TCP connections are spread by the kernel (4-tuple hash): 16 in a
        # row all on one worker would happen with probability 2**-15.
        conns = [await asyncpg.connect(proxy.dsn()) for _ in range(16)]
        for i, conn in enumerate(conns):
            assert await conn.fetchval("SELECT $1::int + 1", i) == i + 1
        await asyncio.sleep(0.2)
        assert set(_pids_serving(proxy)) == workers
        # A worker that dies while serving is replaced; its clients lose their
        # connections, the other worker's keep theirs.
        await asyncio.sleep(max(0.0, STARTUP_WINDOW + 0.5 - (time.monotonic() - started)))
        victim, pid = min(workers), proxy.process.pid
        os.kill(victim, signal.SIGKILL)
        await _until(lambda: len(now := _children(pid)) == 2 and now != workers)
        survivors = 0
        for conn in conns:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                survivors += await conn.fetchval("SELECT 1")
        assert 0 < survivors < len(conns)
        for conn in conns:
            conn.terminate()
        workers = await _workers_listening(proxy, 2)
        assert victim not in workers
        fresh = await asyncpg.connect(proxy.dsn())
        assert await fresh.fetchval("SELECT 42") == 42
        await fresh.close()
        # SIGHUP goes to every worker; each reloads its configuration.
        proxy.signal(signal.SIGHUP)
        await _until(lambda: proxy.log_text().count("configuration reloaded") >= 2)
        assert _alive(proxy.process.pid)
        # SIGTERM to the parent stops every worker, and the parent exits 0.
        proxy.signal(signal.SIGTERM)
        assert await asyncio.to_thread(proxy.wait, 20) == 0
        assert not any(_alive(pid) for pid in workers)
        with pytest.raises(ConnectionRefusedError):
            await asyncpg.connect(proxy.dsn(), timeout=2)
        assert "all workers stopped" in proxy.log_text()
    finally:
        proxy.stop()


async def test_cancel_reaches_the_query_whichever_worker_gets_the_request(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """A CancelRequest comes on a new connection, which the kernel may give to
    the other worker; it must still cancel the query, on every connection."""
    proxy = await asyncio.to_thread(
        start_pgseal,
        tmp_path,
        f"postgresql://{pg_server.host}:{pg_server.port}/postgres",
        args=("--workers", "2"),
    )
    try:
        workers = await _workers_listening(proxy, 2)
        conns = [
            await psycopg.AsyncConnection.connect(proxy.dsn(), autocommit=True) for _ in range(10)
        ]
        await asyncio.sleep(0.2)
        assert set(_pids_serving(proxy)) == workers
        sleeps = [asyncio.ensure_future(c.execute("SELECT pg_sleep(60)")) for c in conns]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        for conn in conns:
            await conn.cancel_safe(timeout=5)
        outcomes = await asyncio.wait_for(asyncio.gather(*sleeps, return_exceptions=True), 10)
        assert time.monotonic() - started < 10
        assert [type(o) for o in outcomes] == [psycopg.errors.QueryCanceled] * len(conns)
        for conn in conns:  # and each connection goes on working
            cur = await conn.execute("SELECT 5")
            assert await cur.fetchone() == (5,)
            await conn.close()
    finally:
        proxy.stop()


async def test_a_worker_that_cannot_start_stops_the_others(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """Encrypted tables with a master key variable that is not set: every worker
    fails at start; the supervisor exits 1 instead of restarting them forever."""
    with pytest.raises(RuntimeError, match="exited with 1"):
        await asyncio.to_thread(
            start_pgseal,
            tmp_path,
            f"postgresql://{pg_server.host}:{pg_server.port}/postgres",
            f"service_dsn: {pg_server.base_dsn}\nmaster_key: env:PGSEAL_OPS_UNSET_MK\n"
            + TABLE_RULES,
            args=("--workers", "2"),
        )
    log = (tmp_path / "pgseal.log").read_text()
    assert "failed to start" in log


async def test_shred_in_one_place_reaches_every_worker_within_a_second(
    pg_server: PgServer, fresh_db: str, tmp_path: Path
) -> None:
    encrypted = await encrypted_database(
        pg_server, fresh_db, tmp_path, "key_cache: {ttl_seconds: 300}\n", args=("--workers", "2")
    )
    proxy, direct = encrypted.proxy, encrypted.direct
    try:
        workers = await _workers_listening(proxy, 2)
        conns = [await asyncpg.connect(encrypted.dsn()) for _ in range(12)]
        await conns[0].execute("INSERT INTO t (business_id, secret) VALUES (7, 'shred-me-4f2a')")
        for conn in conns:  # every worker now holds tenant 7's key in its cache
            assert await conn.fetchval("SELECT secret FROM t") == "shred-me-4f2a"
        await asyncio.sleep(0.2)
        assert set(_pids_serving(proxy)) == workers
        shredded = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "proxy", "keys", "shred", "--tenant", "7", "--yes",
             "--dsn", direct],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )  # fmt: skip
        assert shredded.returncode == 0, shredded.stderr
        done = time.monotonic()
        readable = set(range(len(conns)))
        refusals: list[str | None] = []
        async with asyncio.timeout(5):
            while readable:
                for i in list(readable):
                    try:
                        await conns[i].fetchval("SELECT secret FROM t")
                    except asyncpg.PostgresError as exc:
                        refusals.append(exc.sqlstate)
                        readable.discard(i)
                await asyncio.sleep(0.02)
        assert refusals == ["55000"] * len(conns)  # under a destroyed key, not another error
        took = time.monotonic() - done
        assert took <= 1.0, f"a worker served a shredded key {took:.2f} s after the shred"
        for conn in conns:
            await conn.close()
    finally:
        proxy.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_clear_line(workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "proxy", "serve", "--upstream", "postgresql://127.0.0.1:1/x",
             "--listen", f"127.0.0.1:{port}", "--workers", workers],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (f"listen: cannot listen on 127.0.0.1:{port}: Address already in use\n")
