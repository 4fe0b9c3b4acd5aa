"""``col = ANY(ARRAY[v, ...])`` on a searchable column: psycopg2 renders a Python list
parameter as an ARRAY literal, so ``WHERE email = ANY(%s)`` arrives in this shape.
It means ``col IN (v, ...)`` and is searched on the blind index the same way."""

from __future__ import annotations

import pytest

from rules.plan import BlindIndex, ClientParam, Literal, Refuse, TenantFromParam, TenantLiteral
from tests.rules.test_plan import PHONE, TAX, plan, rewrite


def test_array_of_literals_searches_each_value() -> None:
    result = rewrite(
        "SELECT id FROM customers WHERE business_id = 3 AND tax_id = ANY(ARRAY['a', 'b'])"
    )
    assert result.sql_extended == (
        "SELECT id FROM customers WHERE business_id = 3 AND tax_id_bidx = ANY(ARRAY[$1, $2])"
    )
    assert [s.action for s in result.slots] == [BlindIndex(TAX), BlindIndex(TAX)]
    assert all(isinstance(s.source, Literal) for s in result.slots)
    assert all(s.tenant == TenantLiteral("3") for s in result.slots)


def test_array_of_parameters_literals_and_null() -> None:
    result = rewrite(
        "SELECT id FROM customers WHERE tax_id = ANY(ARRAY[$1, 'b'::text, NULL])"
        " AND business_id = $2"
    )
    assert result.sql_extended == (
        "SELECT id FROM customers WHERE tax_id_bidx = ANY(ARRAY[$3, $4, NULL]) AND business_id = $2"
    )
    assert result.slots[0].source == ClientParam(1)
    assert result.slots[0].tenant == TenantFromParam(2)
    assert isinstance(result.slots[1].source, Literal)


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        # not a searchable column: no blind index to compare
        ("SELECT id FROM customers WHERE phone = ANY(ARRAY['a'])", "equality (=)"),
        ("SELECT id FROM customers WHERE tax_id = ANY(ARRAY['a', lower('b')])", "expression"),
        ("SELECT id FROM customers WHERE tax_id = ANY(ARRAY[tax_id])", "array()"),
        ("SELECT id FROM customers WHERE tax_id <> ALL(ARRAY['a'])", "<>"),
        ("SELECT id FROM customers WHERE tax_id <> ANY(ARRAY['a'])", "<>"),
        ("SELECT id FROM customers WHERE tax_id = ALL(ARRAY['a'])", "with an expression"),
        ("SELECT id FROM customers WHERE tax_id = ANY(ARRAY[1::integer])", "cast to int"),
        ("SELECT tax_id = ANY(ARRAY['a']) FROM customers", "outside WHERE"),
    ],
)
def test_array_forms_still_refused(sql: str, words: str) -> None:
    result = plan(sql)
    assert isinstance(result, Refuse), result
    assert result.sqlstate == "0A000"
    assert words in result.message, result.message
    assert "'a'" not in result.message  # never a value in a refusal
    column = PHONE if "phone" in sql else TAX
    assert column.qualified in result.message
