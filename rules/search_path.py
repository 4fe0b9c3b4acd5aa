"""Which table a bare name means in a session: ``search_path`` against the catalog.

pgseal reads a bare table name of a configured table as ``public.<name>``. A
session whose ``search_path`` finds a relation of that name in another schema
first (schema-per-tenant apps put the tenant's schema before ``public``) means
that other table: pgseal would seal values written to it and, its table OID
not being configured, pass its envelopes to the app unopened. So a bare name is
refused in such a session (``proxy.encryption``), and a schema-qualified name
still works.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["search_path_schemas", "shadowed_names", "uses_bare_name"]


def search_path_schemas(setting: str, user: str) -> list[str]:
    """The schemas a ``search_path`` setting lists, in order ("$user" expanded)."""
    schemas: list[str] = []
    for item in _split(setting):
        item = item.strip()
        if not item:
            continue
        if item.startswith('"') and item.endswith('"') and len(item) >= 2:
            name = item[1:-1].replace('""', '"')
        else:
            name = item.lower()
        schemas.append(user if name == "$user" else name)
    return schemas


def _split(setting: str) -> Iterable[str]:
    """Split on commas outside double quotes."""
    start, quoted = 0, False
    for i, char in enumerate(setting):
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            yield setting[start:i]
            start = i + 1
    yield setting[start:]


def shadowed_names(
    names: Iterable[str], homes: Mapping[str, frozenset[str]], path: list[str]
) -> dict[str, str]:
    """Configured ``public`` table names that ``path`` resolves elsewhere: name -> schema."""
    out: dict[str, str] = {}
    for name in names:
        schemas = homes.get(name, frozenset())
        first = next((schema for schema in path if schema in schemas), None)
        if first is not None and first != "public":
            out[name] = first
    return out


def uses_bare_name(sql: str, name: str) -> bool:
    """Whether ``sql`` mentions ``name`` other than after a ``schema.`` qualifier.

    A word match, quoted or not, anywhere in the text (comments and string
    literals included: a false positive is a refusal, never a leak).
    """
    pattern = re.compile(
        r'(?<![\w$"])(?:' + re.escape(name) + r'(?![\w$])|"' + re.escape(name) + r'")',
        re.IGNORECASE if name == name.lower() else 0,
    )
    for match in pattern.finditer(sql):
        before = sql[: match.start()].rstrip()
        if not before.endswith("."):
            return True
    return False
