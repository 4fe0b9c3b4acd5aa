"""The ruby pg gem on protected columns (tests/ruby/pg_encrypted.rb): binary
results byte for byte as Postgres encodes the same values, binary parameters
with type OIDs, PG::BasicTypeMapForResults typing opened values by the OIDs
pgseal rewrites, COPY in (sealed, blind-indexed) and out (opened)."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached
from tests.ruby.conftest import pg_env, run_ruby

TENANT = 71
COLUMNS = [
    "c_text",
    "c_int",
    "c_bigint",
    "c_smallint",
    "c_numeric",
    "c_bool",
    "c_date",
    "c_ts",
    "c_tstz",
    "c_uuid",
    "c_jsonb",
    "c_bytea",
]


async def _run(stack: Stack, tag: str) -> dict[str, object]:
    env = pg_env(
        "127.0.0.1", stack.proxy.port, "postgres", "postgres", PG_TENANT=str(TENANT), RUBY_TAG=tag
    )
    return await asyncio.to_thread(run_ruby, "pg_encrypted.rb", "all", env)


async def test_pg_gem_on_protected_columns(stack: Stack, raw: asyncpg.Connection) -> None:
    tag = secrets.token_hex(4)
    checks = await _run(stack, tag)
    assert checks["binary:types"] is True
    assert checks["binary:values"] == [[name, True] for name in COLUMNS]
    assert checks["binary_params:row"] == [
        "-7",
        "\\x0001feff" + tag.encode().hex(),
        f"pg binary text {tag}",
    ]
    assert checks["type_map:classes"] == {
        "c_text": "String",
        "c_int": "Integer",
        "c_bigint": "Integer",
        "c_smallint": "Integer",
        "c_numeric": "BigDecimal",
        "c_bool": "TrueClass",
        "c_date": "Date",
        "c_ts": "Time",
        "c_tstz": "Time",
        "c_uuid": "String",
        "c_jsonb": "Hash",
        "c_bytea": "String",
    }
    assert checks["type_map:values"] == {
        "c_text": f"pg text ✓ {tag}",
        "c_int": -42,
        "c_bigint": 9007199254740993,
        "c_smallint": 7,
        "c_numeric": "12345.6789",
        "c_bool": True,
        "c_date": "2024-02-29",
        "c_ts": "2024-02-29 12:34:56.789",
        "c_tstz": "1999-12-31 23:59:59.001",
        "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "c_jsonb": {"pg": [1, "x"]},
        "c_bytea": "0001feff",
    }
    assert checks["copy:search"] == [[f"pg-copy-{tag}-7"]]
    assert checks["copy:out"] == [
        [f"pg-copy-{tag}-{i}", f"555-PGC-{tag}-{i}"] for i in (1, *range(10, 20))
    ]
    assert checks["copy:count"] == 20
    typed = await raw.fetch("SELECT * FROM typed WHERE business_id = $1", TENANT)
    assert len(typed) == 3  # binary, binary_params, type_map
    for row in typed:
        assert_envelope(row["c_int"])
        assert_envelope(row["c_text"], f"pg text ✓ {tag}", f"pg binary text {tag}")
        assert_envelope(row["c_bytea"], tag)
    copied = await raw.fetch(
        "SELECT phone, email, email_bidx FROM customers WHERE business_id = $1", TENANT
    )
    assert len(copied) == 20
    for row in copied:
        assert_envelope(row["phone"], f"555-PGC-{tag}")
        assert_envelope(row["email"], f"-{tag}@PG")
        assert row["email_bidx"] is not None
    # (The TYPED values go to Postgres on purpose, in the query that gives their
    # binary encodings; these reach it only through protected columns.)
    await assert_never_reached(stack, f"pg binary text {tag}", f"555-PGC-{tag}", f"-{tag}@PG")
