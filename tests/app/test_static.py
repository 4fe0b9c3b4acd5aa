"""Checks on the app's source: what it imports, what it names, its doctests."""

from __future__ import annotations

import ast
import doctest
import importlib
import re
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
SOURCES = sorted(APP.glob("*.py"))
FORBIDDEN_IMPORTS = {"proxy", "rules", "crypto", "cryptography", "hmac", "Crypto", "nacl"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_app_imports_no_pgseal_and_no_crypto(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN_IMPORTS


def test_app_never_names_blind_index_columns() -> None:
    for path in SOURCES:
        assert not re.search(r"\w+_bidx", path.read_text()), path.name


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_doctests(path: Path) -> None:
    if path.name == "__main__.py":
        return
    module = importlib.import_module(f"app.{path.stem}" if path.stem != "__init__" else "app")
    result = doctest.testmod(module)
    assert result.failed == 0
