"""pgjdbc (PostgreSQL JDBC 42.x) through pgseal on protected columns.

One JVM (``tests/jdbc/Encrypted.java``, in a +05:30 time zone) runs every
scenario: setters of every kind into ``typed`` (pgjdbc declares varchar for
setString and leaves setDate/setTimestamp untyped; also stringtype=unspecified,
everything untyped), read back in text and, with prepareThreshold=1, binary;
Describe of parameters and columns; 500-row batches into ``customers`` both
ways (pipelined Bind/Execute under one Sync, and multi-row VALUES); searchable
equality; refusals (also inside a transaction, in a batch and with
autosave=always); a fetch size over a protected result; RETURNING and
getGeneratedKeys; CopyManager. The rows carry business ids of this module's own
and a tag found in every protected plaintext: the raw columns must hold
envelopes, and the tag must reach neither Postgres nor pgseal's log.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached
from tests.jdbc.runner import Results, compiled, url

TYPED_PROTECTED = [
    "c_text", "c_varchar", "c_int", "c_bigint", "c_smallint", "c_numeric", "c_bool", "c_date",
    "c_ts", "c_tstz", "c_uuid", "c_jsonb", "c_bytea",
]  # fmt: skip
# What getObject returns per column (bytea: its value).
OBJECT_CLASSES = [
    "String", "String", "Integer", "Long", "Integer", "BigDecimal", "Boolean", "Date",
    "Timestamp", "Timestamp", "UUID", "PGobject",
]  # fmt: skip
SUCCESS_NO_INFO = -2


@dataclass(frozen=True)
class JdbcRun:
    results: Results
    business: int  # the scenarios write business ids business .. business + 20
    tag: str  # in every protected plaintext; letters outside hex, so no envelope spells it

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.results[name]


@pytest.fixture(scope="module")
def jdbc(stack: Stack) -> JdbcRun:
    business = 100_000 + secrets.randbelow(10_000) * 100
    tag = "zq" + secrets.token_hex(4)
    results = compiled().run(
        "Encrypted",
        url("127.0.0.1", stack.proxy.port, "postgres", "postgres"),
        str(business),
        tag,
        timezone="Asia/Kolkata",
    )
    return JdbcRun(results, business, tag)


@pytest.fixture
async def auditor(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection that, unlike ``raw``, leaves the tables as the JVM left them."""
    conn = await asyncpg.connect(stack.direct_dsn)
    try:
        yield conn
    finally:
        await conn.close()


def typed_row(*values: Any) -> list[Any]:
    """A typed row as Encrypted.java prints it: values (bytea in hex), then getObject's classes."""
    *row, bytea, armored = values
    return [*row, bytea, armored, [*OBJECT_CLASSES, bytea, "String"]]


async def assert_typed_sealed(auditor: asyncpg.Connection, business: int, *texts: str) -> None:
    rows = await auditor.fetch(
        f"SELECT {', '.join(TYPED_PROTECTED)}, c_armored FROM typed WHERE business_id = $1",
        business,
    )
    assert len(rows) == 1
    for column in TYPED_PROTECTED:
        assert_envelope(rows[0][column], *texts)
    armored = rows[0]["c_armored"]
    assert armored.startswith("pgseal1:")
    assert "armour" not in armored


async def test_setters_into_every_protected_type(
    jdbc: JdbcRun, auditor: asyncpg.Connection
) -> None:
    check = jdbc["typed_setters"]
    tag = jdbc.tag
    expected = typed_row(
        f"jdbc-text-{tag}",
        f"jv-{tag}",
        -2147483648,
        9007199254740993,
        -32768,
        "-12345678901234567890.000100",
        True,
        "2024-02-29",  # setDate: untyped "2024-02-29 +05:30"
        "2001-02-03 04:05:06.789",  # setTimestamp: untyped, with the JVM's zone
        "2001-02-03T02:05:06.500Z",
        "0e7b2a56-8d1c-4a4f-9a35-1d6a4f1b2c3d",
        f'{{"n": [1, 2], "jdbc": "{tag}"}}',
        "0001feff",
        f"armour-{tag}",
    )
    assert check["inserted"] == 1
    assert check["text_rows"] == expected
    assert check["text_more"] is False
    assert check["text_formats"] == [0] * 14
    assert check["binary_rows"] == [expected] * 3
    # Binary results for int, bigint, smallint, numeric, date, timestamp[tz], uuid, bytea.
    assert check["binary_formats"] == [0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 0]
    await assert_typed_sealed(
        auditor,
        jdbc.business,
        tag,
        "9007199254740993",
        "12345678901234567890",
        "2024-02-29",
        "2001-02-03",
        "0e7b2a56",
        "\\x0001feff",
    )


async def test_stringtype_unspecified(jdbc: JdbcRun, auditor: asyncpg.Connection) -> None:
    check = jdbc["typed_unspecified"]
    tag = jdbc.tag
    expected = typed_row(
        f"jdbc-unspec-{tag}",
        f"ju-{tag}",
        42,
        -9007199254740993,
        7,
        "0.5",
        False,
        "1999-12-31",
        "2038-01-19 03:14:07.0",
        "2038-01-19T03:14:07Z",
        "11111111-2222-3333-4444-555555555555",
        f'["{tag}"]',
        "00ff",
        f"armour-u-{tag}",
    )
    assert (check["inserted"], check["inserted_again"]) == (1, 1)
    assert check["text_rows"] == expected
    assert check["binary_rows"] == [expected] * 3
    for business in (jdbc.business + 1, jdbc.business + 20):
        await assert_typed_sealed(
            auditor, business, tag, "9007199254740993", "1999-12-31", "2038-01-19", "11111111"
        )


def test_described_parameter_and_column_types(jdbc: JdbcRun) -> None:
    check = jdbc["typed_described"]
    logical = ["text", "varchar", "int4", "int8", "int2", "numeric", "bool", "date"]
    logical += ["timestamp", "timestamptz", "uuid", "jsonb", "bytea", "text"]
    assert check["insert_params"] == ["int4", *logical]
    assert check["select_columns"] == logical
    assert check["search_params"] == ["int4", "text", "text"]


async def test_execute_batch_of_500_customers(jdbc: JdbcRun, auditor: asyncpg.Connection) -> None:
    for rewrite, business in (("false", jdbc.business + 2), ("true", jdbc.business + 3)):
        check = jdbc[f"customers_batch_{rewrite}"]
        assert check["business"] == business
        assert check["counts"] == 500
        assert check["counts_sum"] == (500 if rewrite == "false" else 500 * SUCCESS_NO_INFO)
        assert (check["count"], check["count_credit"]) == (500, 450)
        assert check["sum_credit"] == "1125.00"  # sum(i / 100) for i % 10 != 0, i < 500
        rows = await auditor.fetch(
            "SELECT email, email_bidx, tax_id, tax_id_bidx, phone, credit FROM customers"
            " WHERE business_id = $1",
            business,
        )
        assert len(rows) == 500
        assert len({r["phone"] for r in rows}) == 500
        assert sum(r["credit"] is None for r in rows) == 50
        for row in rows:
            for column in ("email", "tax_id", "phone"):
                assert_envelope(row[column], jdbc.tag, "JTAX", "jph", "@Example")
            assert row["email_bidx"] is not None
            assert row["tax_id_bidx"] is not None
            if row["credit"] is not None:
                assert_envelope(row["credit"])


def test_searchable_equality(jdbc: JdbcRun) -> None:
    check = jdbc["search"]
    tag = jdbc.tag
    by_email = [[f"jb-false-7|jph-{tag}-7|0.07"], [f"jb-false-499|jph-{tag}-499|4.99"], []]
    assert check["email_text"] == by_email  # normalize: trim, casefold
    assert check["email_binary"] == by_email * 3
    # tax_id has no normalize: the lower-case spelling finds nothing.
    assert check["tax_text"] == [
        [f"jb-false-13|jph-{tag}-13|0.13"],
        [],
        [f"jb-false-0|jph-{tag}-0|null"],
    ]
    # SET pgseal.tenant, then WHERE tax_id = ? alone.
    assert check["tax_session_tenant"] == [[f"jb-true-21|jph-{tag}-21|0.21"]]


def test_refused_query_keeps_the_connection_usable(jdbc: JdbcRun) -> None:
    check = jdbc["refused"]
    assert check["statement"]["sqlstate"] == "0A000"
    assert "ORDER BY on encrypted column public.customers.phone" in check["statement"]["message"]
    assert json.loads(check["usable_after_statement"]) == "1"
    for attempt in ("prepared_0", "prepared_5"):  # named statement after prepareThreshold too
        assert check[attempt]["sqlstate"] == "0A000"
        assert "public.customers.tax_id" in check[attempt]["message"]
    assert not any(key.startswith("prepared_raised") for key in check)
    assert check["describe"]["sqlstate"] == "0A000"  # refused at getParameterMetaData
    assert "LIKE on encrypted column public.customers.email" in check["describe"]["message"]
    assert json.loads(check["usable"]) == "jb-false-5"


def test_refusal_inside_a_transaction_and_with_autosave(jdbc: JdbcRun) -> None:
    check = jdbc["refused_in_transaction"]
    for autosave in ("never", "always"):
        assert check[f"{autosave}_refusal"]["sqlstate"] == "0A000"
        assert "range comparison (>)" in check[f"{autosave}_refusal"]["message"]
    # As after a Postgres error: the block is aborted until ROLLBACK...
    assert check["never_after"]["sqlstate"] == "25P02"
    # ...unless the driver rolled back to its own savepoint.
    assert check["always_after"] == "inserted"
    tag = jdbc.tag
    assert check["rows"] == [f"always-after|tx-{tag}", f"always-before|tx-{tag}"]


async def test_errors_in_the_middle_of_batches(jdbc: JdbcRun, auditor: asyncpg.Connection) -> None:
    tag = jdbc.tag
    for rewrite in ("false", "true"):
        check = jdbc[f"batch_errors_{rewrite}"]
        assert check["duplicate"]["sqlstate"] == "23505"
        assert check["duplicate"]["update_counts"] == [-3] * 4
        assert check["rows_after_duplicate"] == []  # one implicit transaction, rolled back
        assert check["tx"]["sqlstate"] == "23505"
        assert check["rows_after_tx"] == [f"after|ba-{tag}"]
    refused = jdbc["batch_refused"]
    assert refused["refusal"]["sqlstate"] == "0A000"
    assert refused["refusal"]["next_sqlstate"] == "0A000"
    assert refused["rows_after"] == []  # the INSERT before the refusal is rolled back with it
    assert refused["no_tenant"]["sqlstate"] == "23502"
    assert "tenant column" in refused["no_tenant"]["message"]
    assert refused["rows_after_no_tenant"] == []
    counts = await auditor.fetch(
        "SELECT business_id, count(*) FROM customers WHERE business_id BETWEEN $1 AND $2"
        " GROUP BY business_id ORDER BY business_id",
        jdbc.business + 5,
        jdbc.business + 8,
    )
    assert [tuple(r) for r in counts] == [(jdbc.business + 5, 1), (jdbc.business + 6, 1)]
    for row in await auditor.fetch(
        "SELECT phone FROM customers WHERE business_id IN ($1, $2)",
        jdbc.business + 5,
        jdbc.business + 6,
    ):
        assert_envelope(row["phone"], tag)


async def test_copy_manager_in_and_out(jdbc: JdbcRun, auditor: asyncpg.Connection) -> None:
    check = jdbc["copy"]
    tag = jdbc.tag
    assert check["copied_in"] == 300
    assert check["copied_out"] == 2
    assert check["out"] == [f"cp-1\tcph-{tag}-1\tCTAX-{tag}-1", f"cp-5\t\\N\tCTAX-{tag}-5"]
    assert check["search"] == [["cp-250|null|null"], [f"cp-251|cph-{tag}-251|null"]]
    rows = await auditor.fetch(
        "SELECT email, tax_id, tax_id_bidx, phone FROM customers WHERE business_id = $1",
        jdbc.business + 10,
    )
    assert len(rows) == 300
    assert sum(r["phone"] is None for r in rows) == 60
    for row in rows:
        assert_envelope(row["email"], tag)
        assert_envelope(row["tax_id"], tag)
        assert row["tax_id_bidx"] is not None
        if row["phone"] is not None:
            assert_envelope(row["phone"], tag)


def test_fetch_size_over_a_protected_result(jdbc: JdbcRun) -> None:
    check = jdbc["fetch_size"]
    for threshold in ("5", "1"):
        assert check[f"rows_{threshold}"] == 1000  # 500 rows, twice, 37 at a time
        assert check[f"right_{threshold}"] == 1000


async def test_literals_update_and_returning(jdbc: JdbcRun, auditor: asyncpg.Connection) -> None:
    check = jdbc["statement_and_returning"]
    tag = jdbc.tag
    assert (check["inserted"], check["updated"]) == (1, 1)
    # getGeneratedKeys: RETURNING * with the protected columns opened.
    assert check["generated"] == ["gen", f"gen-phone-{tag}", "9.99", "null"]
    assert check["returning"] == [f"ret-phone-{tag}", f"UTAX-{tag}"]
    assert check["rows"] == [f"gen|gen-phone-{tag}", f"lit|ret-phone-{tag}"]
    rows = await auditor.fetch(
        "SELECT phone, email, tax_id, credit FROM customers WHERE business_id = $1",
        jdbc.business + 11,
    )
    assert len(rows) == 2
    for row in rows:
        assert_envelope(row["phone"], tag)
        for column in ("email", "tax_id", "credit"):
            if row[column] is not None:
                assert_envelope(row[column], tag, "9.99")


async def test_no_plaintext_reached_postgres_or_pgseal_log(
    jdbc: JdbcRun, stack: Stack, auditor: asyncpg.Connection
) -> None:
    assert jdbc["done"] == {"check": "done"}
    # Every statement the JVM sent is in Postgres's log (log_statement=all): none
    # holds a plaintext, nor does any stored value of this module's businesses.
    await assert_never_reached(stack, jdbc.tag)
    assert jdbc.tag not in stack.proxy.log_text()
    for table in ("typed", "customers"):
        dump = await auditor.fetchval(
            f"SELECT string_agg(t::text, ' ') FROM {table} t WHERE business_id BETWEEN $1 AND $2",
            jdbc.business,
            jdbc.business + 99,
        )
        assert dump is not None
        assert jdbc.tag not in dump


async def test_binary_parameters_with_prepare_threshold_minus_1(
    jdbc: JdbcRun, auditor: asyncpg.Connection
) -> None:
    check = jdbc["binary_parameters"]
    tag = jdbc.tag
    assert check["read"] == [
        f"bin-{tag}-{i}|{-(2**63) + i}|{100 + i}|{i}.00000000000000000001|0001-01-0{1 + i}"
        f"|2020-02-29T23:59:59.999999|2020-01-02T10:34:05Z|{uuid}|0{i}0080|1"
        for i, uuid in enumerate(
            [
                "00000000-0000-0000-0000-000000000000",
                "00000000-0000-0001-ffff-ffffffffffff",
                "00000000-0000-0002-ffff-fffffffffffe",
            ]
        )
    ]
    # setDouble: a binary float8, stored as Postgres's assignment casts make it
    # (1.2345678901234567 -> 15 digits for numeric, 2.5 -> 2 for bigint).
    assert check["double_raised"] is False
    assert check["double_rows"] == 1
    assert check["double_value"] == "1.23456789012346|2"
    rows = await auditor.fetch(
        "SELECT c_text, c_bigint, c_smallint, c_numeric, c_date, c_ts, c_tstz, c_uuid, c_bytea"
        " FROM typed WHERE business_id BETWEEN $1 AND $2",
        jdbc.business + 30,
        jdbc.business + 32,
    )
    assert len(rows) == 3
    for row in rows:
        for value in row.values():
            assert_envelope(value, tag, "0001-01-0", "2020-0")


async def test_any_in_update_batch_and_tenant_option(
    jdbc: JdbcRun, auditor: asyncpg.Connection
) -> None:
    check = jdbc["arrays_updates_options"]
    tag = jdbc.tag
    assert check["any"] == ["ar1", "ar3"]  # = ANY(text[]), each element normalised
    assert check["in"] == ["ar2", "ar4"]
    assert check["updated"] == 3
    assert check["rows"] == [
        f"ar0|arph-{tag}-0", "ar1|null", f"ar2|arph-{tag}-2", "ar3|null", f"ar4|arph-{tag}-4",
    ]  # fmt: skip
    assert check["option_tenant"] == ["ar2"]  # options=-c pgseal.tenant=...
    for row in await auditor.fetch(
        "SELECT email, tax_id, phone FROM customers WHERE business_id = $1 AND phone IS NOT NULL",
        jdbc.business + 40,
    ):
        for value in row.values():
            assert_envelope(value, tag)


def test_passthrough_scenarios_on_the_encrypted_pgseal(stack: Stack) -> None:
    """The plain-table scenarios of tests/jdbc, through the encrypting session."""
    jdbc = compiled()
    direct = jdbc.start(
        "PassThrough", url("127.0.0.1", stack.cluster.port, "postgres", "postgres"), "jdbc_d"
    )
    proxy = jdbc.start(
        "PassThrough", url("127.0.0.1", stack.proxy.port, "postgres", "postgres"), "jdbc_p"
    )
    by_direct, by_proxy = jdbc.results(direct), jdbc.results(proxy)

    def normal(results: Results, prefix: str) -> dict[str, Any]:
        checks = {
            k: {f: v for f, v in c.items() if f != "elapsed_ms"} for k, c in results.checks.items()
        }
        normalised: dict[str, Any] = json.loads(json.dumps(checks).replace(prefix, "T"))
        return normalised

    assert by_proxy["done"] == {"check": "done"}
    assert not [c for c in by_proxy.checks.values() if "error" in c]
    assert len(by_proxy.checks) == 19
    assert normal(by_proxy, "jdbc_p") == normal(by_direct, "jdbc_d")


async def test_updatable_result_set(jdbc: JdbcRun, auditor: asyncpg.Connection) -> None:
    check = jdbc["updatable_result_set"]
    tag = jdbc.tag
    # The driver's own UPDATE ... WHERE "id" = $2 names no business: refused.
    assert check["no_tenant"]["sqlstate"] == "42501"
    assert "cannot tell which business" in check["no_tenant"]["message"]
    assert check["read"] == f"up-{tag}"
    assert check["after_update_row"] == f"up-new-{tag}"
    assert check["rows"] == [f"up|up-new-{tag}", f"up-ins|up-ins-{tag}"]
    rows = await auditor.fetch(
        "SELECT phone FROM customers WHERE business_id = $1", jdbc.business + 50
    )
    assert len(rows) == 2
    for row in rows:
        assert_envelope(row["phone"], tag)
