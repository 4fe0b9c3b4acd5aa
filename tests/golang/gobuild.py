"""Build and run ``pgsealgo``, the Go program that drives pgx v4 and lib/pq.

Go 1.19 from Debian with the drivers' sources under /usr/share/gocode; no module
proxy is reachable, so the build is in GOPATH mode. The binary is built once per
test run (``go_program`` is session-scoped and shared by tests/golang and
tests/encrypted/test_golang.py through ``built_program``'s cache). A missing
toolchain or driver source fails the tests, naming what to install.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).with_name("pgsealgo")
GOCODE = Path("/usr/share/gocode")
DRIVERS = ("github.com/jackc/pgx/v4", "github.com/jackc/pgconn", "github.com/lib/pq")
INSTALL = "apt-get install golang-go golang-github-jackc-pgx-v4-dev golang-github-lib-pq-dev"

_built: dict[Path, Path] = {}


def built_program(base: Path) -> Path:
    """The pgsealgo binary under ``base`` (the run's temp root), built on first use."""
    if base in _built:
        return _built[base]
    go = shutil.which("go")
    if go is None:
        pytest.fail(f"the Go toolchain is not installed: {INSTALL}", pytrace=False)
    missing = [d for d in DRIVERS if not (GOCODE / "src" / d).is_dir()]
    if missing:
        pytest.fail(f"Go driver sources missing ({', '.join(missing)}): {INSTALL}", pytrace=False)
    work = base / "golang"
    package = work / "src" / "pgsealgo"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(SOURCE, package)
    binary = work / "pgsealgo"
    env = {
        "PATH": str(Path(go).parent) + ":/usr/bin:/bin",
        "HOME": str(work),
        "GO111MODULE": "off",
        "GOPATH": f"{work}:{GOCODE}",
        "GOCACHE": str(work / "cache"),
        "CGO_ENABLED": "0",
    }
    done = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"go build of tests/golang/pgsealgo failed:\n{done.stderr}", pytrace=False)
    _built[base] = binary
    return binary


@pytest.fixture(scope="session")
def go_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_program(tmp_path_factory.getbasetemp())
