"""``INSERT ... ON CONFLICT DO UPDATE SET tenant_column = EXCLUDED.tenant_column``:
what an ORM's upsert sends (Sequelize and TypeORM set every inserted column). Under
the same-tenant guard ``WHERE t.tenant_column = excluded.tenant_column`` it changes
nothing, so it is planned; any other value for the tenant column stays refused."""

from __future__ import annotations

import pytest

from rules.plan import Refuse
from tests.rules.test_plan import plan, rewrite


def test_sequelize_upsert_keeps_the_business_under_the_guard() -> None:
    result = rewrite(
        'INSERT INTO "customers" ("id","business_id","phone","tax_id") VALUES ($1,$2,$3,$4)'
        ' ON CONFLICT ("id") DO UPDATE SET "id"=EXCLUDED."id",'
        '"business_id"=EXCLUDED."business_id","phone"=EXCLUDED."phone",'
        '"tax_id"=EXCLUDED."tax_id" RETURNING "id","phone"'
    )
    assert result.sql_extended == (
        'INSERT INTO "customers" ("id", "business_id", "phone", "tax_id", tax_id_bidx)'
        " VALUES ($1, $2, $3, $4, $5)"
        ' ON CONFLICT("id") DO UPDATE SET "id" = EXCLUDED."id",'
        ' "business_id" = EXCLUDED."business_id", "phone" = EXCLUDED."phone",'
        ' "tax_id" = EXCLUDED."tax_id", tax_id_bidx = excluded.tax_id_bidx'
        ' WHERE customers.business_id = excluded.business_id RETURNING "id", "phone"'
    )


def test_tenant_alone_is_guarded_too() -> None:
    result = rewrite(
        "INSERT INTO customers (id, business_id, phone) VALUES ($1, $2, $3)"
        " ON CONFLICT (id) DO UPDATE SET business_id = excluded.business_id"
    )
    assert result.sql_extended.endswith(
        "DO UPDATE SET business_id = excluded.business_id"
        " WHERE customers.business_id = excluded.business_id"
    )


def test_tenant_in_the_conflict_key_needs_no_guard() -> None:
    result = rewrite(
        "INSERT INTO customers (business_id, id, phone) VALUES ($1, $2, $3)"
        " ON CONFLICT (business_id, id) DO UPDATE SET business_id = EXCLUDED.business_id,"
        " phone = EXCLUDED.phone"
    )
    assert "WHERE" not in result.sql_extended


@pytest.mark.parametrize(
    "assignment",
    [
        "business_id = 7",
        "business_id = $4",
        "business_id = EXCLUDED.id",
        "business_id = EXCLUDED.business_id + 1",
        "business_id = customers.business_id",
    ],
)
def test_any_other_tenant_value_is_refused(assignment: str) -> None:
    result = plan(
        "INSERT INTO customers (id, business_id, phone) VALUES ($1, $2, $3)"
        f" ON CONFLICT (id) DO UPDATE SET {assignment}, phone = EXCLUDED.phone"
    )
    assert isinstance(result, Refuse), result
    assert "changing tenant column business_id" in result.message
