"""The batch statements of proxy.migrate, SQL in / SQL out (no database)."""

from __future__ import annotations

from proxy.migrate import TablePlan, _select_sql, _update_sql
from rules.model import ProtectedColumn, ProtectedTable
from rules.schema_check import LiveTable

PAYER = ProtectedColumn("billing", "invoices", "payer", "text", searchable="payer_bidx")
MEMO = ProtectedColumn("billing", "invoices", "memo", "text", storage="text")
TABLE = ProtectedTable("billing", "invoices", "business_id", {"payer": PAYER, "memo": MEMO})
PLAN = TablePlan(
    TABLE,
    (PAYER, MEMO),
    ("business_id", "number"),
    ("integer", "bigint"),
    LiveTable("billing.invoices", {}, ("business_id", "number")),
)


def test_select_walks_the_key_in_its_own_type() -> None:
    # ORDER BY the table's columns (t.), never the text copies in the select list.
    assert _select_sql(PLAN, resume=True, lock=True) == (
        "SELECT t.business_id::text AS k0, t.number::text AS k1, t.business_id::text AS tenant, "
        "t.payer, t.memo FROM billing.invoices AS t "
        "WHERE (t.business_id, t.number) > (($1::text[])[1]::integer, ($1::text[])[2]::bigint) "
        "ORDER BY t.business_id, t.number LIMIT $2 FOR UPDATE"
    )
    first = _select_sql(PLAN, resume=False, lock=False)
    assert "WHERE" not in first
    assert first.endswith("ORDER BY t.business_id, t.number LIMIT $1")


def test_update_changes_only_the_values_it_is_given() -> None:
    assert _update_sql(PLAN, with_index=True) == (
        "UPDATE billing.invoices AS t SET payer = COALESCE(v.c0, t.payer), "
        "payer_bidx = CASE WHEN v.c0 IS NULL THEN t.payer_bidx ELSE v.b0 END, "
        "memo = COALESCE(v.c1, t.memo) "
        "FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::text[]) "
        "AS v(k0, k1, c0, b0, c1) "
        "WHERE t.business_id = v.k0::integer AND t.number = v.k1::bigint"
    )
    # Re-encryption keeps the blind indexes: the index key is not rotated.
    assert "payer_bidx" not in _update_sql(PLAN, with_index=False)
