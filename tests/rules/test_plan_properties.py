"""Property: literals written into protected columns never appear in the SQL sent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.plan import Literal, Rewrite, plan_statement
from tests.rules.test_plan import RULES

PROTECTED = ["company_name", "phone", "tax_id", "credit_limit"]

# Printable text without quotes or backslashes keeps the SQL well formed; the
# "zq" prefix makes every literal distinctive, so a substring hit is a real leak.
secret = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="'\\"),
    min_size=1,
    max_size=20,
).map(lambda s: "zq" + s)


@st.composite
def insert_statement(draw: st.DrawFn) -> tuple[str, list[str]]:
    columns = draw(st.lists(st.sampled_from(PROTECTED), min_size=1, max_size=4, unique=True))
    rows = draw(st.integers(min_value=1, max_value=3))
    secrets: list[str] = []
    tuples = []
    for r in range(rows):
        values = []
        for column in columns:
            value = draw(secret)
            secrets.append(value)
            # A text cast into the numeric column is refused (42804), as by Postgres.
            casts = [""] if column == "credit_limit" else ["", "::text", "::varchar"]
            values.append("'" + value + "'" + draw(st.sampled_from(casts)))
        tuples.append(f"({r}, " + ", ".join(values) + ")")
    sql = f"INSERT INTO customers (business_id, {', '.join(columns)}) VALUES " + ", ".join(tuples)
    return sql, secrets


@st.composite
def update_statement(draw: st.DrawFn) -> tuple[str, list[str]]:
    columns = draw(st.lists(st.sampled_from(PROTECTED), min_size=1, max_size=4, unique=True))
    secrets = [draw(secret) for _ in columns]
    sets = ", ".join(f"{c} = '{v}'" for c, v in zip(columns, secrets, strict=True))
    where = draw(st.sampled_from(["id = 1", "business_id = 4 AND id = $1", "tax_id = 'zqkey'"]))
    secrets.append("zqkey") if "zqkey" in where else None
    return f"UPDATE customers SET {sets} WHERE {where}", secrets


@settings(max_examples=150, deadline=None)
@given(st.one_of(insert_statement(), update_statement()))
def test_rewritten_sql_never_contains_protected_literals(case: tuple[str, list[str]]) -> None:
    sql, secrets = case
    result = plan_statement(sql, RULES)
    assert isinstance(result, Rewrite), result
    simple = result.render_simple([b"\x01\x02"] * len(result.slots))
    lifted = [s.source.text for s in result.slots if isinstance(s.source, Literal)]
    for value in secrets:
        assert value not in result.sql_extended
        assert value not in simple
        assert value in lifted
