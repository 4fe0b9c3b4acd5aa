"""Rust's tokio-postgres through pgseal on protected columns: binary parameters
encoded by the ParameterDescription OIDs pgseal reports (the driver checks each
Rust type against them), binary results decoded by the RowDescription OIDs it
rewrites, named statements prepared and reused, concurrent queries pipelined on
one connection, COPY sent as Parse/Bind/Execute (the only way tokio-postgres
sends it). The Rust side (tests/rust/pgsealrs) reports what the driver saw;
every write is checked here in the raw tables too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg

from tests.encrypted.conftest import Stack, assert_never_reached
from tests.encrypted.test_golang import (
    LOGICAL_OIDS,
    REFUSED,
    TYPED_COLUMNS,
    assert_customers_sealed,
    assert_typed_sealed,
)
from tests.rust.rsbuild import rust_program
from tests.scenarios import run_scenario, sqlstate

__all__ = ["rust_program"]


def unique_prefix() -> str:
    return "rs" + os.urandom(4).hex()


def typed_row(p: str) -> dict[str, Any]:
    """A typed row as pgsealrs renders it (timestamptz in UTC, bytea in hex)."""
    return {
        "c_text": f"{p}-text ü",
        "c_varchar": f"{p}-vc",
        "c_int": "-2147483648",
        "c_bigint": "9223372036854775807",
        "c_smallint": "-32768",
        "c_numeric": "12345.678900",
        "c_bool": "true",
        "c_date": "2024-02-29",
        "c_ts": "2023-12-31 23:59:58.123456",
        "c_tstz": "2021-06-01T10:30:00.654321Z",
        "c_uuid": "6f1d3b1c-2b9a-4f3e-9d7a-0a1b2c3d4e5f",
        "c_jsonb": {"n": [1, 2], "secret": f"{p}-json"},
        "c_bytea": f"{p}-bytes\x00\xff".encode("latin-1").hex(),
        "c_armored": f"{p}-armour",
    }


def assert_log_has_none(stack: Stack, prefix: str) -> None:
    assert prefix not in stack.proxy.log_text(), "a Rust client's plaintext reached pgseal's log"


async def test_every_logical_type_in_binary(
    stack: Stack, raw: asyncpg.Connection, rust_program: Path
) -> None:
    tenant, p = 7201, unique_prefix()
    got = run_scenario(rust_program, "enc-typed", stack.dsn(), str(tenant), p)
    assert got["insert-oids"] == {"params": [23, *LOGICAL_OIDS], "fields": [23]}
    assert got["select-oids"] == {"params": [23, 23], "fields": LOGICAL_OIDS}
    assert len(got["ids"]) == 3
    for i in range(3):
        assert got[f"read-{i}"] == typed_row(f"{p}{i}")
    assert got["pipelined-reads"] == [typed_row(f"{p}{i}") for i in range(3)]
    assert got["insert-nulls"] == "ok"
    assert got["read-nulls"] == dict.fromkeys(TYPED_COLUMNS)
    assert got["update-returning"] == f"{p}-updated|0.50"
    # Numeric specials and extremes in binary, read back in binary and in text.
    big = "1" + "0" * 100
    for value in ("NaN", "Infinity", "-Infinity", "-0.000000000000000000001", big, "0", "-12.50"):
        assert got[f"numeric-{value}"] == f"{value}|{value}"
    # The simple protocol: results in text, the bytea in its hex form.
    row = typed_row(f"{p}0")
    assert got["simple-read"] == [
        [
            *(row[c] for c in TYPED_COLUMNS[:6]),
            "t",
            row["c_date"],
            row["c_ts"],
            "2021-06-01 10:30:00.654321+00",
            row["c_uuid"],
            f'{{"n": [1, 2], "secret": "{p}0-json"}}',
            "\\x" + row["c_bytea"],
            row["c_armored"],
        ]
    ]
    # Binary COPY of every logical type and of NULLs, sealed in the stream.
    assert got["copy-in"] == 2
    assert got["copy-read"] == [typed_row(f"{p}c"), dict.fromkeys(TYPED_COLUMNS)]
    assert got["copy-out"] == f"{p}0-text ü\t-2147483648\n"  # opened in the stream
    # 3 rows of every type and 1 copied, 2 of NULLs, 7 numerics.
    assert await assert_typed_sealed(raw, tenant, p) == (13, 4 * 14 + 7)
    assert_log_has_none(stack, p)


async def test_search_pipelines_refusals_and_copy_sealed_in_the_stream(
    stack: Stack, raw: asyncpg.Connection, rust_program: Path
) -> None:
    tenant, p = 7202, unique_prefix()
    got = run_scenario(rust_program, "enc-customers", stack.dsn(), str(tenant), p)
    assert got["insert-oids"] == {"params": [23, 25, 25, 25, 25, 1700], "fields": []}
    assert got["search-email"] == [f"{p}-n3|{p}-555-3"]  # normalized: trim, casefold
    assert got["search-tax-id"] == [f"{p}-n1|{p}-555-1"]
    assert got["search-tax-id-case"] == []
    assert got["search-email-any"] == [f"{p}-n0|{p}-555-0", f"{p}-n4|{p}-555-4"]
    assert got["search-tax-id-any"] == [f"{p}-n2|{p}-555-2", f"{p}-n3|{p}-555-3"]
    assert got["credit"] == "12.5"

    # 22 statements in flight on one connection, each with its own Sync: the
    # refused SELECT, the insert without a tenant and the duplicate fail alone.
    assert sqlstate(got["pipeline-5"]) == "0A000"
    assert got["pipeline-5"]["message"] == REFUSED
    assert sqlstate(got["pipeline-12"]) == "23505"
    assert sqlstate(got["pipeline-15"]) == "42501"
    assert [got[f"pipeline-{i}"] for i in range(22) if i not in (5, 12, 15)] == [1] * 19
    assert got["pipeline-rows"] == 19
    assert got["pipeline-search"] == [f"{p}-b7|{p}-b-555-7"]

    # COPY in text and in binary, sealed in the stream with blind indexes appended.
    assert got["copy-in-text"] == got["copy-in-binary"] == 100
    assert got["copy-search-text"] == [f"{p}-c17|{p}-c-555-17"]
    assert got["copy-search-binary"] == [f"{p}-d17|{p}-d-555-17"]
    assert got["copy-search-tax-id-any"] == [f"{p}-c20|{p}-c-555-20", f"{p}-d99|{p}-d-555-99"]
    assert got["copy-credit"] == ["3.75"]
    assert got["copy-null-emails"] == 20
    assert got["copy-out"] == f"{p}-c5\t{p}-c-555-5\n"
    assert got["copy-out-pipelined"] == [got["copy-out"], f"6.75\t{p}-d6@Example.org\n"]
    assert sqlstate(got["copy-without-tenant"]) == "42501"
    assert sqlstate(got["copy-unsupported-option"]) == "0A000"
    assert got["after-copy-refusals"] == 3
    # A table without protected columns.
    assert got["copy-plain"] == {
        "text": 2,
        "binary": 1,
        "out": f"{p}-plain\\t2\n{p}-plain-1\n{p}-plain-3\n",
    }

    for check in ("refused", "refused-again", "refused-simple"):
        assert sqlstate(got[check]) == "0A000"
        assert got[check]["message"] == REFUSED
    assert got["after-refused"] == 1
    assert got["after-refused-simple"] == [["2"]]
    # A portal read four rows at a time: b1, b10 .. b19 but for the two that failed.
    names = [f"{p}-b{n}|{p}-b-555-{n}" for n in [1, 10, 11, 13, 14, 16, 17, 18, 19]]
    assert got["portal-chunks"] == [names[:4], names[4:8], names[8:]]
    assert sqlstate(got["cancel-error"]) == "57014"
    assert got["cancel-request"] == "ok"
    assert got["cancel-then-query"] == f"{p}-555-0"
    assert got["tx-rows"] == 1  # the savepoint's insert rolled back
    assert got["total-rows"] == 5 + 19 + 200 + 1
    assert await assert_customers_sealed(raw, tenant, p) == 225
    # Before the raw query below, which names the markers itself.
    await assert_never_reached(stack, f"{p}-refused", f"{p}-bnotenant", f"{p}-notenant")
    refused_writes = await raw.fetchval(
        "SELECT count(*) FROM customers WHERE name IN ($1, $2)", f"{p}-bnotenant", f"{p}-notenant"
    )
    assert refused_writes == 0
    assert_log_has_none(stack, p)
