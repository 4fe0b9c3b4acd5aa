"""The no-parse pass-through test and statement splitting."""

from __future__ import annotations

import doctest
import time
from types import ModuleType

import pytest

import rules.analysis
import rules.plan_cache
import rules.plan_types
import rules.prefilter
from rules.prefilter import Prefilter, leading_words, split_statements

PF = Prefilter(frozenset({"customers", "invoices"}))

PGBENCH_UPDATE = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM customers",
        "select * from CUSTOMERS",
        'SELECT * FROM "customers"',
        'SELECT * FROM public."Customers"',
        "SELECT * FROM billing.invoices i",
        "INSERT INTO customers(id) VALUES (1)",
        "SET pgseal.tenant = '1'",
        "RESET   ALL",
        "discard all",
    ],
)
def test_may_concern(sql: str) -> None:
    assert PF.may_concern(sql)


@pytest.mark.parametrize(
    "sql",
    [
        PGBENCH_UPDATE,
        "SELECT * FROM customers_archive",
        "SELECT * FROM old_customers",
        "SELECT customersx FROM t",
        "SELECT t.oid FROM pg_type t WHERE t.oid = any($1::oid[])",
        "BEGIN",
        "",
    ],
)
def test_does_not_concern(sql: str) -> None:
    assert not PF.may_concern(sql)


def test_prefilter_is_cheap() -> None:
    may_concern = PF.may_concern
    n = 200_000
    start = time.perf_counter_ns()
    for _ in range(n):
        may_concern(PGBENCH_UPDATE)
    per_call = (time.perf_counter_ns() - start) / n
    print(f"prefilter: {per_call:.0f} ns per pgbench UPDATE")
    # Generous bound for slow shared CI machines; typical is a few hundred ns.
    assert per_call < 5_000


def test_split_statements_keeps_spans() -> None:
    sql = "SELECT 'a;b'; SELECT \"x;\" FROM t;-- c;\nSELECT $$;$$, $tag$ ; $tag$ /* ; */;;"
    spans = split_statements(sql)
    assert [s.text for s in spans] == [
        "SELECT 'a;b'",
        ' SELECT "x;" FROM t',
        "-- c;\nSELECT $$;$$, $tag$ ; $tag$ /* ; */",
    ]
    for span in spans:
        assert sql[span.start : span.end] == span.text


def test_split_handles_e_strings_and_parameters() -> None:
    spans = split_statements(r"SELECT E'it\'s;', $1; SELECT 2")
    assert [s.text for s in spans] == [r"SELECT E'it\'s;', $1", " SELECT 2"]


def test_leading_words() -> None:
    assert leading_words("/* x */ -- y\n  with recursive t AS (") == [
        "WITH",
        "RECURSIVE",
        "T",
        "AS",
    ]
    assert leading_words("(SELECT 1)") == []


@pytest.mark.parametrize(
    "module", [rules.prefilter, rules.plan_types, rules.analysis, rules.plan_cache]
)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
