"""SQLAlchemy's sorted insertmanyvalues form is planned as the INSERT ... VALUES it
means (rules.normalize); near misses stay INSERT ... SELECT and are refused."""

from __future__ import annotations

import pytest

from rules.plan import BindAction, BlindIndex, Literal, Refuse, Seal, TenantLiteral
from tests.rules.test_plan import plan, rewrite

SA_FORM = (
    "INSERT INTO customers (business_id, company_name, tax_id, credit_limit)"
    " SELECT p0::INTEGER, p1::VARCHAR, p2::VARCHAR, p3::NUMERIC FROM (VALUES"
    " ($1::INTEGER, $2::VARCHAR, $3::VARCHAR, $4, 1),"
    " ($5::INTEGER, $6::VARCHAR, 'T-lit', $7, 0)) AS imp_sen(p0, p1, p2, p3, sen_counter)"
    " ORDER BY sen_counter RETURNING customers.id, customers.id AS id__1"
)


def test_sorted_insertmanyvalues_is_sealed_row_by_row_in_counter_order() -> None:
    result = rewrite(SA_FORM)
    sql = result.sql_extended
    assert sql == (
        "INSERT INTO customers (business_id, company_name, tax_id, credit_limit, tax_id_bidx)"
        " VALUES (CAST($5 AS INT), $6, $8, $7, $9), (CAST($1 AS INT), $2, $3, $4, $10)"
        " RETURNING customers.id, customers.id AS id__1"
    )
    assert "SELECT" not in sql
    assert "T-lit" not in sql  # the literal became a slot
    sealed = [p.index for p in result.params if p.action is BindAction.SEAL]
    assert sealed == [2, 3, 4, 6, 7]  # protected columns' parameters, sealed in place
    assert {p.index for p in result.params if p.action is BindAction.PASS} == {1, 5}


@pytest.mark.parametrize(
    "change",
    [
        ("ORDER BY sen_counter", "ORDER BY sen_counter DESC"),
        ("ORDER BY sen_counter", "WHERE p0 > 0 ORDER BY sen_counter"),
        ("ORDER BY sen_counter", "ORDER BY p1"),
        (", 1),", ", 'one'),"),  # a counter that is no integer literal
        ("$2::VARCHAR", "$2::INTEGER"),  # the row's cast differs from the select's
        ("p1::VARCHAR", "upper(p1)"),
        ("SELECT p0", "SELECT DISTINCT p0"),
        ("AS imp_sen(p0, p1, p2, p3, sen_counter)", "AS imp_sen(p0, p1, p2, p3, p3)"),
    ],
)
def test_near_misses_stay_refused(change: tuple[str, str]) -> None:
    old, new = change
    sql = SA_FORM.replace(old, new, 1)
    assert sql != SA_FORM
    result = plan(sql)
    assert isinstance(result, Refuse), result
    assert result.sqlstate == "0A000"


DJANGO_FORM = (
    'INSERT INTO "customers" ("business_id", "company_name", "tax_id", "credit_limit")'
    " SELECT * FROM UNNEST(('{41,41,41}'::int4[])::integer[], ('{a,\"b, c\",NULL}')::text[],"
    " E'{\"T\\\\\\\\1\",T2}'::text[], ('{1.5,NULL}'::numeric[])::numeric[])"
    ' RETURNING "customers"."id"'
)


def test_unnest_of_array_literals_is_sealed_element_by_element() -> None:
    result = rewrite(DJANGO_FORM)
    sql = result.sql_extended
    assert sql.startswith(
        'INSERT INTO "customers" ("business_id", "company_name", "tax_id", "credit_limit",'
        " tax_id_bidx) VALUES (CAST('41' AS INT), $1, $2, $3, $4), (CAST('41' AS INT), $5,"
    )
    assert sql.endswith(' RETURNING "customers"."id"')
    for plaintext in ("'a'", "b, c", "T2", "1.5", "UNNEST"):
        assert plaintext not in sql
    # arrays of different lengths: UNNEST pads the shorter ones with NULL
    assert (
        "(CAST('41' AS INT), $5, $6, NULL, $7), (CAST('41' AS INT), NULL, NULL, NULL, NULL)" in sql
    )
    sealed = [s.source for s in result.slots if isinstance(s.action, Seal)]
    assert [s.text for s in sealed if isinstance(s, Literal)] == ["a", "T\\1", "1.5", "b, c", "T2"]
    blind = [s.source for s in result.slots if isinstance(s.action, BlindIndex)]
    assert [s.text for s in blind if isinstance(s, Literal)] == ["T\\1", "T2"]
    assert {s.tenant for s in result.slots} == {TenantLiteral("41")}


@pytest.mark.parametrize(
    "change",
    [
        ("('{41,41,41}'::int4[])::integer[]", "($1)::integer[]"),  # server-side binding
        ("('{a,\"b, c\",NULL}')::text[]", "('{{a},{b}}')::text[]"),  # two dimensions
        ("('{a,\"b, c\",NULL}')::text[]", "('{a\\\\,b}')::text[]"),  # an unquoted escape
        ("('{a,\"b, c\",NULL}')::text[]", "('[1:2]={a,b}')::text[]"),
        ("('{1.5,NULL}'::numeric[])::numeric[]", "('{1.5,NULL}'::numeric[])::integer[]"),
        ("('{a,\"b, c\",NULL}')::text[]", "('{a,b}')"),  # no array cast
        ('"id"', '"id" WITH ORDINALITY'),
        ("SELECT *", "SELECT DISTINCT *"),
        ("UNNEST(", "unnest_like("),
    ],
)
def test_unnest_near_misses_stay_refused(change: tuple[str, str]) -> None:
    old, new = change
    sql = DJANGO_FORM.replace(old, new, 1)
    if "ORDINALITY" in new:
        sql = DJANGO_FORM.replace(") RETURNING", ") WITH ORDINALITY RETURNING")
    assert sql != DJANGO_FORM
    result = plan(sql)
    assert isinstance(result, Refuse), result
