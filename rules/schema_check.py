"""config.yaml against the live schema: a per-column report and the SQL that fixes it.

Pure: the caller reads the database into a :class:`LiveSchema` (see
``proxy.live_schema``) and this module compares it with the :class:`Rules`,
without I/O, so every verdict and every fix statement is testable as data in,
data out. ``pgseal rules check`` prints the result; ``--apply`` runs
:attr:`SchemaReport.fix_sql` in one transaction; ``pgseal migrate`` reuses
:func:`storage_conversion_sql` and :func:`guard_sql`; ``pgseal audit`` reuses
:func:`guard_status`.

The database-side guard is a CHECK constraint per protected column, named
:func:`guard_name` (``pgseal_guard_<column>``), calling one of two small SQL
functions in pgseal's schema (:data:`GUARD_FUNCTIONS_SQL`) that accept only NULL
or a well-formed envelope: version byte 0x01 and at least 37 bytes for
``bytea``; ``pgseal1:`` + base64 of such bytes for ``text``. A CHECK (not a
trigger) because Postgres then enforces it for every writer, COPY included,
and ``ALTER TABLE ... VALIDATE CONSTRAINT`` proves that existing rows pass too.
The functions are compared with their expected source, so a guard defeated by
replacing the function body is reported as ``altered``.

A column marked ``migrating: true`` may still hold plaintext, so its guard is
*deferred*: not a problem, and no fix is proposed; ``pgseal migrate`` installs
it when the column has no plaintext left.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Final

from crypto.envelope import ARMOR_PREFIX, MIN_ENVELOPE_LEN
from rules.model import ProtectedColumn, ProtectedTable, Rules

__all__ = [
    "CANONICAL_SETTINGS_SQL",
    "GUARD_FUNCTIONS",
    "GUARD_FUNCTIONS_SQL",
    "ColumnCheck",
    "LiveSchema",
    "LiveTable",
    "SchemaReport",
    "check_schema",
    "guard_definition",
    "guard_name",
    "guard_sql",
    "guard_status",
    "quote_ident",
    "storage_conversion_sql",
    "stored_key_id_sql",
]

_MAX_IDENTIFIER: Final = 63
_PLAIN_IDENT: Final = re.compile(r"[a-z_][a-z0-9_$]*")
#: Keywords Postgres quotes in identifiers (all but the unreserved ones), from
#: ``SELECT word FROM pg_get_keywords() WHERE catcode <> 'U'`` on PostgreSQL 18.
_KEYWORD_TEXT: Final = """
    all analyse analyze and any array as asc asymmetric authorization between bigint
    binary bit boolean both case cast char character check coalesce collate collation
    column concurrently constraint create cross current_catalog current_date
    current_role current_schema current_time current_timestamp current_user dec decimal
    default deferrable desc distinct do else end except exists extract false fetch float
    for foreign freeze from full grant greatest group grouping having ilike in initially
    inner inout int integer intersect interval into is isnull join json json_array
    json_arrayagg json_exists json_object json_objectagg json_query json_scalar
    json_serialize json_table json_value lateral leading least left like limit localtime
    localtimestamp merge_action national natural nchar none normalize not notnull null
    nullif numeric offset on only or order out outer overlaps overlay placing position
    precision primary real references returning right row select session_user setof
    similar smallint some substring symmetric system_user table tablesample then time
    timestamp to trailing treat trim true union unique user using values varchar
    variadic verbose when where window with xmlattributes xmlconcat xmlelement xmlexists
    xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable
"""
_KEYWORDS: Final = frozenset(_KEYWORD_TEXT.split())

#: Settings under which ``value::text`` is pgseal's canonical text (see rules.pgtypes).
CANONICAL_SETTINGS_SQL: Final = (
    "SET LOCAL DateStyle = 'ISO, MDY';\n"
    "SET LOCAL TimeZone = 'UTC';\n"
    "SET LOCAL IntervalStyle = 'postgres';\n"
    "SET LOCAL extra_float_digits = 1;\n"
    "SET LOCAL bytea_output = 'hex';"
)

_BYTEA_BODY: Final = "SELECT octet_length($1) >= 37 AND substring($1 FROM 1 FOR 1) = '\\x01'::bytea"
# 37 bytes -> 50 base64 digits + "==": the first digit of byte 0x01 is 'A'.
_TEXT_BODY: Final = "SELECT $1 ~ '^pgseal1:A[A-Za-z0-9+/]{49,}={0,2}$'"


def stored_key_id_sql(column: ProtectedColumn) -> str:
    """SQL for the 8 key-id bytes of ``column``'s stored value, NULL unless it is a
    well-formed envelope (the guard's own test, inlined: the guard functions
    need not be installed).

    Lets Postgres count values per key id without sending any value out (``pgseal
    keys list``). For ``text`` storage the first 12 base64 digits after the
    prefix are exactly the version byte and the key id.

    >>> sql = stored_key_id_sql(ProtectedColumn("public", "t", "tel", "text"))
    >>> sql.startswith("CASE WHEN octet_length(tel) >= 37"), sql.endswith("FROM 2 FOR 8) END")
    (True, True)
    """
    name = quote_ident(column.name)
    if column.storage == "text":
        # _TEXT_BODY's test, rewritten: Postgres runs a bounded repetition
        # ({49,}) several times slower than `+` plus a length check, and a count
        # runs it on every row (an armoured 37-byte envelope has 50 digits).
        digits = (MIN_ENVELOPE_LEN * 4 + 2) // 3  # base64 digits before '=': 'A' + 49
        condition = (
            f"{name} ~ '^{ARMOR_PREFIX}A[A-Za-z0-9+/]+={{0,2}}$'"
            f" AND length(rtrim({name}, '=')) >= {len(ARMOR_PREFIX) + digits}"
        )
        header = f"decode(substring({name} FROM {len(ARMOR_PREFIX) + 1} FOR 12), 'base64')"
    else:
        condition = _BYTEA_BODY.removeprefix("SELECT ").replace("$1", name)
        header = name
    return f"CASE WHEN {condition} THEN substring({header} FROM 2 FOR 8) END"


#: Guard function name -> the source it must have (``pg_proc.prosrc``).
GUARD_FUNCTIONS: Final = {
    "is_envelope": _BYTEA_BODY,
    "is_armored_envelope": _TEXT_BODY,
}

GUARD_FUNCTIONS_SQL: Final = (
    "CREATE SCHEMA IF NOT EXISTS pgseal;\n"
    "CREATE OR REPLACE FUNCTION pgseal.is_envelope(bytea) RETURNS boolean\n"
    f"    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $pgseal${_BYTEA_BODY}$pgseal$;\n"
    "CREATE OR REPLACE FUNCTION pgseal.is_armored_envelope(text) RETURNS boolean\n"
    f"    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $pgseal${_TEXT_BODY}$pgseal$;"
)


def quote_ident(name: str) -> str:
    """An identifier as Postgres prints it: bare when it can be, else double-quoted.

    >>> quote_ident("phone"), quote_ident("Phone"), quote_ident("tax id"), quote_ident("user")
    ('phone', '"Phone"', '"tax id"', '"user"')
    """
    if _PLAIN_IDENT.fullmatch(name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def _table_sql(qualified: str) -> str:
    schema, table = qualified.split(".", 1)
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def guard_name(column: str) -> str:
    """The guard constraint's name: ``pgseal_guard_<column>``, hashed if too long.

    >>> guard_name("phone")
    'pgseal_guard_phone'
    >>> len(guard_name("x" * 63))
    63
    """
    name = f"pgseal_guard_{column}"
    if len(name.encode()) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(column.encode()).hexdigest()[:8]
    head = column.encode()[: _MAX_IDENTIFIER - 22].decode(errors="ignore")
    return f"pgseal_guard_{head}_{digest}"


def _guard_function(column: ProtectedColumn) -> str:
    return "is_armored_envelope" if column.storage == "text" else "is_envelope"


def guard_definition(column: ProtectedColumn) -> str:
    """The CHECK as ``pg_get_constraintdef`` prints it, for comparison."""
    return f"CHECK (pgseal.{_guard_function(column)}({quote_ident(column.name)}))"


def guard_sql(column: ProtectedColumn) -> str:
    table = _table_sql(f"{column.schema}.{column.table}")
    return (
        f"ALTER TABLE {table} ADD CONSTRAINT {quote_ident(guard_name(column.name))} "
        f"{guard_definition(column)};"
    )


def storage_conversion_sql(column: ProtectedColumn, physical: str) -> str:
    """Change ``column`` from its ``physical`` type to its storage type, keeping values.

    The plaintext becomes its canonical text (bytes of it for ``bytea``), which
    is what pgseal seals and what a ``migrating`` read returns; run it after
    :data:`CANONICAL_SETTINGS_SQL` in the same transaction. It rewrites the table
    under an ACCESS EXCLUSIVE lock.
    """
    table = _table_sql(f"{column.schema}.{column.table}")
    name = quote_ident(column.name)
    if column.storage == "text":
        using = f"{name}::text"
    elif physical in ("text", "character varying") or physical.startswith("character"):
        using = f"convert_to({name}, 'UTF8')"
    else:
        using = f"convert_to({name}::text, 'UTF8')"
    return f"ALTER TABLE {table} ALTER COLUMN {name} TYPE {column.storage} USING {using};"


@dataclass(frozen=True, slots=True)
class LiveTable:
    """One table as the catalog has it."""

    qualified: str
    #: column name -> ``format_type`` (e.g. ``bytea``, ``character varying(20)``).
    columns: dict[str, str]
    primary_key: tuple[str, ...] = ()
    #: CHECK constraint name -> (``pg_get_constraintdef``, validated).
    checks: dict[str, tuple[str, bool]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LiveSchema:
    tables: dict[str, LiveTable]
    #: pgseal guard function name -> its source, for those that exist.
    functions: dict[str, str] = field(default_factory=dict)


def guard_status(column: ProtectedColumn, live: LiveSchema) -> str:
    """``installed``, ``missing``, ``not validated`` or ``altered`` (wrong definition
    or a guard function whose body was changed)."""
    table = live.tables.get(f"{column.schema}.{column.table}")
    found = table.checks.get(guard_name(column.name)) if table else None
    if found is None:
        return "missing"
    definition, validated = found
    expected = guard_definition(column)
    if " ".join(definition.replace(" NOT VALID", "").split()) != expected:
        return "altered"
    function = _guard_function(column)
    if live.functions.get(function) != GUARD_FUNCTIONS[function]:
        return "altered"
    return "installed" if validated else "not validated"


@dataclass(frozen=True, slots=True)
class ColumnCheck:
    """One row of the ``rules check`` table."""

    column: str  # schema.table.column
    exists: bool
    physical_type: str | None
    type_ok: bool
    tenant_ok: bool
    blind_index: str  # "ok", "n/a", "missing", "wrong type: ..."
    guard: str  # guard_status(), or "deferred (migrating)"
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class SchemaReport:
    columns: tuple[ColumnCheck, ...]
    table_problems: tuple[str, ...]
    #: Statements that fix every problem, in order, for one transaction.
    fix_sql: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.table_problems and all(c.ok for c in self.columns)


def _storage_ok(column: ProtectedColumn, physical: str) -> bool:
    return physical == column.storage


def check_schema(rules: Rules, live: LiveSchema) -> SchemaReport:
    """Compare every configured column with ``live``; collect the fixes."""
    columns: list[ColumnCheck] = []
    table_problems: list[str] = []
    fixes: list[str] = []
    needs_functions = False
    for qualified, table in sorted(rules.tables.items()):
        found = live.tables.get(qualified)
        if found is None:
            table_problems.append(
                f"table {qualified} does not exist (create it, or remove it from config.yaml)"
            )
            for name in table.columns:
                columns.append(
                    ColumnCheck(
                        f"{qualified}.{name}", False, None, False, False, "-", "-", ("no table",)
                    )
                )
            continue
        tenant_ok = table.tenant_column in found.columns
        if not tenant_ok:
            table_problems.append(
                f"{qualified}: tenant column {table.tenant_column} does not exist"
            )
            fixes.append(
                f"ALTER TABLE {_table_sql(qualified)} ADD COLUMN "
                f"{quote_ident(table.tenant_column)} bigint;"
                "  -- then fill it with each row's business id"
            )
        for column in table.columns.values():
            check, column_fixes, uses_guard = _check_column(table, column, found, live, tenant_ok)
            columns.append(check)
            fixes.extend(column_fixes)
            needs_functions = needs_functions or uses_guard
    if needs_functions:
        fixes.insert(0, GUARD_FUNCTIONS_SQL)
    if any(f.startswith("ALTER TABLE") and " TYPE " in f and "USING convert" in f for f in fixes):
        fixes.insert(0, CANONICAL_SETTINGS_SQL)
    return SchemaReport(tuple(columns), tuple(table_problems), tuple(fixes))


def _check_column(
    table: ProtectedTable,
    column: ProtectedColumn,
    found: LiveTable,
    live: LiveSchema,
    tenant_ok: bool,
) -> tuple[ColumnCheck, list[str], bool]:
    qualified_table = _table_sql(table.qualified)
    problems: list[str] = []
    fixes: list[str] = []
    physical = found.columns.get(column.name)
    exists = physical is not None
    type_ok = physical is not None and _storage_ok(column, physical)
    if physical is None:
        problems.append(f"{column.qualified} does not exist")
        fixes.append(
            f"ALTER TABLE {qualified_table} ADD COLUMN {quote_ident(column.name)} {column.storage};"
        )
    elif not type_ok:
        problems.append(
            f"{column.qualified} is {physical}, storage {column.storage} needs {column.storage}"
            + ("" if column.migrating else " (mark it migrating: true: it holds plaintext)")
        )
        fixes.append(storage_conversion_sql(column, physical))
    if not tenant_ok:
        problems.append(f"tenant column {table.tenant_column} missing")
    blind = "n/a"
    if column.searchable:
        bidx_type = found.columns.get(column.searchable)
        target = f"{qualified_table} ALTER COLUMN {quote_ident(column.searchable)}"
        if bidx_type is None:
            blind = "missing"
            problems.append(f"blind-index column {column.searchable} missing")
            fixes.append(
                f"ALTER TABLE {qualified_table} ADD COLUMN {quote_ident(column.searchable)} bytea;"
            )
        elif bidx_type != "bytea":
            blind = f"wrong type: {bidx_type}"
            problems.append(f"blind-index column {column.searchable} is {bidx_type}, not bytea")
            fixes.append(f"ALTER TABLE {target} TYPE bytea USING NULL;")
        else:
            blind = "ok"
    uses_guard = False
    if column.migrating:
        # Plaintext may still be there: no guard is required, but one that exists
        # is shown as it is (an altered one is worth a look).
        status = guard_status(column, live)
        guard = "deferred (migrating)" if status == "missing" else status
    else:
        guard = guard_status(column, live)
        name = quote_ident(guard_name(column.name))
        if guard != "installed":
            problems.append(f"guard {guard_name(column.name)} {guard}")
            uses_guard = True
            if guard == "not validated" and live.functions.get(
                _guard_function(column)
            ) == GUARD_FUNCTIONS.get(_guard_function(column)):
                uses_guard = False
                fixes.append(f"ALTER TABLE {qualified_table} VALIDATE CONSTRAINT {name};")
            else:
                if guard != "missing":
                    fixes.append(f"ALTER TABLE {qualified_table} DROP CONSTRAINT {name};")
                fixes.append(guard_sql(column))
    check = ColumnCheck(
        column.qualified, exists, physical, type_ok, tenant_ok, blind, guard, tuple(problems)
    )
    return check, fixes, uses_guard
