"""Ruby scenarios (the pg gem, ActiveRecord) run as ``ruby`` processes against pgseal.

A script prints one JSON line ``{"check": ..., "value": ...}`` per observation;
the tests parse them and assert. Ruby, the pg gem and ActiveRecord come from
Debian; without them the tests fail (never skip) saying what to install.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.clients.conftest import Relay, relay

__all__ = ["Relay", "pg_env", "relay", "run_ruby"]

RUBY_DIR = Path(__file__).resolve().parent
INSTALL = "apt-get install ruby ruby-pg ruby-activerecord"


@functools.cache
def _find_ruby() -> tuple[str | None, str]:
    """(the ruby executable, "") or (None, what is missing); looked for once a run."""
    ruby = shutil.which("ruby")
    if ruby is None:
        return None, f"ruby is not installed: {INSTALL}"
    probe = subprocess.run(
        [ruby, "-e", 'require "pg"; require "active_record"'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        return None, f"ruby has no pg gem or ActiveRecord ({probe.stderr.strip()}): {INSTALL}"
    return ruby, ""


def ruby_binary() -> str:
    """The ruby executable; fails the test with what to install if it or a gem is missing."""
    ruby, missing = _find_ruby()
    if ruby is None:
        pytest.fail(missing)
    return ruby


def run_ruby(
    script: str, scenario: str, env: Mapping[str, str], timeout: float = 120.0
) -> dict[str, object]:
    """Run ``tests/ruby/<script> <scenario>`` and return its checks by name.

    The script ends with a ``done`` line; a scenario that raised is reported by
    the script as ``<name>:crashed`` and fails here with its message.
    """
    done = subprocess.run(
        [ruby_binary(), str(RUBY_DIR / script), scenario],
        env={**os.environ, "TZ": "UTC", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    checks: dict[str, object] = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        checks[record["check"]] = record["value"]
    crashed = {k: v for k, v in checks.items() if k.endswith(":crashed")}
    assert not crashed, f"scenarios raised: {crashed}\nstderr: {done.stderr[-2000:]}"
    assert done.returncode == 0, f"{script} exited with {done.returncode}: {done.stderr[-2000:]}"
    assert checks.get("done") is True, f"{script} did not finish: {done.stderr[-2000:]}"
    return checks


def pg_env(host: str, port: int, user: str, database: str, **extra: str) -> dict[str, str]:
    """libpq's variables, which the pg gem reads; the scenario's settings after them."""
    return {
        "PGHOST": host,
        "PGPORT": str(port),
        "PGUSER": user,
        "PGDATABASE": database,
        **extra,
    }
