"""rules imports nothing from proxy or app, and app nothing of pgseal's
(DESIGN.md: one-way dependencies; crypto's own check is tests/crypto/test_boundaries.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("rules", {"proxy", "app"}), ("app", {"proxy", "rules", "crypto"})],
)
def test_package_imports_only_downwards(package: str, forbidden: set[str]) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert len(files) >= 5, f"{package}/ has moved"
    found = [
        (path.relative_to(ROOT).as_posix(), name)
        for path in files
        for name in _imported(path)
        if name.split(".")[0] in forbidden
    ]
    assert found == []
