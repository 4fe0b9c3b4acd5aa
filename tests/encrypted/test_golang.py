"""Go's drivers through pgseal on protected columns: pgx v4 (binary parameters
encoded by the ParameterDescription OIDs pgseal reports, binary results decoded
by the RowDescription OIDs it rewrites, SendBatch, binary CopyFrom; with its
statement cache by name, in describe mode and evicting) and lib/pq (text format,
unnamed statements, pq.CopyIn). The Go side (tests/golang/pgsealgo) reports what
the driver saw; every write is checked here in the raw tables too."""

from __future__ import annotations

import decimal
import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached
from tests.golang.gobuild import go_program
from tests.scenarios import run_scenario, sqlstate

__all__ = ["go_program"]

TYPED_COLUMNS = [
    "c_text", "c_varchar", "c_int", "c_bigint", "c_smallint", "c_numeric", "c_bool",
    "c_date", "c_ts", "c_tstz", "c_uuid", "c_jsonb", "c_bytea", "c_armored",
]  # fmt: skip

#: The logical type OIDs of TYPED_COLUMNS (the physical columns are bytea, c_armored text).
LOGICAL_OIDS = [25, 1043, 23, 20, 21, 1700, 16, 1082, 1114, 1184, 2950, 3802, 17, 25]

#: pgx's statement handling: a named statement cache (the default), describe
#: only (unnamed statements, Parse carrying the OIDs pgseal reported) and a
#: cache of two that keeps evicting (DEALLOCATE through pgseal).
PGX_MODES = {
    "cache": {},
    "describe": {"statement_cache_mode": "describe"},
    "evicting": {"statement_cache_capacity": "2"},
}

REFUSED = "pgseal: ORDER BY on encrypted column public.customers.phone is not supported"


def unique_prefix() -> str:
    return "go" + os.urandom(4).hex()


def pgx_typed_row(p: str) -> dict[str, Any]:
    """A typed row as pgx renders it (pgtype's text form, timestamptz in UTC)."""
    return {
        "c_text": f"{p}-text ü",
        "c_varchar": f"{p}-vc",
        "c_int": "-2147483648",
        "c_bigint": "9223372036854775807",
        "c_smallint": "-32768",
        "c_numeric": "12345678900e-6",
        "c_bool": "t",
        "c_date": "2024-02-29",
        "c_ts": "2023-12-31 23:59:58.123456",
        "c_tstz": "2021-06-01T10:30:00.654321Z",
        "c_uuid": "6f1d3b1c-2b9a-4f3e-9d7a-0a1b2c3d4e5f",
        "c_jsonb": f'{{"n": [1, 2], "secret": "{p}-json"}}',
        "c_bytea": "\\x" + f"{p}-bytes\x00\xff".encode("latin-1").hex(),
        "c_armored": f"{p}-armour",
    }


async def assert_typed_sealed(
    raw: asyncpg.Connection, tenant: int, *prefixes: str
) -> tuple[int, int]:
    """Every non-NULL typed value of ``tenant`` is an envelope: (rows, values) stored."""
    rows = await raw.fetch(
        f"SELECT {', '.join(TYPED_COLUMNS)} FROM typed WHERE business_id = $1", tenant
    )
    for row in rows:
        for column in TYPED_COLUMNS[:-1]:
            if row[column] is not None:
                assert_envelope(row[column], *prefixes)
        armored = row["c_armored"]
        if armored is not None:
            assert armored.startswith("pgseal1:")
            for p in prefixes:
                assert p not in armored
    sealed = sum(row[c] is not None for row in rows for c in TYPED_COLUMNS)
    return len(rows), sealed


async def assert_customers_sealed(raw: asyncpg.Connection, tenant: int, prefix: str) -> int:
    rows = await raw.fetch(
        "SELECT name, email, email_bidx, tax_id, tax_id_bidx, phone, credit FROM customers"
        " WHERE business_id = $1",
        tenant,
    )
    for row in rows:
        assert row["name"].startswith(prefix)
        assert_envelope(row["phone"], prefix)
        for column in ("email", "tax_id"):
            if row[column] is None:
                assert row[f"{column}_bidx"] is None
            else:
                assert_envelope(row[column], prefix)
                assert row[f"{column}_bidx"] is not None
                assert prefix.encode() not in row[f"{column}_bidx"]
        if row["credit"] is not None:
            assert_envelope(row["credit"])
    return len(rows)


def assert_log_has_none(stack: Stack, prefix: str) -> None:
    assert prefix not in stack.proxy.log_text(), "a Go client's plaintext reached pgseal's log"


@pytest.mark.parametrize("mode", PGX_MODES)
async def test_pgx_every_logical_type(
    stack: Stack, raw: asyncpg.Connection, go_program: Path, mode: str
) -> None:
    tenant, p = 7101, unique_prefix()
    got = run_scenario(go_program, "pgx-enc", stack.dsn(**PGX_MODES[mode]), "typed", str(tenant), p)
    # pgx encodes binary parameters and decodes binary results by these OIDs.
    assert got["insert-oids"] == {"params": [23, *LOGICAL_OIDS], "fields": [23]}
    assert got["select-oids"] == {"params": [23, 23], "fields": LOGICAL_OIDS}
    assert got["ids"] is not None
    assert len(got["ids"]) == 3
    for i in range(3):
        assert got[f"read-{i}"] == pgx_typed_row(f"{p}{i}")
    assert got["insert-nulls"] == "ok"
    assert got["read-nulls"] == dict.fromkeys(TYPED_COLUMNS)
    # Binary COPY of every logical type and of NULLs, sealed in the stream.
    assert got["copy-from"] == 2
    assert got["copy-read"] == [pgx_typed_row(f"{p}c"), dict.fromkeys(TYPED_COLUMNS)]
    assert got["copy-to"] == f"{p}0-text ü\t-2147483648\n"  # opened in the stream
    assert got["update-returning"] == f"{p}-updated|5e-1"
    # Numeric specials and extremes in binary, read back in binary and in text.
    assert got["numeric-NaN"] == "NaN|NaN"
    assert got["numeric-Infinity"] == "Infinity|Infinity"
    assert got["numeric--Infinity"] == "-Infinity|-Infinity"
    assert got["numeric--0.000000000000000000001"] == "-1e-21|-1e-21"
    assert got["numeric-1" + "0" * 100] == "1e100|1e100"
    # The simple protocol: values inlined as literals, results in text.
    assert got["simple-read"] == got["simple-written-binary-read"] == pgx_typed_row(f"{p}s")
    assert await assert_typed_sealed(raw, tenant, p) == (12, 5 * 14 + 5)
    assert_log_has_none(stack, p)


@pytest.mark.parametrize("mode", PGX_MODES)
async def test_pgx_search_batch_copy_and_refusal(
    stack: Stack, raw: asyncpg.Connection, go_program: Path, mode: str
) -> None:
    tenant, p = 7102, unique_prefix()
    got = run_scenario(
        go_program, "pgx-enc", stack.dsn(**PGX_MODES[mode]), "customers", str(tenant), p
    )
    assert got["search-email"] == [f"{p}-n3|{p}-555-3"]  # normalized: trim, casefold
    assert got["search-tax-id"] == [f"{p}-n1|{p}-555-1"]
    assert got["search-tax-id-case"] == []
    assert got["search-email-any"] == [f"{p}-n0|{p}-555-0", f"{p}-n4|{p}-555-4"]
    assert got["search-tax-id-any"] == [f"{p}-n2|{p}-555-2", f"{p}-n3|{p}-555-3"]
    assert decimal.Decimal(got["credit"]) == decimal.Decimal("12.5")
    assert got["search-with-notification"] == [f"{p}-n1|{p}-555-1"]
    assert got["notification"] == "enc-payload"
    assert got["batch-parameter-status"] == [f"{p}-555-0", "go-enc", f"{p}-555-4"]

    # pgx describes every statement of a batch first: the refusal comes back
    # then, for every result of the batch, and none of its inserts runs.
    for i in range(21):
        assert sqlstate(got[f"batch-refused-{i}"]) == "0A000"
        assert got[f"batch-refused-{i}"]["message"] == REFUSED
    assert got["batch-refused-rows"] == 0
    assert got["batch-ok-search"] == f"{p}-b7|{p}-b-555-7"
    assert got["batch-ok-close"] == "ok"
    assert got["batch-ok-rows"] == 20
    # An error at execution mid-batch: skipped to the Sync and rolled back, as Postgres does.
    assert got["batch-duplicate-0"] == got["batch-duplicate-1"] == "INSERT 0 1"
    assert sqlstate(got["batch-duplicate-2"]) == sqlstate(got["batch-duplicate-3"]) == "23505"
    assert got["batch-duplicate-rows"] == 0
    # The simple protocol's batch is one Query: refused whole, nothing of it runs.
    for i in range(3):
        assert sqlstate(got[f"simple-batch-refused-{i}"]) == "0A000"
    assert got["simple-batch-refused-rows"] == 0
    assert got["simple-batch-ok-0"] == got["simple-batch-ok-1"] == "INSERT 0 1"
    assert got["simple-batch-ok-rows"] == 2

    assert got["copy-from"] == 300
    assert got["copy-search-email"] == [f"{p}-c17|{p}-c-555-17"]
    assert got["copy-search-tax-id-any"] == [f"{p}-c20|{p}-c-555-20", f"{p}-c299|{p}-c-555-299"]
    assert got["copy-null-emails"] == 30

    for check in ("refused-0", "refused-1", "refused-simple"):
        assert sqlstate(got[check]) == "0A000"
    assert got["after-refused"] == 1
    assert got["after-refused-simple"] == 2
    reused = mode != "describe"  # pgx 4.15 cannot run a statement by name in describe mode
    assert [got.get(f"reused-name-{i}") for i in range(3)] == [("ok" if reused else None)] * 3
    assert got["total-rows"] == 5 + 20 + 2 + 300 + reused
    assert await assert_customers_sealed(raw, tenant, p) == 327 + reused
    plain = await raw.fetch("SELECT v FROM plain WHERE id = $1 ORDER BY v", tenant)
    assert [r["v"] for r in plain] == ([f"{p}-plain-1", f"{p}-plain-2"] if reused else [])
    await assert_never_reached(stack, f"{p}-refused")
    assert_log_has_none(stack, p)


@pytest.mark.parametrize("binary_parameters", ["no", "yes"])
async def test_pq_inserts_reads_search_and_copy_in(
    stack: Stack, raw: asyncpg.Connection, go_program: Path, binary_parameters: str
) -> None:
    """lib/pq: text parameters and results; with binary_parameters=yes it sends
    []byte in binary and skips the Describe before an unnamed statement's Bind."""
    tenant, p = 7103, unique_prefix()
    dsn = stack.dsn(sslmode="disable", binary_parameters=binary_parameters)
    got = run_scenario(go_program, "pq-enc", dsn, str(tenant), p)
    for i in range(2):  # lib/pq parses text results by the OIDs pgseal rewrote
        assert got[f"read-{i}"] == {
            **pgx_typed_row(f"{p}{i}"),
            "c_numeric": "12345.678900",
            "c_bool": "true",
            "c_date": "2024-02-29T00:00:00Z",
            "c_ts": "2023-12-31T23:59:58.123456Z",
            "c_bytea": f"{p}{i}-bytes\x00\xff".encode("latin-1").hex(),
        }
    assert got["insert-nulls"] == "ok"
    assert got["read-2"] == dict.fromkeys(TYPED_COLUMNS)
    assert got["search-email"] == [f"{p}-n2|{p}-555-2"]
    assert got["search-email-any"] == [f"{p}-n1|{p}-555-1", f"{p}-n3|{p}-555-3"]
    assert got["search-tax-id-in"] == [f"{p}-n0|{p}-555-0", f"{p}-n3|{p}-555-3"]
    assert got["credit"] == "11.5"
    assert got["copy-in"] == got["copy-commit"] == "ok"
    assert got["copy-search"] == [f"{p}-c123|{p}-c-555\t123"]
    assert sqlstate(got["copy-bad-value"]) == "22P02"
    assert "public.customers.credit" in got["copy-bad-value"]["message"]
    assert "not-a-number" not in got["copy-bad-value"]["message"]
    assert got["copy-bad-rollback"] == "ok"
    assert sqlstate(got["refused"]) == "0A000"
    assert got["refused"]["message"] == REFUSED
    assert got["after-refused"] == 204
    assert await assert_typed_sealed(raw, 7103, p) == (3, 2 * 14)
    assert await assert_customers_sealed(raw, tenant, p) == 204
    await assert_never_reached(stack, f"{p}-refused")
    assert_log_has_none(stack, p)


async def test_pgx_pool_of_goroutines_for_two_tenants(
    stack: Stack, raw: asyncpg.Connection, go_program: Path
) -> None:
    tenant, p = 7104, unique_prefix()
    got = run_scenario(go_program, "pgx-enc", stack.dsn(), "pool", str(tenant), p)
    assert got["pool-errors"] == ""
    assert got["pool-found"] == [25] * 8
    assert got["pool-tenant-search"] == 1  # g0 wrote for 7104, g1 for 7105
    assert await assert_customers_sealed(raw, tenant, p) == 100
    assert await assert_customers_sealed(raw, tenant + 1, p) == 100
    assert_log_has_none(stack, p)


async def test_pgx_copy_without_tenant_copy_to_binary_and_multi_statement(
    stack: Stack, raw: asyncpg.Connection, go_program: Path
) -> None:
    tenant, p = 7106, unique_prefix()
    got = run_scenario(go_program, "pgx-enc", stack.dsn(), "edges", str(tenant), p)
    # No business_id in the COPY: pgseal cannot pick a key, so nothing is written.
    assert sqlstate(got["copy-without-tenant"]) == "42501"
    assert got["after-copy-without-tenant"] == 1
    assert (
        await raw.fetchval("SELECT count(*) FROM customers WHERE name = $1", f"{p}-notenant") == 0
    )
    # COPY TO in binary: every phone opened in the stream.
    assert got["copy-to-binary"] == {"tag": "COPY 3", "phones": 3}
    assert got["multi-statement"] == [[f"{p}-e-555-2"], ["42"], [f"{p}-e0", f"{p}-e-555-0"]]
    assert await assert_customers_sealed(raw, tenant, p) == 3
    assert_log_has_none(stack, p)
