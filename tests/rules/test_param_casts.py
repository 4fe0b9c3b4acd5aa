"""Casts on values for encrypted columns: SQL in / SQL out, plans and refusals."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

from rules.casts import convert_value, value_cast
from rules.model import ProtectedColumn, ProtectedTable, Rules
from rules.pgtypes import ValueFormatError
from rules.plan import (
    BindAction,
    BlindIndex,
    ClientParam,
    Literal,
    Refuse,
    Rewrite,
    Seal,
    plan_statement,
)


def _col(name: str, type_: str, **kw: object) -> ProtectedColumn:
    return ProtectedColumn("public", "t", name, type_, **kw)  # type: ignore[arg-type]


COLUMNS = {
    "c_text": _col("c_text", "text", searchable="c_text_bidx"),
    "c_vc": _col("c_vc", "varchar", type_modifier=5),
    "c_int": _col("c_int", "integer"),
    "c_big": _col("c_big", "bigint", searchable="c_big_bidx"),
    "c_num": _col("c_num", "numeric"),
    "c_date": _col("c_date", "date"),
    "c_ts": _col("c_ts", "timestamp"),
    "c_tstz": _col("c_tstz", "timestamptz"),
}
RULES = Rules({"public.t": ProtectedTable("public", "t", "business_id", COLUMNS)})
TEXT, VC, INT, BIG, NUM = (COLUMNS[c] for c in ("c_text", "c_vc", "c_int", "c_big", "c_num"))


def rewrite(sql: str) -> Rewrite:
    result = plan_statement(sql, RULES)
    assert isinstance(result, Rewrite), result
    return result


def refused(sql: str) -> Refuse:
    result = plan_statement(sql, RULES)
    assert isinstance(result, Refuse), result
    return result


def test_cast_parameter_is_sealed_in_place_and_described_as_the_cast() -> None:
    result = rewrite("INSERT INTO t (business_id, c_num) VALUES ($1, $2::integer)")
    assert result.sql_extended == "INSERT INTO t (business_id, c_num) VALUES ($1, $2)"
    param = result.params[1]
    assert param.action is BindAction.SEAL
    assert param.column == NUM
    assert param.logical_oid == 23  # ParameterDescription: integer, as Postgres says
    assert param.cast is not None
    assert param.cast.logical == "integer"
    assert result.parse_oids([0, 0]) == (0, 17)  # still sent to Postgres as bytea


def test_update_set_cast_parameter() -> None:
    result = rewrite("UPDATE t SET c_vc = $1::text WHERE business_id = $2 AND id = 3")
    assert result.sql_extended == "UPDATE t SET c_vc = $1 WHERE business_id = $2 AND id = 3"
    assert result.params[0].logical_oid == 25
    assert result.params[0].action is BindAction.SEAL


def test_search_with_a_cast_parameter_uses_the_blind_index_and_the_cast() -> None:
    result = rewrite("SELECT id FROM t WHERE business_id = 1 AND c_text = $1::varchar")
    assert result.sql_extended == "SELECT id FROM t WHERE business_id = 1 AND c_text_bidx = $2"
    assert [(s.source, s.action) for s in result.slots] == [(ClientParam(1), BlindIndex(TEXT))]
    param = result.params[0]
    assert param.action is BindAction.REPLACE_WITH_NULL
    assert param.logical_oid == 1043
    # bigint column compared with an integer value: widening, allowed
    result = rewrite("SELECT id FROM t WHERE business_id = 1 AND c_big = $1::int4")
    assert result.params[0].logical_oid == 23


def test_cast_literals_are_converted_to_the_column_type_at_plan_time() -> None:
    result = rewrite(
        "INSERT INTO t (business_id, c_num, c_ts, c_int, c_text, c_vc) VALUES "
        "(1, '12'::integer, '2024-02-03'::date, 2.5::numeric, 42::bigint, 'abcdefg'::varchar(4))"
    )
    assert "12" not in result.sql_extended
    assert "2024" not in result.sql_extended
    sealed = [(s.source, s.action.column.name) for s in result.slots if isinstance(s.action, Seal)]
    assert sealed == [
        (Literal("12"), "c_num"),
        (Literal("2024-02-03 00:00:00"), "c_ts"),
        (Literal("3"), "c_int"),  # numeric -> integer rounds half away from zero
        (Literal("42"), "c_text"),  # I/O conversion to a string type
        (Literal("abcd"), "c_vc"),  # the explicit varchar(4) cast truncates
    ]
    result = rewrite("UPDATE t SET c_num = '2.345'::numeric(4, 2) WHERE business_id = 1")
    assert result.slots[0].source == Literal("2.35")  # numeric(p, s) rounds to s places
    # the blind index of a cast literal is computed on the converted value
    result = rewrite("SELECT id FROM t WHERE business_id = 1 AND c_big = '7'::smallint")
    assert [s.source for s in result.slots] == [Literal("7")]


@pytest.mark.parametrize(
    ("sql", "sqlstate", "words"),
    [
        (  # Postgres: column "c_num" is of type numeric but expression is of type text
            "INSERT INTO t (business_id, c_num) VALUES (1, $1::text)",
            "42804",
            ["c_num", "numeric", "text"],
        ),
        ("UPDATE t SET c_int = $1::boolean WHERE id = 1", "42804", ["c_int", "boolean"]),
        ("INSERT INTO t (business_id, c_date) VALUES (1, '2024-01-01'::text)", "42804", ["date"]),
        # Postgres converts these by the session TimeZone / DateStyle: pgseal refuses
        ("INSERT INTO t (business_id, c_tstz) VALUES (1, $1::timestamp)", "0A000", ["c_tstz"]),
        ("INSERT INTO t (business_id, c_text) VALUES (1, $1::date)", "0A000", ["date"]),
        ("INSERT INTO t (business_id, c_num) VALUES (1, $1::timestamp(3))", "0A000", ["(3)"]),
        ("INSERT INTO t (business_id, c_num) VALUES (1, 1234.5::numeric(5,2))", "22003", ["c_num"]),
        ("INSERT INTO t (business_id, c_num) VALUES (1, $1::money)", "0A000", ["money"]),
        ("INSERT INTO t (business_id, c_text) VALUES (1, $1::text::varchar)", "0A000", ["c_text"]),
        # comparisons: only casts that widen into the column's type find the same rows
        ("SELECT id FROM t WHERE business_id = 1 AND c_big = $1::numeric", "0A000", ["c_big"]),
        ("SELECT id FROM t WHERE business_id = 1 AND c_text = $1::integer", "0A000", ["c_text"]),
        (
            "SELECT id FROM t WHERE business_id = 1 AND c_text = ANY($1::integer[])",
            "0A000",
            ["c_text"],
        ),
        (  # Postgres: inconsistent types deduced for parameter $1
            "INSERT INTO t (business_id, c_text, c_vc) VALUES (1, $1::text, $1::integer)",
            "42P08",
            ["$1"],
        ),
        # a literal that is not valid for its cast type, as Postgres reports it
        ("INSERT INTO t (business_id, c_num) VALUES (1, '1.5'::integer)", "22P02", ["c_num"]),
        ("INSERT INTO t (business_id, c_vc) VALUES (1, 'abcdef'::text)", "22001", ["c_vc"]),
        ("INSERT INTO t (business_id, c_int) VALUES (1, 3000000000::bigint)", "22003", ["c_int"]),
        # a cast of the column itself stays refused
        ("SELECT id FROM t WHERE business_id = 1 AND c_text::text = $1", "0A000", ["cast"]),
    ],
)
def test_casts_refused(sql: str, sqlstate: str, words: list[str]) -> None:
    result = refused(sql)
    assert result.sqlstate == sqlstate, result
    for word in words:
        assert word in result.message, result
    assert "1.5" not in result.message
    assert "abcdef" not in result.message


def test_casts_that_keep_the_meaning_are_accepted() -> None:
    for sql in (
        "INSERT INTO t (business_id, c_big) VALUES (1, $1::smallint)",
        "INSERT INTO t (business_id, c_int) VALUES (1, $1::bigint)",
        "INSERT INTO t (business_id, c_vc) VALUES (1, $1::character varying)",
        "INSERT INTO t (business_id, c_text) VALUES (1, $1::uuid)",
        "INSERT INTO t (business_id, c_date) VALUES (1, $1::timestamp)",
        "SELECT id FROM t WHERE business_id = 1 AND c_text = ANY($1::text[])",
    ):
        rewrite(sql)


def test_convert_value_reads_binary_as_the_cast_then_converts() -> None:
    integer = value_cast(_parse("$1::integer"))
    assert integer is not None
    assert convert_value(NUM, integer, (12).to_bytes(4, "big", signed=True), 1) == b"12"
    assert convert_value(BIG, integer, b" -7", 0) == b"-7"
    # a client-declared type other than the cast is read first, then cast
    text = value_cast(_parse("$1::text"))
    assert text is not None
    assert convert_value(TEXT, text, (5).to_bytes(8, "big"), 1, declared_oid=20) == b"5"
    numeric = value_cast(_parse("$1::numeric"))
    assert numeric is not None
    assert convert_value(INT, numeric, b"-2.5", 0) == b"-3"
    with pytest.raises(ValueFormatError) as info:
        convert_value(INT, numeric, b"NaN", 0)
    assert info.value.sqlstate == "0A000"
    with pytest.raises(ValueFormatError) as info:
        convert_value(VC, text, b"toolong", 0)
    assert info.value.sqlstate == "22001"


def _parse(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="postgres")


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [
        ("INSERT INTO t (business_id, c_num) VALUES ($1, NULL::text)", "42804"),
        ("UPDATE t SET c_int = NULL::date WHERE business_id = $1", "42804"),
        ("INSERT INTO t (business_id, c_int) VALUES ($1, NULL::inet)", "0A000"),
        ("SELECT * FROM t WHERE c_big = NULL::text", "0A000"),
    ],
)
def test_typed_null_is_checked_like_a_value(sql: str, sqlstate: str) -> None:
    assert refused(sql).sqlstate == sqlstate


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t (business_id, c_int) VALUES ($1, NULL::bigint)",  # assignment cast
        "INSERT INTO t (business_id, c_text) VALUES ($1, NULL::date)",  # no value to convert
        "UPDATE t SET c_tstz = NULL::timestamp WHERE business_id = $1",
        "SELECT * FROM t WHERE c_big = NULL::integer",
    ],
)
def test_typed_null_postgres_accepts_stays_null(sql: str) -> None:
    result = rewrite(sql)
    assert "NULL" in result.fragments[0]
    assert "::" not in result.fragments[0]
