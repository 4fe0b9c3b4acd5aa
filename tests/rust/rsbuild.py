"""Build and run ``pgsealrs``, the Rust program that drives tokio-postgres.

No crates.io here: cargo builds offline from the source crates Debian installs
under /usr/share/cargo/registry (librust-tokio-postgres-dev and friends),
through a CARGO_HOME of the run's own whose config replaces crates.io by that
directory. The binary is built once per test run (``rust_program`` is
session-scoped and shared by tests/rust and tests/encrypted/test_rust.py through
``built_program``'s cache). A missing toolchain or crate fails the tests, naming
what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).with_name("pgsealrs")
REGISTRY = Path("/usr/share/cargo/registry")
CRATES = ("tokio-postgres-0.7", "tokio-1.", "tokio-macros-", "serde_json-1.", "futures-util-0.3")
INSTALL = (
    "apt-get install cargo librust-tokio-postgres-dev librust-tokio-dev"
    " librust-tokio-macros-dev librust-serde-json-dev librust-futures-dev"
)
CARGO_CONFIG = f"""\
[source.crates-io]
replace-with = "debian"
[source.debian]
directory = "{REGISTRY}"
[net]
offline = true
"""

_built: dict[Path, Path] = {}


def built_program(base: Path) -> Path:
    """The pgsealrs binary under ``base`` (the run's temp root), built on first use."""
    if base in _built:
        return _built[base]
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail(f"cargo is not installed: {INSTALL}", pytrace=False)
    present = [p.name for p in REGISTRY.iterdir()] if REGISTRY.is_dir() else []
    missing = [c for c in CRATES if not any(name.startswith(c) for name in present)]
    if missing:
        pytest.fail(f"Debian crates missing ({', '.join(missing)}): {INSTALL}", pytrace=False)
    work = base / "rust"
    shutil.rmtree(work, ignore_errors=True)
    package = work / "pgsealrs"
    shutil.copytree(SOURCE, package, ignore=shutil.ignore_patterns("target", "Cargo.lock"))
    home = work / "cargo-home"
    home.mkdir()
    (home / "config.toml").write_text(CARGO_CONFIG)
    # HOME stays: a rustup toolchain finds its settings there.
    env = {**os.environ, "CARGO_HOME": str(home), "CARGO_TARGET_DIR": str(work / "target")}
    done = subprocess.run(
        [cargo, "build", "--quiet"],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cargo build of tests/rust/pgsealrs failed ({INSTALL}?):\n{done.stderr}",
            pytrace=False,
        )
    binary = work / "target" / "debug" / "pgsealrs"
    _built[base] = binary
    return binary


@pytest.fixture(scope="session")
def rust_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_program(tmp_path_factory.getbasetemp())
