"""rules.schema_check without a database: live schema in, verdicts and fix SQL out."""

from __future__ import annotations

import doctest

import rules.schema_check
from rules.model import ProtectedColumn, ProtectedTable, Rules
from rules.schema_check import (
    CANONICAL_SETTINGS_SQL,
    GUARD_FUNCTIONS,
    GUARD_FUNCTIONS_SQL,
    LiveSchema,
    LiveTable,
    check_schema,
    guard_definition,
    guard_name,
)

PHONE = ProtectedColumn("public", "customers", "phone", "text")
TAX = ProtectedColumn("public", "customers", "tax_id", "text", searchable="tax_id_bidx")
NOTE = ProtectedColumn("public", "customers", "note", "text", storage="text")
RULES = Rules(
    {
        "public.customers": ProtectedTable(
            "public",
            "customers",
            "business_id",
            {"phone": PHONE, "tax_id": TAX, "note": NOTE},
        )
    }
)
COLUMNS = {
    "id": "bigint",
    "business_id": "bigint",
    "phone": "bytea",
    "tax_id": "bytea",
    "tax_id_bidx": "bytea",
    "note": "text",
}


def _guards(*columns: ProtectedColumn, validated: bool = True) -> dict[str, tuple[str, bool]]:
    return {
        guard_name(c.name): (guard_definition(c) + ("" if validated else " NOT VALID"), validated)
        for c in columns
    }


def _live(
    columns: dict[str, str] | None = None,
    checks: dict[str, tuple[str, bool]] | None = None,
    functions: dict[str, str] | None = None,
) -> LiveSchema:
    table = LiveTable(
        "public.customers",
        COLUMNS if columns is None else columns,
        ("id",),
        _guards(PHONE, TAX, NOTE) if checks is None else checks,
    )
    return LiveSchema(
        {"public.customers": table}, dict(GUARD_FUNCTIONS) if functions is None else functions
    )


def test_consistent_schema_needs_nothing() -> None:
    report = check_schema(RULES, _live())
    assert report.ok
    assert report.fix_sql == ()
    assert [c.guard for c in report.columns] == ["installed"] * 3


def test_each_problem_has_its_fix() -> None:
    columns = dict(COLUMNS, phone="character varying(20)")
    del columns["tax_id_bidx"]
    del columns["note"]
    report = check_schema(RULES, _live(columns=columns, checks={}, functions={}))
    assert not report.ok
    by_name = {c.column.rsplit(".", 1)[1]: c for c in report.columns}
    assert by_name["phone"].type_ok is False
    assert by_name["tax_id"].blind_index == "missing"
    assert by_name["note"].exists is False
    assert report.fix_sql[0] == CANONICAL_SETTINGS_SQL  # before the type change
    assert report.fix_sql[1] == GUARD_FUNCTIONS_SQL
    assert report.fix_sql[2:] == (
        "ALTER TABLE public.customers ALTER COLUMN phone TYPE bytea "
        "USING convert_to(phone, 'UTF8');",
        "ALTER TABLE public.customers ADD CONSTRAINT pgseal_guard_phone "
        "CHECK (pgseal.is_envelope(phone));",
        "ALTER TABLE public.customers ADD COLUMN tax_id_bidx bytea;",
        "ALTER TABLE public.customers ADD CONSTRAINT pgseal_guard_tax_id "
        "CHECK (pgseal.is_envelope(tax_id));",
        "ALTER TABLE public.customers ADD COLUMN note text;",
        "ALTER TABLE public.customers ADD CONSTRAINT pgseal_guard_note "
        "CHECK (pgseal.is_armored_envelope(note));",
    )


def test_non_text_types_convert_through_their_canonical_text() -> None:
    report = check_schema(RULES, _live(columns=dict(COLUMNS, phone="integer")))
    assert (
        "ALTER TABLE public.customers ALTER COLUMN phone TYPE bytea "
        "USING convert_to(phone::text, 'UTF8');" in report.fix_sql
    )


def test_guard_states() -> None:
    checks = {
        **_guards(PHONE),
        **_guards(TAX, validated=False),
        guard_name("note"): ("CHECK ((note IS NOT NULL))", True),
    }
    report = check_schema(RULES, _live(checks=checks))
    assert [c.guard for c in report.columns] == ["installed", "not validated", "altered"]
    assert "ALTER TABLE public.customers VALIDATE CONSTRAINT pgseal_guard_tax_id;" in (
        report.fix_sql
    )
    assert report.fix_sql[-2:] == (
        "ALTER TABLE public.customers DROP CONSTRAINT pgseal_guard_note;",
        "ALTER TABLE public.customers ADD CONSTRAINT pgseal_guard_note "
        "CHECK (pgseal.is_armored_envelope(note));",
    )


def test_a_replaced_guard_function_counts_as_altered() -> None:
    functions = dict(GUARD_FUNCTIONS, is_envelope="SELECT true")
    report = check_schema(RULES, _live(functions=functions))
    assert [c.guard for c in report.columns] == ["altered", "altered", "installed"]
    assert report.fix_sql[0] == GUARD_FUNCTIONS_SQL  # CREATE OR REPLACE restores it


def test_migrating_columns_defer_their_guard() -> None:
    migrating = ProtectedColumn("public", "customers", "phone", "text", migrating=True)
    table = RULES.tables["public.customers"]
    rules = Rules({"public.customers": ProtectedTable(
        "public", "customers", "business_id", {**table.columns, "phone": migrating}
    )})  # fmt: skip
    report = check_schema(rules, _live(checks=_guards(TAX, NOTE)))
    assert report.ok
    assert report.columns[0].guard == "deferred (migrating)"


def test_missing_table_and_tenant_column() -> None:
    report = check_schema(RULES, LiveSchema({}))
    assert report.table_problems == (
        "table public.customers does not exist (create it, or remove it from config.yaml)",
    )
    columns = dict(COLUMNS)
    del columns["business_id"]
    report = check_schema(RULES, _live(columns=columns))
    assert not report.ok
    assert all(not c.tenant_ok for c in report.columns)
    assert report.fix_sql[0].startswith("ALTER TABLE public.customers ADD COLUMN business_id")


def test_guard_names_fit_postgres_identifiers() -> None:
    a, b = guard_name("a" * 60 + "x"), guard_name("a" * 60 + "y")
    assert a != b
    assert len(a.encode()) <= 63
    assert len(b.encode()) <= 63


def test_doctests() -> None:
    assert doctest.testmod(rules.schema_check).failed == 0
