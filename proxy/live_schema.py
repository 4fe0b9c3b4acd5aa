"""Read the live schema the DBA tools compare with config.yaml.

One round trip per question (columns, primary keys, pgseal guard constraints,
guard functions), all from ``pg_catalog``, so it works on a read-only
connection. The comparison itself is pure, in ``rules.schema_check``.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from rules.schema_check import GUARD_FUNCTIONS, LiveSchema, LiveTable

__all__ = ["PII_NAME", "load_live_schema", "pii_looking_columns"]

_COLUMNS = """
SELECT n.nspname || '.' || c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
  AND (n.nspname || '.' || c.relname) = ANY($1::text[])
ORDER BY 1, a.attnum
"""

_PRIMARY_KEYS = """
SELECT n.nspname || '.' || c.relname, a.attname
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE i.indisprimary AND (n.nspname || '.' || c.relname) = ANY($1::text[])
ORDER BY 1, k.ord
"""

_CHECKS = """
SELECT n.nspname || '.' || c.relname, con.conname, pg_get_constraintdef(con.oid),
       con.convalidated
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype = 'c' AND (n.nspname || '.' || c.relname) = ANY($1::text[])
"""

_FUNCTIONS = """
SELECT p.proname, p.prosrc FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'pgseal' AND p.proname = ANY($1::text[])
"""

#: Column names that suggest personal data (the audit lists unconfigured ones).
PII_NAME = (
    r"(e_?mail|phone|mobile|fax|iban|bic|swift|tax|vat|ssn|social_sec|passport|national_id"
    r"|birth|dob|address|street|postcode|postal|zip|card_?n|cc_?num|account_?n|salary"
    r"|first_?name|last_?name|surname|full_?name|contact_?name|licen[cs]e|ip_addr)"
)

_PII_COLUMNS = """
SELECT n.nspname || '.' || c.relname || '.' || a.attname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgseal')
  AND n.nspname NOT LIKE 'pg_toast%'
  AND a.attname ~* $1
ORDER BY 1
"""


async def load_live_schema(connection: asyncpg.Connection[Any], tables: list[str]) -> LiveSchema:
    """The catalog facts about ``tables`` (``schema.table`` names)."""
    columns: dict[str, dict[str, str]] = {}
    for table, column, type_name in await connection.fetch(_COLUMNS, tables):
        columns.setdefault(table, {})[column] = type_name
    keys: dict[str, list[str]] = {}
    for table, column in await connection.fetch(_PRIMARY_KEYS, tables):
        keys.setdefault(table, []).append(column)
    checks: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, name, definition, validated in await connection.fetch(_CHECKS, tables):
        checks.setdefault(table, {})[name] = (definition, bool(validated))
    functions = {
        name: source for name, source in await connection.fetch(_FUNCTIONS, sorted(GUARD_FUNCTIONS))
    }
    return LiveSchema(
        tables={
            name: LiveTable(name, cols, tuple(keys.get(name, ())), checks.get(name, {}))
            for name, cols in columns.items()
        },
        functions=functions,
    )


async def pii_looking_columns(connection: asyncpg.Connection[Any], known: set[str]) -> list[str]:
    """``schema.table.column`` names that look like PII and are not in ``known``."""
    rows = await connection.fetch(_PII_COLUMNS, PII_NAME)
    return [r[0] for r in rows if r[0] not in known]
