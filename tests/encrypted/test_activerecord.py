"""Rails' ActiveRecord 6.1 (postgresql adapter over the pg gem) through pgseal on
protected columns: the scenarios of tests/ruby/activerecord.rb.

AR runs its own catalog queries on connect and per table; it takes column types
from the catalog, where protected columns are ``bytea``, so the models declare
the logical type of each (``attribute :phone, :string``). Each test runs twice:
with AR's prepared statements (named a1, a2 ... for SELECTs, unnamed for writes)
and the session tenant set by AR's ``variables`` (``SET SESSION pgseal.tenant TO
'61'`` on connect), and with ``prepared_statements: false`` (values quoted into
the SQL) and the tenant as the startup option ``-c pgseal.tenant=61``. After
each write the raw columns hold envelopes, and no plaintext reached Postgres.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import asyncpg
import pytest

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached
from tests.ruby.conftest import pg_env, run_ruby

TENANT = 61
Checks = dict[str, object]


@dataclass(frozen=True)
class ActiveRecordRun:
    """Runs scenarios of tests/ruby/activerecord.rb against the package's pgseal."""

    stack: Stack
    prepared: bool
    tag: str

    async def __call__(self, scenario: str) -> Checks:
        env = pg_env(
            "127.0.0.1",
            self.stack.proxy.port,
            "postgres",
            "postgres",
            AR_TENANT=str(TENANT),
            AR_PREPARED="true" if self.prepared else "false",
            AR_TENANT_VIA="variables" if self.prepared else "options",
            RUBY_TAG=self.tag,
        )
        return await asyncio.to_thread(run_ruby, "activerecord.rb", scenario, env)


@pytest.fixture(params=[True, False], ids=["prepared-variables", "quoted-options"])
def ar(request: pytest.FixtureRequest, stack: Stack, raw: asyncpg.Connection) -> ActiveRecordRun:
    return ActiveRecordRun(stack, prepared=request.param, tag=secrets.token_hex(4))


async def test_catalog_queries_on_connect(ar: ActiveRecordRun) -> None:
    checks = await ar("catalog")
    assert checks["catalog:tables"] == [True, True, True]
    assert checks["catalog:primary_key"] == ["id", "id", "id"]
    # The catalog's view (blind-index columns ignored by the model) ...
    assert checks["catalog:columns"] == [
        ["id", "integer"],
        ["business_id", "integer"],
        ["name", "text"],
        ["email", "bytea"],
        ["tax_id", "bytea"],
        ["phone", "bytea"],
        ["credit", "bytea"],
    ]
    # ... and the model's, by its declarations.
    assert checks["catalog:attribute_types"] == ["string", "decimal"]
    assert checks["catalog:indexes"] == [[["business_id", "name"], True]]
    assert checks["catalog:tenant"] == str(TENANT)


async def test_create_find_and_associations(
    ar: ActiveRecordRun, stack: Stack, raw: asyncpg.Connection
) -> None:
    tag = ar.tag
    checks = await ar("crud")
    assert checks["crud:find"] == [
        ["String", f"ar-ann-{tag}"],
        ["String", f"  Ann.AR-{tag}@Example.COM "],
        ["String", f"ARTAX-{tag}-1"],
        ["String", f"555-AR-{tag}"],
        ["BigDecimal", "1234.56"],
    ]
    assert checks["crud:find_by_email"] is True  # trim + casefold
    assert checks["crud:find_by_none"] is None
    assert checks["crud:where_in"] == [f"ar-ann-{tag}"]
    assert checks["crud:where_not"] == [f"ar-ann2-{tag}"]
    assert checks["crud:nil"] is False
    notes = [
        [f"ar note a {tag}", ["BigDecimal", "10.5"]],
        [f"ar note b {tag}", ["BigDecimal", "2.0"]],
    ]
    assert checks["crud:includes"] == [[f"555-AR-{tag}", notes]]
    assert checks["crud:belongs_to"] == [f"  Ann.AR-{tag}@Example.COM "] * 2
    assert checks["crud:joins"] == [[f"555-AR-{tag}", f"ar note b {tag}"]]
    assert checks["crud:count"] == [1, 2]
    rows = await raw.fetch(
        "SELECT name, email, email_bidx, tax_id, tax_id_bidx, phone, credit FROM customers"
        " WHERE business_id = $1 ORDER BY id",
        TENANT,
    )
    assert [r["name"] for r in rows] == [f"ar-ann-{tag}", f"ar-ann2-{tag}"]
    ann = rows[0]
    assert_envelope(ann["email"], f"Ann.AR-{tag}", f"ann.ar-{tag}")
    assert_envelope(ann["tax_id"], f"ARTAX-{tag}")
    assert_envelope(ann["phone"], f"555-AR-{tag}")
    assert_envelope(ann["credit"], "1234.56")
    assert ann["email_bidx"] is not None
    assert ann["tax_id_bidx"] is not None
    assert ann["tax_id_bidx"] != rows[1]["tax_id_bidx"]
    invoices = await raw.fetch("SELECT notes, total FROM invoices WHERE business_id = $1", TENANT)
    assert len(invoices) == 2
    for invoice in invoices:
        assert_envelope(invoice["notes"], f"ar note {'a' if invoice['total'] > 2 else 'b'} {tag}")
    await assert_never_reached(stack, f"555-AR-{tag}", f"ARTAX-{tag}", f"ar note a {tag}")


async def test_update_by_primary_key_with_the_session_tenant(
    ar: ActiveRecordRun, stack: Stack, raw: asyncpg.Connection
) -> None:
    tag = ar.tag
    # UPDATE "customers" SET "phone" = $1 ... WHERE "customers"."id" = $2: no
    # tenant in the statement, the session's from variables / options.
    checks = await ar("update")
    assert checks["update:reload"] == [
        ["String", f"555-ARB-NEW-{tag}"],
        ["String", f"Bob-{tag}@ar"],
        ["BigDecimal", "-0.5"],
    ]
    assert checks["update:find_by"] is True
    assert checks["update:update_all"] == [1, True]
    row = await raw.fetchrow(
        "SELECT business_id, phone, email, credit, tax_id FROM customers WHERE id = $1",
        checks["update:id"],
    )
    assert row is not None
    assert row["business_id"] == TENANT
    assert_envelope(row["phone"], f"555-ARB-NEW-{tag}")
    assert_envelope(row["email"], f"Bob-{tag}")
    assert_envelope(row["credit"], "-0.5")
    assert_envelope(row["tax_id"], f"ARTAX-{tag}-bob")
    await assert_never_reached(stack, f"555-ARB-NEW-{tag}", f"ARTAX-{tag}-bob")


async def test_insert_all_and_upsert_all(
    ar: ActiveRecordRun, stack: Stack, raw: asyncpg.Connection
) -> None:
    """insert_all: one INSERT ... VALUES (...), ... ON CONFLICT DO NOTHING RETURNING;
    upsert_all: ON CONFLICT (business_id, name) DO UPDATE SET col = excluded.col,
    and by primary key ON CONFLICT ("id") DO UPDATE SET "business_id" = excluded.
    "business_id", ... (every column but the key)."""
    tag = ar.tag
    checks = await ar("bulk")
    assert checks["bulk:insert_all"] == [f"555-ARK-{tag}-{i}" for i in range(3)]
    assert checks["bulk:find"] == f"555-ARK-{tag}-1"
    assert checks["bulk:upsert_all"] == [
        [f"ar-bulk-{tag}-1", f"555-ARK-{tag}-up"],
        [f"ar-bulk-{tag}-9", f"555-ARK-{tag}-9"],
    ]
    assert checks["bulk:after"] == [
        [f"ar-bulk-{tag}-0", f"555-ARK-{tag}-0", "0.0"],
        [f"ar-bulk-{tag}-1", f"555-ARK-{tag}-up", "7.0"],
        [f"ar-bulk-{tag}-2", f"555-ARK-{tag}-2", "2.0"],
        [f"ar-bulk-{tag}-9", f"555-ARK-{tag}-9", "9.0"],
    ]
    # upsert_all by primary key sets business_id = excluded.business_id as well:
    # the business's own row is updated, another business's is left alone.
    assert checks["bulk:upsert_by_id"] == [True, f"555-ARK-{tag}-byid"]
    other_check = checks["bulk:other"]
    assert isinstance(other_check, list)
    other_id, other_view = other_check
    assert other_view == [[TENANT + 1, f"ar-bulk-other-{tag}", None]]
    other = await raw.fetchrow(
        "SELECT business_id, name, phone FROM customers WHERE id = $1", other_id
    )
    assert other is not None
    assert tuple(other) == (TENANT + 1, f"ar-bulk-other-{tag}", None)
    rows = await raw.fetch(
        "SELECT phone, email, email_bidx, credit FROM customers WHERE business_id = $1", TENANT
    )
    assert len(rows) == 4
    for row in rows:
        assert_envelope(row["phone"], f"555-ARK-{tag}")
        assert_envelope(row["email"], f"-{tag}@ar")
        assert_envelope(row["credit"])
        assert row["email_bidx"] is not None
    await assert_never_reached(stack, f"555-ARK-{tag}", f"-{tag}@ar")


async def test_every_logical_type(ar: ActiveRecordRun, raw: asyncpg.Connection) -> None:
    tag = ar.tag
    checks = await ar("typed")
    assert checks["typed:values"] == {
        "c_text": ["String", f"ar text ✓ it's {tag}"],
        "c_varchar": ["String", "ar-vc"],
        "c_int": ["Integer", -42],
        "c_bigint": ["Integer", 9007199254740993],
        "c_smallint": ["Integer", 7],
        "c_numeric": ["BigDecimal", "12345.6789"],
        "c_bool": ["TrueClass", True],
        "c_date": ["Date", "2024-02-29"],
        "c_ts": ["Time", "2024-02-29 12:34:56.789000 UTC"],
        "c_tstz": ["Time", "1999-12-31 23:59:59.001000 UTC"],
        "c_uuid": ["String", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
        "c_jsonb": ["Hash", {"ar": ["x", 1], "nested": {"ü": None}}],
        "c_bytea": ["String", "0001feff5c"],  # a binary String, shown in hex
        "c_armored": ["String", f"ar armour {tag}"],
    }
    assert checks["typed:nulls"] == [None]
    ids = checks["typed:ids"]
    assert isinstance(ids, list)
    full_id, empty_id = ids
    full = await raw.fetchrow("SELECT * FROM typed WHERE id = $1", full_id)
    assert full is not None
    for column in ("c_int", "c_bigint", "c_numeric", "c_bool", "c_ts", "c_jsonb", "c_bytea"):
        assert_envelope(full[column])
    assert_envelope(full["c_text"], f"ar text ✓ it's {tag}")
    assert isinstance(full["c_armored"], str)
    assert f"ar armour {tag}" not in full["c_armored"]
    empty = await raw.fetchrow("SELECT * FROM typed WHERE id = $1", empty_id)
    assert empty is not None
    assert [v for k, v in empty.items() if k.startswith("c_")] == [None] * 14


async def test_transaction_rolled_back_after_an_error(
    ar: ActiveRecordRun, raw: asyncpg.Connection
) -> None:
    checks = await ar("transaction")
    assert checks["transaction:error"] == "23505"  # ActiveRecord::RecordNotUnique
    assert checks["transaction:kept"] == 0
    assert checks["transaction:rolled_back"] == 0
    # The SAVEPOINT's update rolled back, the outer insert kept.
    assert checks["transaction:savepoint"] == [f"555-ARTX4-{ar.tag}"]
    (phone,) = [r["phone"] for r in await raw.fetch("SELECT phone FROM customers")]
    assert_envelope(phone, f"555-ARTX4-{ar.tag}")


async def test_refused_query_is_statement_invalid(ar: ActiveRecordRun, stack: Stack) -> None:
    tag = ar.tag
    checks = await ar("refused")
    for kind, operation in (("order", "ORDER BY"), ("like", "LIKE")):
        refused = checks[f"refused:{kind}"]
        assert isinstance(refused, dict), kind
        assert refused["class"] == "ActiveRecord::StatementInvalid"
        assert refused["cause"] == "PG::FeatureNotSupported"
        assert refused["sqlstate"] == "0A000"
        assert (
            f"pgseal: {operation} on encrypted column public.customers.phone" in refused["message"]
        )
    assert checks["refused:after"] == [f"555-ARR-{tag}"]
    # As any error in a transaction: aborted (25P02), rolled back with its update.
    assert checks["refused:in_transaction"] == ["0A000", "25P02", [f"555-ARR-{tag}"]]
    # Every connection of the pool refuses (ILIKE on email) and goes on working.
    assert checks["refused:pool"] == [["0A000", [f"555-ARR-{tag}"]]] * 3
    await assert_never_reached(stack, f"555-ARR2-{tag}")


async def test_destroy(ar: ActiveRecordRun, raw: asyncpg.Connection) -> None:
    checks = await ar("destroy")
    assert checks["destroy:gone"] == [False, 0]
    assert checks["destroy:by_email"] == 1  # DELETE ... WHERE email_bidx = ...
    assert checks["destroy:dave_gone"] is False
    assert await raw.fetchval("SELECT count(*) FROM customers") == 0
    assert await raw.fetchval("SELECT count(*) FROM invoices") == 0


async def test_everyday_finders_locks_and_sessions(
    ar: ActiveRecordRun, raw: asyncpg.Connection
) -> None:
    tag = ar.tag
    checks = await ar("everyday")
    # find_or_create_by! (normalised email), create_or_find_by! (SAVEPOINT + 23505)
    assert checks["everyday:find_or_create"] == [True, True, f"carol-{tag}@ar"]
    assert checks["everyday:unique_email"] is False  # the uniqueness validation's SELECT 1
    assert checks["everyday:eager_load"] == [
        [f"  Ann.AR-{tag}@Example.COM ", [f"ar everyday {tag}"]]
    ]  # LEFT OUTER JOIN with AR's t0_r0 ... aliases
    assert checks["everyday:with_lock"] == f"555-AR-{tag}"
    assert checks["everyday:or"] == [f"ar-ann-{tag}", f"ar-carol-{tag}"]
    assert checks["everyday:first_last"] == [True, True]
    assert checks["everyday:set_local"] == [TENANT + 100]
    assert checks["everyday:reset"] == TENANT
    rows = await raw.fetch("SELECT business_id, name, phone FROM customers ORDER BY id")
    assert [(r["business_id"], r["name"]) for r in rows] == [
        (TENANT, f"ar-ann-{tag}"),
        (TENANT, f"ar-carol-{tag}"),
        (TENANT + 100, f"ar-local-{tag}"),
        (TENANT, f"ar-reset-{tag}"),
    ]
    assert_envelope(rows[2]["phone"], f"555-ARL-{tag}")
    assert_envelope(rows[3]["phone"], f"555-ARS-{tag}")


async def test_undeclared_types_fail_closed(ar: ActiveRecordRun, raw: asyncpg.Connection) -> None:
    """A model that does not declare its protected columns' types takes them for
    bytea: a numeric's text goes as a binary bytea parameter (no binary numeric,
    22P03) or as a hex bytea literal (no numeric text, 22P02). Refused either way."""
    checks = await ar("undeclared")
    assert checks["undeclared:types"] == ["binary", "binary"]
    refused = checks["undeclared:credit"]
    assert isinstance(refused, dict)
    assert refused["sqlstate"] == ("22P03" if ar.prepared else "22P02")
    assert (
        "pgseal: invalid value for encrypted column public.customers.credit" in refused["message"]
    )
    assert "12.5" not in refused["message"]
    assert checks["undeclared:after"] == 0
    assert await raw.fetchval("SELECT count(*) FROM customers") == 0
