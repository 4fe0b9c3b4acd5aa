"""node-postgres (npm ``pg``) through pgseal on protected columns.

pg sends parameters as text with type OID 0 (Buffers as binary, Dates in local
time with an offset) and parses results by the RowDescription OIDs pgseal
rewrites. Each test runs one scenario of tests/node/encrypted.js, asserts on
what it printed, then reads the raw columns directly: envelopes, no plaintext.
"""

from __future__ import annotations

import asyncpg
import pytest

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached
from tests.node.conftest import pg_env, run_node_script

TYPED_COLUMNS = (
    "c_text, c_varchar, c_int, c_bigint, c_smallint, c_numeric, c_bool,"
    " c_date, c_ts, c_tstz, c_uuid, c_jsonb, c_bytea"
)

FIRST_TEXT = "node text ✓ 'quoted'"
FIRST_ROW: dict[str, object] = {
    "c_text": FIRST_TEXT,
    "c_varchar": "node-vc",
    "c_int": -42,
    "c_bigint": "9007199254740993",
    "c_smallint": 7,
    "c_numeric": "12345.678900",
    "c_bool": True,
    "c_date": "2024-02-29T00:00:00.000Z",
    "c_ts": "2024-02-29T12:34:56.789Z",
    "c_tstz": "1999-12-31T23:59:59.001Z",
    "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "c_jsonb": {"node": ["x", 1], "nested": {"ü": None}},
    "c_bytea": "hex:000102feff5c",
    "c_armored": "node armour",
}
ALL_NULL = dict.fromkeys(FIRST_ROW)
THIRD_ROW = {
    **ALL_NULL,
    "c_int": 17,
    "c_bigint": "-1",
    "c_numeric": "0.25",
    "c_bool": False,
    "c_jsonb": [1, "two"],
}

#: Plaintexts the scenarios write into protected columns only.
SECRETS = (
    "node text",
    "node-vc",
    "node armour",
    "555-N",
    "NTAX-",
    "Example.com",
    "555-P",
    "x.example",
    "copy.example",
    "555-C",
    "555-R",
    "555-CB",
)


def scenario(stack: Stack, name: str, tenant: int, tz: str = "UTC") -> dict[str, object]:
    env = {**pg_env("127.0.0.1", stack.proxy.port, "postgres", "postgres"), "TZ": tz}
    return run_node_script("encrypted.js", [str(tenant), name], env)


async def assert_secrets_stayed_out(stack: Stack) -> None:
    await assert_never_reached(stack, *SECRETS)
    log = stack.proxy.log_text()
    for secret in SECRETS:
        assert secret not in log, f"{secret!r} reached pgseal's log"


async def test_every_logical_type_round_trips(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "typed", 9101)
    assert got["typed:returning"] == FIRST_ROW
    assert got["typed:extended"] == [FIRST_ROW, ALL_NULL, THIRD_ROW]
    assert got["typed:simple"] == got["typed:extended"]
    assert got["typed:oids"] == [
        ["c_text", 25], ["c_varchar", 1043], ["c_int", 23], ["c_bigint", 20],
        ["c_smallint", 21], ["c_numeric", 1700], ["c_bool", 16], ["c_date", 1082],
        ["c_ts", 1114], ["c_tstz", 1184], ["c_uuid", 2950], ["c_jsonb", 3802],
        ["c_bytea", 17], ["c_armored", 25],
    ]  # fmt: skip
    binary = got["typed:binary"]
    assert isinstance(binary, list)
    assert got["typed:binary_formats"] == ["binary"] * 11
    reference = got["typed:binary_reference"]
    assert isinstance(reference, dict)
    assert binary[0] == {**reference, "c_text": FIRST_TEXT.encode().hex()}
    assert binary[1] == dict.fromkeys(binary[0])
    assert got["typed:row_mode_array"] == [
        [-42, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
        [None, None],
        [17, None],
    ]
    assert got["typed:varchar_too_long"] == "22001"
    assert got["typed:bad_int"] == "22P02"
    assert got["typed:count_after_errors"] == 3
    stored = await raw.fetch(
        f"SELECT {TYPED_COLUMNS}, c_armored FROM typed WHERE business_id = 9101 ORDER BY id"
    )
    assert len(stored) == 3
    for value in tuple(stored[0])[:-1]:
        assert_envelope(value, "node text", "node-vc", "a0eebc99")
    assert stored[0]["c_armored"].startswith("pgseal1:")
    assert "armour" not in stored[0]["c_armored"]
    assert all(v is None for v in stored[1])
    assert [name for name, v in stored[2].items() if v is not None] == [
        "c_int", "c_bigint", "c_numeric", "c_bool", "c_jsonb",
    ]  # fmt: skip
    for value in stored[2].values():
        if value is not None:
            assert_envelope(value, "two")
    await assert_secrets_stayed_out(stack)


@pytest.mark.parametrize("tz", ["Asia/Kolkata", "America/St_Johns", "Pacific/Kiritimati"])
async def test_dates_sent_in_local_time_read_as_postgres_reads_them(
    stack: Stack, raw: asyncpg.Connection, tz: str
) -> None:
    got = scenario(stack, "dates", 9102, tz)
    assert got["dates:count"] == 5
    assert got["dates:sealed"] == got["dates:postgres"]
    stored = await raw.fetch("SELECT c_date, c_ts, c_tstz FROM typed WHERE business_id = 9102")
    assert len(stored) == 5
    for row in stored:
        for value in row:
            assert_envelope(value)


async def test_searchable_equality_and_any(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "search", 9103)
    assert got["search:email"] == [{"name": "node-s3", "phone": "555-N3", "credit": "3.5"}]
    assert got["search:tax_any"] == ["node-s1", "node-s4"]
    assert got["search:email_any"] == ["node-s0", "node-s2"]
    assert got["search:any_edges"] == [
        [],
        ["node-s3"],
        ["node-s0"],
        [f"node-s{i}" for i in range(5)],
    ]
    assert got["search:cancelled"] == "57014"
    assert got["search:literal"] == ["node-s2"]
    assert got["search:case_sensitive_tax"] == []
    assert got["search:update"] == [{"name": "node-s1", "phone": "555-NEW"}]
    stored = await raw.fetch(
        "SELECT name, email, email_bidx, tax_id, tax_id_bidx, phone, credit FROM customers"
        " WHERE business_id = 9103 ORDER BY name"
    )
    assert [r["name"] for r in stored] == [f"node-s{i}" for i in range(5)]
    for row in stored:
        for column in ("email", "tax_id", "phone", "credit"):
            assert_envelope(row[column], "Example", "NTAX", "555-")
        assert row["email_bidx"] is not None
        assert row["tax_id_bidx"] is not None
    assert len({r["email_bidx"] for r in stored}) == 5
    await assert_secrets_stayed_out(stack)


async def test_refused_queries_among_queued_and_pipelined_ones(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    got = scenario(stack, "refused", 9104)
    order_by = "pgseal: ORDER BY on encrypted column public.customers.phone is not supported"
    like = "pgseal: LIKE on encrypted column public.customers.email is not supported"
    for rows_before, mode in enumerate(["serial", "pipeline"], start=1):
        assert got[f"refused:{mode}"] == [
            {"code": "0A000", "message": order_by},
            [{"after": 1}],
            {"code": "0A000", "message": like},
            [{"phone": "555-R"}],
            {"code": "0A000", "message": order_by},
            [{"simple_after": 2}],
        ], mode
        # in a transaction the refusal aborts it, as a server error would
        assert got[f"refused:{mode}:tx"] == [
            [],
            [],
            {"code": "0A000"},
            {"code": "25P02"},
            [],
            [{"n": rows_before}],
        ], mode
    stored = await raw.fetch("SELECT name, phone FROM customers WHERE business_id = 9104")
    assert sorted(r["name"] for r in stored) == ["node-r-pipeline", "node-r-serial"]
    for row in stored:
        assert_envelope(row["phone"], "555-R")
    await assert_never_reached(stack, "ORDER BY phone", "email LIKE")


async def test_named_statements_reused(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "named", 9105)
    assert got["named:hits"] == 200
    assert got["named:sample"] == [{"name": "node-p7", "phone": "555-P7", "credit": "1.75"}]
    assert got["named:fields"] == [["name", 25], ["phone", 25], ["credit", 1700]]
    stored = await raw.fetch(
        "SELECT email, phone, credit FROM customers WHERE business_id = 9105 ORDER BY id"
    )
    assert len(stored) == 200
    assert len({r["phone"] for r in stored}) == 200
    for row in stored:
        for value in row:
            assert_envelope(value, "555-P", "x.example")
    await assert_secrets_stayed_out(stack)


async def test_copy_from_stdin_with_copy_streams(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "copy", 9106)
    assert got["copy:rowcount"] == 500
    assert got["copy:search"] == [{"name": "node-c321", "phone": "555-C321", "credit": "321.25"}]
    assert got["copy:out"] == {"matches": True, "rows": 500}
    assert got["copy:bad_value"] == "22P02"
    assert got["copy:csv_out"] == (
        "name,email,credit\nnode-c0,nc0@copy.example,0.25\nnode-c1,nc1@copy.example,1.25\n"
    )
    assert got["copy:usable"] == 500  # nothing of the failed COPY was stored
    stored = await raw.fetch(
        "SELECT email, email_bidx, phone, credit FROM customers WHERE business_id = 9106"
    )
    assert len(stored) == 500
    for row in stored:
        for column in ("email", "phone", "credit"):
            assert_envelope(row[column], "copy.example", "555-C")
        assert row["email_bidx"] is not None
    await assert_secrets_stayed_out(stack)


async def test_values_pg_sends_are_read_as_postgres_reads_them(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    got = scenario(stack, "versus_postgres", 9107)
    results = got["versus:results"]
    assert isinstance(results, list)
    assert len(results) > 110
    assert sum("code" in r["postgres"] for r in results) > 20  # refusals are compared too
    # Malformed binary input is refused by both, not always with the same code
    # (Postgres: 08P01 for a short int4/uuid, XX000 for a jsonb version byte of 2;
    # pgseal: 22P03 for all of them).
    differ = [
        r
        for r in results
        if r["sealed"] != r["postgres"]
        and not (r["binary"] and "code" in r["sealed"] and "code" in r["postgres"])
    ]
    assert differ == [], "\n".join(map(str, differ))
    assert got["versus:reread"] == got["versus:reread_postgres"]
    # Postgres also reads these; pgseal refuses them, so nothing is stored.
    iso_only = got["versus:iso_only"]
    assert isinstance(iso_only, list)
    assert len(iso_only) == 5
    for case in iso_only:
        assert case["sealed"] == {"code": "22007"}, case
        assert "value" in case["postgres"], case
    count = await raw.fetchval("SELECT count(*) FROM typed WHERE business_id = 9107")
    assert count == len(got["versus:reread"])  # type: ignore[arg-type]
    for row in await raw.fetch("SELECT * FROM typed WHERE business_id = 9107"):
        for name, value in row.items():
            if name.startswith("c_") and name != "c_armored" and value is not None:
                assert_envelope(value)


async def test_pipelined_writes_pool_reads_and_cursor_chunks(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    got = scenario(stack, "streams", 9108)
    assert got["streams:pipelined"] == 300
    assert got["streams:pool"] is True
    assert got["streams:cursor_chunks"] == [37] * 8 + [4]
    assert got["streams:cursor_refused"] == "0A000"
    assert got["streams:multi"] == [["INSERT", []], ["SELECT", [{"phone": "555-Q-multi"}]]]
    assert got["streams:extended_literal"] == [{"name": "node-q5"}]
    stored = await raw.fetch("SELECT email, phone FROM customers WHERE business_id = 9108")
    assert len(stored) == 301
    for row in stored:
        assert_envelope(row["phone"], "555-Q")
        if row["email"] is not None:
            assert_envelope(row["email"], "x.example")
    await assert_never_reached(stack, "555-Q", "x.example")
