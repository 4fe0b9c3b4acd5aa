"""SQLAlchemy's sorted insertmanyvalues form is planned as the INSERT ... VALUES it
means (rules.normalize); near misses stay INSERT ... SELECT and are refused."""

from __future__ import annotations

import pytest

from rules.plan import BindAction, Refuse
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
