"""``pgseal demo`` as a user runs it: a real child process, its output and exit status.

One run on an embedded PostgreSQL in a temporary directory (removed afterwards),
one against the test server with ``--upstream --keep-running`` (connected to
through the printed DSNs, then stopped with Ctrl-C), one with ``--dir
--keep-running`` stopped with SIGTERM (the data stays), and a bad ``--upstream``
that must fail in one line. bcrypt runs at 4 rounds to keep them short.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from proxy.embedded import EmbeddedPostgres
from tests.conftest import PgServer
from tests.pgseal_process import REPO_ROOT

# A cell pair of the side-by-side tables: key id, then version, first bytes, size.
ENVELOPE = re.compile(r"│ ([0-9]{1,19}) +│ v1 [0-9a-f]{8}… \d+ B")
KEY_ROW = re.compile(r"│ (data|search index) +│ ([0-9]{1,19}) ")
# A master key as pgseal's providers take it: base64 of 32 bytes.
BASE64_KEY = re.compile(r"[A-Za-z0-9+/]{43}=")
PLAINTEXTS = (
    "Harbour View Hotel Ltd",
    "t.nowak@harbourview-hotel.example",
    "GB18BARC20320641920377",
    "Thistle Bakery",
    "Riverside Dental Care",
    "sk_test_51BeaconPlumbingT9wKd4Ys6demo",
)


def demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy", "demo", "--bcrypt-rounds", "4", *args]


def child_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "160"}


def assert_clean(output: str) -> None:
    assert "Traceback" not in output
    assert not BASE64_KEY.search(output), "something key-shaped was printed"
    for noise in (" DEBUG ", " INFO ", "WARNING", "asyncpg."):
        assert noise not in output, noise


def test_demo_shows_both_views_refusals_and_keys() -> None:
    result = subprocess.run(
        demo_command(),
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr + out[-2000:]
    assert result.stderr == ""
    assert_clean(out)
    for text in PLAINTEXTS:  # what the app reads
        assert text in out, text
    # What the auditor sees: 10 fields for each of the three businesses, each an
    # envelope under the data key of its own business.
    envelopes = ENVELOPE.findall(out)
    assert len(envelopes) == 30
    assert "NOT AN ENVELOPE" not in out
    keys = KEY_ROW.findall(out)
    data_keys = [key for kind, key in keys if kind.startswith("data")]
    assert len(data_keys) == 3
    assert len([k for kind, k in keys if kind.startswith("search")]) == 3
    assert [envelopes[i * 10] for i in range(3)] == data_keys
    for i, key in enumerate(data_keys):
        assert set(envelopes[i * 10 : i * 10 + 10]) == {key}
    # The refusals: an unsafe query, a cross-business read, a staff member.
    assert out.count("ERROR 0A000") == 2
    assert "ORDER BY on" in out
    assert "ERROR 42501" in out
    assert "may not read bank details" in out
    # The temporary directory it started PostgreSQL in is gone.
    match = re.search(r"started PostgreSQL \d+ in (\S+) \(removed on exit\)", out)
    assert match is not None, out[:1000]
    assert match.group(1).startswith(tempfile.gettempdir())
    assert not Path(match.group(1)).exists()


async def read_until(demo: asyncio.subprocess.Process, marker: str) -> str:
    """The demo's output up to the line holding ``marker``; its stderr if it exits first."""
    assert demo.stdout is not None
    assert demo.stderr is not None
    seen = ""
    async with asyncio.timeout(90):
        while marker not in seen:
            line = (await demo.stdout.readline()).decode()
            if not line:
                errors = (await demo.stderr.read()).decode()
                raise AssertionError(f"the demo exited early: {seen}\nstderr: {errors}")
            seen += line
    return seen


@contextlib.asynccontextmanager
async def running_demo(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``pgseal demo --keep-running ARGS``, once it says it is up, and what it printed."""
    demo = await asyncio.create_subprocess_exec(
        *demo_command(*args, "--keep-running"),
        cwd=REPO_ROOT, env=child_env(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield demo, await read_until(demo, "Press Ctrl-C")
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()


async def stop(demo: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    """Send ``sig``; the demo must clean up and exit 0 without a traceback."""
    demo.send_signal(sig)
    async with asyncio.timeout(60):
        rest, errors = await demo.communicate()
    assert demo.returncode == 0, errors
    assert b"Traceback" not in errors + rest


async def test_demo_keep_running_with_dir_stops_cleanly_on_sigterm() -> None:
    # Not under pytest's basetemp: another pytest run may chmod it 0700 meanwhile,
    # and PostgreSQL runs as its own system user when the tests run as root.
    directory = Path(tempfile.mkdtemp(prefix="pgseal-demo-test-"))
    try:
        async with running_demo("--dir", str(directory)) as (demo, seen):
            assert f"PostgreSQL's data: {directory} (kept)" in seen
            assert (directory / "postgres" / "postmaster.pid").exists()
            await stop(demo, signal.SIGTERM)
        assert not (directory / "postgres" / "postmaster.pid").exists()
        assert (directory / "postgres" / "PG_VERSION").exists()  # --dir keeps the data
    finally:
        # A failed demo must not leave its PostgreSQL running.
        await asyncio.to_thread(EmbeddedPostgres(datadir=directory / "postgres").stop)
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)


async def test_demo_keep_running_on_an_existing_server(pg_server: PgServer) -> None:
    admin = await asyncpg.connect(pg_server.dsn())
    try:
        before = {r[0] for r in await admin.fetch("SELECT datname FROM pg_database")}
    finally:
        await admin.close()
    async with running_demo("--upstream", pg_server.dsn()) as (demo, seen):
        assert_clean(seen)
        match = re.search(r"created database '(pgseal_demo_[0-9a-f]+)'", seen)
        assert match is not None, seen
        database = match.group(1)
        dsns = re.findall(r'"(postgresql://[^"]+)"', seen)
        assert len(dsns) == 2, dsns
        through, direct = dsns
        assert through != direct
        assert f"/{database}" in through
        # The printed DSNs work: through pgseal the app's data reads as plaintext,
        # directly as envelopes.
        conn = await asyncpg.connect(through)
        try:
            names = {r[0] for r in await conn.fetch("SELECT company_name FROM customers")}
        finally:
            await conn.close()
        assert {"Harbour View Hotel Ltd", "Thistle Bakery", "Riverside Dental Care"} <= names
        conn = await asyncpg.connect(direct)
        try:
            raw = await conn.fetch("SELECT company_name FROM customers")
        finally:
            await conn.close()
        assert raw
        assert all(isinstance(r[0], bytes) and r[0][0] == 1 for r in raw)
        # The example statements printed for psql through pgseal work as printed.
        panel = seen[seen.index("Through pgseal") : seen.index("Directly")]
        statements = re.findall(r"│ +((?:SELECT|SET) .*?;)", panel)
        assert len(statements) == 3, panel
        conn = await asyncpg.connect(through)
        try:
            for statement in statements[:-1]:
                await conn.execute(statement)
            found = await conn.fetch(statements[-1])
        finally:
            await conn.close()
        assert [r["company_name"] for r in found] == ["Riverside Dental Care"]
        await stop(demo, signal.SIGINT)
    admin = await asyncpg.connect(pg_server.dsn())
    try:
        after = {r[0] for r in await admin.fetch("SELECT datname FROM pg_database")}
    finally:
        await admin.close()
    assert database not in before
    assert database not in after  # cleaned up on Ctrl-C


def test_demo_with_an_unreachable_upstream_fails_in_one_line() -> None:
    from proxy.embedded import free_port

    result = subprocess.run(
        demo_command("--upstream", f"postgresql://nobody:pw@127.0.0.1:{free_port()}/x"),
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgseal: error: cannot connect to postgresql://nobody:***@")
    assert "pw" not in lines[0].split("***")[1]
    assert "Traceback" not in result.stderr + result.stdout


def test_demo_refuses_a_bad_option_before_starting_anything() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "demo", "--bcrypt-rounds", "2"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == "pgseal: error: --bcrypt-rounds must be between 4 and 31\n"
    assert "PostgreSQL" not in result.stdout
