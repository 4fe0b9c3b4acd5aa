"""``UPDATE ... SET tenant_column = v, <encrypted columns> ... WHERE id = ...``: what
an ORM's save() sends (Django sets every column). It keeps the row's business: v is
the statement's tenant and ``AND tenant_column = v`` guards the rows touched, as if
the WHERE had named it. A real move of a row to another business stays refused."""

from __future__ import annotations

import pytest

from rules.plan import BindAction, Refuse, TenantFromParam, TenantLiteral
from tests.rules.test_plan import plan, rewrite


def test_literal_tenant_set_becomes_the_guard() -> None:
    result = rewrite("UPDATE customers SET business_id = 41, phone = 'x' WHERE id = 5")
    assert result.sql_extended == (
        "UPDATE customers SET business_id = 41, phone = $1"
        " WHERE (id = 5) AND customers.business_id = $2"
    )
    assert [type(s.action).__name__ for s in result.slots] == ["Seal", "TenantValue"]
    assert all(s.tenant == TenantLiteral("41") for s in result.slots)


def test_parameter_tenant_set_seals_for_that_parameter() -> None:
    result = rewrite(
        "UPDATE customers SET business_id = $1, company_name = $2, tax_id = $3 WHERE id = $4"
    )
    assert result.sql_extended.endswith("WHERE (id = $4) AND customers.business_id = $6")
    sealed = {p.index: p.tenant for p in result.params if p.action is BindAction.SEAL}
    assert sealed == {2: TenantFromParam(1), 3: TenantFromParam(1)}
    assert {s.tenant for s in result.slots} == {TenantFromParam(1)}


def test_same_tenant_in_where_needs_no_guard() -> None:
    result = rewrite(
        "UPDATE customers SET business_id = 41, phone = 'x' WHERE id = 5 AND business_id = 41"
    )
    assert result.sql_extended.endswith("WHERE id = 5 AND business_id = 41")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE customers SET business_id = 2 WHERE id = 1",  # a move, nothing sealed
        "UPDATE customers SET business_id = 42, phone = 'x' WHERE id = 5 AND business_id = 41",
        "UPDATE customers SET business_id = $1, phone = 'x' WHERE business_id = $2",
        "UPDATE customers SET business_id = business_id + 1, phone = 'x' WHERE id = 5",
        "UPDATE customers SET business_id = 7, business_id = 8, phone = 'x' WHERE id = 5",
        "UPDATE customers SET business_id = DEFAULT, phone = 'x' WHERE id = 5",
    ],
)
def test_a_change_of_business_is_refused(sql: str) -> None:
    result = plan(sql)
    assert isinstance(result, Refuse), result
    assert "changing tenant column business_id" in result.message
