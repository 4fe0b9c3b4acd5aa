"""Run the Java scenario programs of this directory with the PostgreSQL JDBC driver.

The programs (``PassThrough.java``, ``Encrypted.java``, ``Checks.java``) are
compiled once per test run with ``javac`` and each run is one JVM doing many
scenarios: a JVM costs about a second, a scenario milliseconds. Each prints one
JSON object per line; :class:`Results` indexes them by their ``"check"`` name.
A missing JDK or driver fails the tests that need them, with what to install:
they are never skipped.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SOURCES = ("Checks.java", "PassThrough.java", "Encrypted.java")
#: Debian's pgjdbc; ``PGSEAL_JDBC_JAR`` names another one.
DEFAULT_JAR = Path("/usr/share/java/postgresql.jar")
INSTALL = "apt-get install libpostgresql-jdbc-java default-jdk-headless"


class Results:
    """The checks one JVM printed, by name; a scenario's ``error`` line fails its test."""

    def __init__(self, stdout: str, stderr: str) -> None:
        self.stderr = stderr
        self.checks: dict[str, dict[str, Any]] = {}
        for line in stdout.splitlines():
            if not line.startswith("{"):
                continue
            check = json.loads(line)
            name = check["check"]
            assert name not in self.checks, f"check {name!r} printed twice"
            self.checks[name] = check

    def __getitem__(self, name: str) -> dict[str, Any]:
        assert "done" in self.checks, f"the JVM did not finish its scenarios:\n{self.stderr}"
        assert name in self.checks, (
            f"no {name!r} check in the Java output; got {sorted(self.checks)}"
        )
        check = self.checks[name]
        assert "error" not in check, f"scenario {name!r} failed in Java: {check}"
        return check


@dataclass(frozen=True)
class Jdbc:
    """A JVM and the compiled scenario classes, ready to run."""

    java: str
    jar: Path
    classes: Path

    def start(self, main: str, *args: str, timezone: str = "UTC") -> subprocess.Popen[str]:
        """One JVM running ``main`` (a class here) with ``args``; :meth:`results` collects it."""
        return subprocess.Popen(
            [
                self.java,
                f"-Duser.timezone={timezone}",
                "-XX:TieredStopAtLevel=1",  # the scenarios are short: C1 only starts faster
                "-cp",
                f"{self.jar}{os.pathsep}{self.classes}",
                main,
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def results(process: subprocess.Popen[str], timeout: float = 180) -> Results:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            raise AssertionError(f"the JVM took over {timeout} s:\n{stdout}\n{stderr}") from None
        assert process.returncode == 0, f"the JVM exited with {process.returncode}:\n{stderr}"
        return Results(stdout, stderr)

    def run(self, main: str, *args: str, timezone: str = "UTC") -> Results:
        return self.results(self.start(main, *args, timezone=timezone))


def url(host: str, port: int, database: str, user: str) -> str:
    """A pgjdbc URL; connection properties are added per scenario."""
    return f"jdbc:postgresql://{host}:{port}/{database}?user={user}"


@functools.cache
def compiled() -> Jdbc:
    """The classes compiled (once per test run); without a JDK or the driver the test fails."""
    java, javac = shutil.which("java"), shutil.which("javac")
    jar = Path(os.environ.get("PGSEAL_JDBC_JAR", DEFAULT_JAR))
    if java is None or javac is None:
        pytest.fail(f"JDBC tests need a JDK (java and javac on PATH): {INSTALL}", pytrace=False)
    if not jar.is_file():
        pytest.fail(
            f"JDBC tests need the PostgreSQL JDBC driver at {jar} (or PGSEAL_JDBC_JAR): {INSTALL}",
            pytrace=False,
        )
    classes = Path(tempfile.mkdtemp(prefix="pgseal-jdbc-"))
    atexit.register(shutil.rmtree, classes, True)
    done = subprocess.run(
        [javac, "-Xlint:all", "-Werror", "-d", str(classes), "-cp", str(jar)]
        + [str(HERE / name) for name in SOURCES],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"javac failed:\n{done.stdout}{done.stderr}"
    return Jdbc(java, jar, classes)
