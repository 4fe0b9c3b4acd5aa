"""node-postgres (npm ``pg``) scenarios run as Node processes against pgseal.

A script prints one JSON line ``{"check": ..., "value": ...}`` per observation;
the tests parse them and assert. Node and the pinned npm packages are required:
without them the tests fail (never skip) saying what to install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.clients.conftest import Relay, relay

__all__ = ["Relay", "node_binary", "pg_env", "relay", "relay_env", "run_node_script"]

NODE_DIR = Path(__file__).resolve().parent


def node_binary() -> str:
    """The node executable; fails the test with what to install if it is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js 18+) is not on PATH: install it to run the node-postgres tests")
    for package in ("pg", "pg-cursor", "pg-copy-streams"):
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(
                f"tests/node/node_modules/{package} is missing: run `npm ci --prefix tests/node`"
            )
    return node


def run_node_script(
    script: str, args: list[str], env: Mapping[str, str], timeout: float = 100.0
) -> dict[str, object]:
    """Run ``tests/node/<script>`` and return its checks by name.

    The script must finish with its ``done`` line; a scenario that threw is
    reported by the script as ``<name>:crashed`` and fails here with its message.
    """
    done = subprocess.run(
        [node_binary(), str(NODE_DIR / script), *args],
        env={**os.environ, "TZ": "UTC", "NODE_NO_WARNINGS": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=NODE_DIR,
    )
    checks: dict[str, object] = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        checks[record["check"]] = record["value"]
    crashed = {k: v for k, v in checks.items() if k.endswith(":crashed")}
    assert not crashed, f"scenarios threw: {crashed}\nstderr: {done.stderr[-2000:]}"
    assert done.returncode == 0, f"{script} exited with {done.returncode}: {done.stderr[-2000:]}"
    assert checks.get("done") is True, f"{script} did not finish: {done.stderr[-2000:]}"
    return checks


def pg_env(host: str, port: int, user: str, database: str) -> dict[str, str]:
    """libpq-style variables, which node-postgres reads too."""
    return {"PGHOST": host, "PGPORT": str(port), "PGUSER": user, "PGDATABASE": database}


def relay_env(relay: Relay, direct: bool = False) -> dict[str, str]:
    if direct:
        return pg_env(relay.server.host, relay.server.port, relay.user, relay.database)
    return pg_env(relay.proxy.host, relay.proxy.port, relay.user, relay.database)
