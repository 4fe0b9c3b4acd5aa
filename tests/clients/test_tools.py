"""psql and pgbench through a pass-through pgseal."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.clients.conftest import Relay, binary


def psql(relay: Relay, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", *args],
        env=relay.env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_psql_command_and_multi_statement(relay: Relay) -> None:
    result = psql(relay, "-c", "SELECT 1; SELECT 'two'", "-c", "SELECT 40 + 2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "two", "42"]


def test_psql_error_stops_the_script_with_the_server_message(relay: Relay) -> None:
    result = psql(relay, "-c", "SELECT 1/0")
    assert result.returncode != 0
    assert "division by zero" in result.stderr


def test_psql_script_with_copy(relay: Relay, workdir: Path) -> None:
    data = workdir / "in.tsv"
    data.write_text("".join(f"{i}\tname {i}\n" for i in range(1000)))
    out = workdir / "out.csv"
    script = workdir / "script.sql"
    script.write_text(
        "DROP TABLE IF EXISTS psql_copy;\n"
        "CREATE TABLE psql_copy (id int, name text);\n"
        f"\\copy psql_copy from '{data}'\n"
        f"\\copy (SELECT * FROM psql_copy ORDER BY id) to '{out}' with (format csv)\n"
        "SELECT count(*), sum(id) FROM psql_copy;\n"
    )
    result = psql(relay, "-f", str(script))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "1000|499500"
    assert out.read_text().splitlines()[999] == "999,name 999"


@pytest.fixture(scope="module")
def pgbench_db(relay: Relay) -> Relay:
    result = subprocess.run(
        [binary("pgbench"), "-i", "-s", "1", "-q"],
        env=relay.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return relay


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_every_protocol_mode(pgbench_db: Relay, mode: str) -> None:
    result = subprocess.run(
        [binary("pgbench"), "-M", mode, "-c", "4", "-j", "2", "-t", "200"],
        env=pgbench_db.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    processed = re.search(r"number of transactions actually processed: (\d+)/(\d+)", result.stdout)
    assert processed is not None, result.stdout
    assert processed.group(1) == processed.group(2) == "800"
    failed = re.search(r"number of failed transactions: (\d+)", result.stdout)
    assert failed is None or failed.group(1) == "0"
