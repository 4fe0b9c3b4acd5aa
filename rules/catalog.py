"""The catalog map: configured tables and columns <-> their OIDs and attribute numbers.

The proxy recognises a protected value in a result by the (table OID, attribute
number) pair that ``RowDescription`` gives for each field, never by looking at
the value. This module reads those numbers, and the physical column types, from
``pg_catalog`` with pgseal's service connection, and checks that every configured
column is stored as pgseal expects: ``bytea`` (or ``text`` for ``storage: text``),
with its blind-index column ``bytea`` and its table's tenant column present.

A problem is reported with the statement that fixes it, e.g.::

    public.customers.phone is integer, but an encrypted column with storage bytea
    must be bytea; fix: mark it migrating: true and run `pgseal migrate` (it converts
    the type and encrypts the values in place; `pgseal rules check` shows the plan);
    only if it holds no values yet: ALTER TABLE public.customers ALTER COLUMN phone
    TYPE bytea USING convert_to(phone::text, 'UTF8');

A type change never proposes ``USING NULL``: that would wipe the column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from rules.model import ProtectedColumn, Rules
from rules.schema_check import storage_conversion_sql

__all__ = ["CATALOG_QUERY", "CatalogError", "CatalogMap", "TableInfo", "build_catalog"]

#: One row per column of the configured tables: (schema, table, table oid, column,
#: attnum, type name, type oid). Dropped columns are skipped.
CATALOG_QUERY = """
SELECT n.nspname, c.relname, c.oid::int8, a.attname, a.attnum::int4,
       format_type(a.atttypid, a.atttypmod), a.atttypid::int8
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p')
  AND (n.nspname || '.' || c.relname) = ANY($1::text[])
ORDER BY c.oid, a.attnum
"""


class CatalogError(Exception):
    """The live schema does not match config.yaml; ``problems`` lists each fix."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "the database schema does not match config.yaml:\n  " + "\n  ".join(problems)
        )


@dataclass(frozen=True, slots=True)
class TableInfo:
    """One configured table as the database has it."""

    qualified: str
    oid: int
    #: Every column in table order: (name, attnum, type oid).
    columns: tuple[tuple[str, int, int], ...]
    tenant_column: str
    tenant_type_oid: int

    def attnum(self, name: str) -> int | None:
        for col, num, _ in self.columns:
            if col == name:
                return num
        return None


@dataclass(frozen=True, slots=True)
class CatalogMap:
    """Lookups the proxy does per RowDescription field and per COPY."""

    #: (table oid, attnum) -> the protected column stored there.
    by_attr: dict[tuple[int, int], ProtectedColumn] = field(default_factory=dict)
    #: schema.table -> its numbers.
    tables: dict[str, TableInfo] = field(default_factory=dict)
    #: table oid -> schema.table, for every configured table.
    table_by_oid: dict[int, str] = field(default_factory=dict)

    def protected(self, table_oid: int, attnum: int) -> ProtectedColumn | None:
        return self.by_attr.get((table_oid, attnum))


class _Connection(Protocol):
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


async def load_catalog(connection: _Connection, rules: Rules) -> CatalogMap:
    """Read the catalog for ``rules`` and check it; raises ``CatalogError``."""
    names = sorted(rules.tables)
    rows = await connection.fetch(CATALOG_QUERY, names) if names else []
    return build_catalog(rules, [tuple(r) for r in rows])


def build_catalog(rules: Rules, rows: list[tuple[Any, ...]]) -> CatalogMap:
    """The map from catalog rows (``CATALOG_QUERY``'s shape); raises ``CatalogError``."""
    found: dict[str, tuple[int, list[tuple[str, int, int, str]]]] = {}
    for schema, table, oid, column, attnum, type_name, type_oid in rows:
        entry = found.setdefault(f"{schema}.{table}", (int(oid), []))
        entry[1].append((str(column), int(attnum), int(type_oid), str(type_name)))
    problems: list[str] = []
    by_attr: dict[tuple[int, int], ProtectedColumn] = {}
    tables: dict[str, TableInfo] = {}
    for qualified, table in sorted(rules.tables.items()):
        if qualified not in found:
            problems.append(f"table {qualified} does not exist (or is not a plain table)")
            continue
        oid, columns = found[qualified]
        by_name = {name: (num, type_oid, type_name) for name, num, type_oid, type_name in columns}
        tenant = by_name.get(table.tenant_column)
        if tenant is None:
            problems.append(
                f"{qualified}: tenant column {table.tenant_column} does not exist; "
                f"fix: ALTER TABLE {qualified} ADD COLUMN {table.tenant_column} bigint"
            )
        for name, col in table.columns.items():
            where = f"{qualified}.{name}"
            physical = by_name.get(name)
            want = col.storage
            if physical is None:
                problems.append(
                    f"{where} does not exist; fix: ALTER TABLE {qualified} ADD COLUMN {name} {want}"
                )
                continue
            if physical[2] != want:
                problems.append(_type_mismatch(where, col, physical[2]))
                continue
            by_attr[(oid, physical[0])] = col
            if col.searchable:
                bidx = by_name.get(col.searchable)
                if bidx is None:
                    problems.append(
                        f"{where}: blind-index column {col.searchable} does not exist; fix: "
                        f"ALTER TABLE {qualified} ADD COLUMN {col.searchable} bytea"
                    )
                elif bidx[2] != "bytea":
                    problems.append(
                        f"{where}: blind-index column {col.searchable} is {bidx[2]}, must be "
                        f"bytea; fix: ALTER TABLE {qualified} ALTER COLUMN {col.searchable} "
                        "TYPE bytea USING NULL"
                    )
        tables[qualified] = TableInfo(
            qualified,
            oid,
            tuple((name, num, type_oid) for name, num, type_oid, _ in columns),
            table.tenant_column,
            tenant[1] if tenant else 0,
        )
    if problems:
        raise CatalogError(problems)
    return CatalogMap(
        by_attr=by_attr,
        tables=tables,
        table_by_oid={info.oid: name for name, info in tables.items()},
    )


def _type_mismatch(where: str, column: ProtectedColumn, physical: str) -> str:
    """The problem and its fix for a column not stored as its ``storage`` type.

    The column may hold plaintext the DBA wants to keep, so the fix is the tool
    that converts and encrypts it in place; the bare statement is offered for an
    empty column only, and even then it keeps values (``USING NULL`` would wipe
    any that were there after all).
    """
    want = column.storage
    return (
        f"{where} is {physical}, but an encrypted column with storage {want} must be {want}; "
        "fix: mark it migrating: true and run `pgseal migrate --config PATH` (it converts the "
        "type and encrypts the values in place; `pgseal rules check --config PATH` shows the "
        "plan); only if it holds no values yet: " + storage_conversion_sql(column, physical)
    )
