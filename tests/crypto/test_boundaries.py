"""crypto imports nothing from proxy, rules or app (DESIGN.md: one-way dependencies)."""

from __future__ import annotations

import ast
from pathlib import Path

CRYPTO = Path(__file__).resolve().parents[2] / "crypto"


def test_crypto_imports_no_other_pgseal_package() -> None:
    files = sorted(CRYPTO.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"proxy", "rules", "app"}, (path.name, name)
