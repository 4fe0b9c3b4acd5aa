"""Runs tests/php/pdo.php (PHP's PDO with pdo_pgsql, from Debian) and reads its checks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("pdo.php")
INSTALL = "apt-get install php-cli php-pgsql"


def run_pdo(
    mode: str, host: str, port: int, database: str, user: str, tag: str
) -> dict[str, object]:
    """The script's checks by name; fails (never skips) when PHP or pdo_pgsql is missing."""
    php = shutil.which("php")
    if php is None:
        pytest.fail(f"php is not installed: {INSTALL}")
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, check=True).stdout
    if "pdo_pgsql" not in modules.split():
        pytest.fail(f"PHP has no pdo_pgsql: {INSTALL}")
    done = subprocess.run(
        [php, str(SCRIPT), mode, host, str(port), database, user, tag],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    checks: dict[str, object] = {}
    for line in done.stdout.splitlines():
        item = json.loads(line)
        checks[item["check"]] = item["value"]
    return checks
