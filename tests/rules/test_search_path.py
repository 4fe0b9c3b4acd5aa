"""rules.search_path: which schema a bare name means, and whether SQL uses one bare."""

from __future__ import annotations

import pytest

from rules.search_path import search_path_schemas, shadowed_names, uses_bare_name


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ('"$user", public', ["alice", "public"]),
        ("tenant_7, public", ["tenant_7", "public"]),
        ('"Tenant One",PUBLIC', ["Tenant One", "public"]),
        ('"a,b", public', ["a,b", "public"]),
        ("", []),
        ("  public  ", ["public"]),
    ],
)
def test_search_path_schemas(setting: str, expected: list[str]) -> None:
    assert search_path_schemas(setting, "alice") == expected


def test_shadowed_names() -> None:
    homes = {"customers": frozenset({"public", "tenant_7"}), "invoices": frozenset({"public"})}
    names = ["customers", "invoices", "leads"]
    assert shadowed_names(names, homes, ["tenant_7", "public"]) == {"customers": "tenant_7"}
    assert shadowed_names(names, homes, ["public", "tenant_7"]) == {}
    assert shadowed_names(names, homes, ["alice", "public"]) == {}  # no such table in alice
    assert shadowed_names(names, homes, ["tenant_7"]) == {"customers": "tenant_7"}
    assert shadowed_names(names, homes, ["other"]) == {}  # Postgres finds none: its error


@pytest.mark.parametrize(
    ("sql", "bare"),
    [
        ("SELECT phone FROM customers WHERE id = 1", True),
        ('SELECT phone FROM "customers"', True),
        ("INSERT INTO Customers (phone) VALUES ($1)", True),
        ("SELECT c.phone FROM public.customers c", False),
        ('SELECT phone FROM public."customers"', False),
        ("SELECT phone FROM public . customers", False),
        ("SELECT phone FROM tenant_7.customers", False),
        ("SELECT 1 FROM customers_archive", False),
        ("SELECT 1 FROM my_customers", False),
        ("SELECT phone FROM public.customers JOIN customers USING (id)", True),
    ],
)
def test_uses_bare_name(sql: str, bare: bool) -> None:
    assert uses_bare_name(sql, "customers") is bare
