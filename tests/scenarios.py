"""Running a compiled scenario program (tests/golang, tests/rust) and reading its checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def run_scenario(program: Path, scenario: str, dsn: str, *args: str) -> dict[str, Any]:
    """Run one scenario; each JSON line ``{"check", "value" | "error"}`` keyed by check.

    An error becomes ``{"error": SQLSTATE or the program's own word, "message": ...}``;
    the last line must be the ``done`` check, so a crash half-way fails instead of
    passing with fewer checks.
    """
    done = subprocess.run(
        [str(program), scenario, dsn, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    name = program.name
    assert done.returncode == 0, f"{name} {scenario} exited {done.returncode}: {done.stderr}"
    checks: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        check = record["check"]
        assert check not in checks, f"check {check} reported twice"
        if "error" in record:
            error = record["error"]
            checks[check] = {"error": error["code"], "message": error["message"]}
        else:
            checks[check] = record["value"]
    assert checks.get("done") is True, f"{name} {scenario} stopped early: {done.stderr}"
    return checks


def sqlstate(check: object) -> object:
    """The error code of a check that must have failed."""
    assert isinstance(check, dict), f"expected an error, got {check!r}"
    assert "error" in check, f"expected an error, got {check!r}"
    return check["error"]
