"""Sequelize 6 and TypeORM 0.3 (both on node-postgres) through pgseal on protected columns.

The ORMs send their own SQL: quoted names, table aliases (``AS "Customer"`` and
bare ``"Customer"``), ``LIMIT``, trailing semicolons, Sequelize's literals inlined
in multi-row ``VALUES`` and ``IN (...)`` lists, TypeORM's ``START TRANSACTION`` and
``DISTINCT`` subquery for a limited join, and upserts that set every column on
conflict. The models map the existing tables (nothing syncs); the app's tenant is a
startup option (``-c pgseal.tenant=N``), so UPDATE/DELETE name only the primary key.
Each test runs one scenario of tests/node/orm_sequelize.js or orm_typeorm.js,
asserts on what the ORM returned, then reads the raw rows directly: envelopes under
the row's own business key, blind indexes, no plaintext anywhere.
"""

from __future__ import annotations

import asyncpg
import pytest

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached
from tests.node.conftest import NODE_DIR, pg_env, run_node_script

#: Plaintexts the scenarios write into protected columns only.
SECRETS = (
    "Seq.example",
    "seq.example",
    "SEQ.example",
    "555-SQ",
    "SQTAX",
    "sq note",
    "sq text",
    "sq armour",
    "Tor.example",
    "tor.example",
    "TOR.example",
    "555-TO",
    "TOTAX",
    "tor-note",
    "tor-text",
    "tor-armour",
)
CUSTOMER_SEALED = ("email", "tax_id", "phone", "credit")
ORDER_BY_PHONE = {
    "code": "0A000",
    "message": "pgseal: ORDER BY on encrypted column public.customers.phone is not supported",
}
REFUSED = [
    ORDER_BY_PHONE,
    {
        "code": "0A000",
        "message": "pgseal: LIKE on encrypted column public.customers.email is not supported",
    },
    {
        "code": "0A000",
        "message": "pgseal: range comparison (>) on encrypted column public.customers.credit"
        " is not supported",
    },
    {
        "code": "0A000",
        "message": "pgseal: equality (=) on encrypted column public.customers.phone"
        " is not supported",
    },
]
NO_TENANT = {
    "code": "42501",
    "message": "pgseal: cannot tell which business owns this write to public.customers.phone",
}


def scenario(stack: Stack, orm: str, name: str, tenant: int) -> dict[str, object]:
    for package in (orm, "reflect-metadata"):
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(
                f"tests/node/node_modules/{package} is missing: run `npm ci --prefix tests/node`"
            )
    env = pg_env("127.0.0.1", stack.proxy.port, "postgres", "postgres")
    return run_node_script(f"orm_{orm}.js", [str(tenant), name], env)


async def sealed_customers(raw: asyncpg.Connection, tenant: int) -> dict[str, list[str]]:
    """The raw customers of ``tenant`` by name, each with the protected columns that
    hold a value. Every value is an envelope under that business's key holding none
    of the plaintexts; a searchable column has a blind index exactly when it has a
    value."""
    rows = await raw.fetch(
        "SELECT name, email, email_bidx, tax_id, tax_id_bidx, phone, credit FROM customers"
        " WHERE business_id = $1",
        tenant,
    )
    filled: dict[str, list[str]] = {}
    for row in rows:
        columns = [c for c in CUSTOMER_SEALED if row[c] is not None]
        await assert_sealed_for(raw, tenant, *(row[c] for c in columns))
        assert (row["email_bidx"] is None) == (row["email"] is None), row["name"]
        assert (row["tax_id_bidx"] is None) == (row["tax_id"] is None), row["name"]
        filled[row["name"]] = columns
    return filled


async def assert_sealed_for(raw: asyncpg.Connection, tenant: int, *values: bytes) -> None:
    """Each value is an envelope with no plaintext, sealed under a key of ``tenant``."""
    for value in values:
        assert_envelope(value, *SECRETS)
    key_ids = sorted({int.from_bytes(v[1:9], "big") for v in values})
    owners = await raw.fetch(
        "SELECT key_id, tenant FROM pgseal.keys WHERE key_id = ANY($1::bigint[])", key_ids
    )
    assert sorted(r["key_id"] for r in owners) == key_ids
    assert {r["tenant"] for r in owners} <= {str(tenant)}


async def assert_secrets_stayed_out(stack: Stack, raw: asyncpg.Connection) -> None:
    await assert_never_reached(stack, *SECRETS)
    log = stack.proxy.log_text()
    for secret in SECRETS:
        assert secret not in log, f"{secret!r} reached pgseal's log"
    # nothing was written under another business
    assert await raw.fetchval("SELECT count(DISTINCT business_id) FROM customers") <= 1


def typed_rows(orm: str) -> list[dict[str, object]]:
    """What each ORM's scenario reads back from ``typed``: its own value mapping."""
    tag = {"sequelize": "sq", "typeorm": "to"}[orm]
    text, armour = {"sequelize": ("sq text", "sq armour"), "typeorm": ("tor-text", "tor-armour")}[
        orm
    ]
    first: dict[str, object] = {
        "c_text": f"{text} ✓",
        "c_varchar": f"{tag}-vc",
        "c_int": -42,
        "c_bigint": "9007199254740993",  # both map bigint to a string
        "c_smallint": 7,
        "c_numeric": "12345.678900",
        "c_bool": True,
        "c_date": "2024-02-29",  # a date stays a string in both
        "c_ts": "2024-02-29T12:34:56.789Z",
        "c_tstz": "1999-12-31T23:59:59.001Z",
        "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "c_jsonb": {tag: ["x", 1], "nested": {"ü": None}},
        "c_bytea": "hex:000102feff5c",
        "c_armored": armour,
    }
    empty = dict.fromkeys(first)
    return [first, empty, {**empty, "c_int": 17, "c_bool": False, "c_jsonb": [1, "two"]}]


async def assert_typed_sealed(raw: asyncpg.Connection, tenant: int) -> None:
    """The three raw ``typed`` rows of ``tenant``: envelopes (c_armored: armoured text)
    in every column given a value, NULL in the others."""
    stored = await raw.fetch("SELECT * FROM typed WHERE business_id = $1 ORDER BY id", tenant)
    filled = []
    for row in stored:
        values = {k: v for k, v in row.items() if k.startswith("c_") and v is not None}
        filled.append(len(values))
        armored = values.pop("c_armored", None)
        if armored is not None:
            assert armored.startswith("pgseal1:")
            assert "armour" not in armored
        await assert_sealed_for(raw, tenant, *values.values())
    assert filled == [14, 0, 3]


def customer(
    name: str,
    email: str | None = None,
    tax_id: str | None = None,
    phone: str | None = None,
    credit: str | None = None,
) -> dict[str, object]:
    return {"name": name, "email": email, "tax_id": tax_id, "phone": phone, "credit": credit}


# --- Sequelize ---------------------------------------------------------------


async def test_sequelize_create_and_bulk_create(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "sequelize", "writes", 9201)
    one = customer("sq-one", "SQ.One@Seq.example", "SQTAX-1", "555-SQ1", "10.50")
    assert got["writes:create"] == {"id_is_int": True, **one}
    bulk = [
        customer("sq-b0", "sq.b0@seq.example", "SQTAX-B0", "555-SQB0", "0.25"),
        customer("sq-b1", "sq.b1@seq.example", "SQTAX-B1", "555-SQB1", "1000"),
        customer("sq-b2", phone="555-'SQB2'"),
    ]
    assert got["writes:bulk"] == [{"id_is_int": True, **c} for c in bulk]
    assert got["writes:reread"] == [*bulk, one]
    ids = got["writes:ids"]
    assert isinstance(ids, list)
    assert len(set(ids)) == 4
    assert await sealed_customers(raw, 9201) == {
        "sq-one": list(CUSTOMER_SEALED),
        "sq-b0": list(CUSTOMER_SEALED),
        "sq-b1": list(CUSTOMER_SEALED),
        "sq-b2": ["phone"],
    }
    await assert_secrets_stayed_out(stack, raw)


async def test_sequelize_every_logical_type(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "sequelize", "typed", 9211)
    assert got["typed:created"] == typed_rows("sequelize")[0]
    assert got["typed:found"] == typed_rows("sequelize")
    await assert_typed_sealed(raw, 9211)
    await assert_secrets_stayed_out(stack, raw)


async def test_sequelize_search_by_searchable_columns(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    got = scenario(stack, "sequelize", "search", 9202)
    s2 = customer("sq-s2", "SQ.S2@Seq.example", "SQTAX-S2", "555-SQS2", "2.5")
    assert got["search:email"] == s2  # trimmed and case-folded like the stored one
    assert got["search:email_in"] == ["sq-s0", "sq-s3"]
    assert got["search:tax_in"] == ["sq-s1"]  # tax_id is not case-folded
    assert got["search:count"] == 1
    assert got["search:by_pk"] == s2
    assert got["search:attributes"] == [{"name": "sq-s1", "phone": "555-SQS1"}]
    assert got["search:raw"] == [
        {
            "business_id": 9202,
            **customer("sq-s0", "SQ.S0@Seq.example", "SQTAX-S0", "555-SQS0", "0.5"),
        }
    ]
    stored = await sealed_customers(raw, 9202)
    assert stored == {f"sq-s{i}": list(CUSTOMER_SEALED) for i in range(4)}
    bidx = await raw.fetch("SELECT email_bidx, tax_id_bidx FROM customers")
    assert len({r["email_bidx"] for r in bidx}) == len({r["tax_id_bidx"] for r in bidx}) == 4
    await assert_secrets_stayed_out(stack, raw)


async def test_sequelize_update_by_primary_key(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "sequelize", "update", 9203)
    final = customer("sq-u", "SQ.U.New@Seq.example", "SQTAX-U2", "555-SQU-RET", "99.99")
    assert got["update:count"] == 1
    assert got["update:returning"] == [final]
    assert got["update:reloaded"] == final
    assert got["update:found_by_new_email"] is True  # the blind index moved with the value
    assert got["update:old_email_gone"] == 0
    assert got["update:tenant_in_where"] == 1
    assert got["update:no_tenant"] == NO_TENANT
    other = got["update:other_tenant"]
    assert isinstance(other, dict)
    assert other["code"] == "42501"
    assert other["message"].endswith("belongs to another tenant than the session's tenant '9204'")
    assert got["update:after_where"] == "555-SQU-WHERE"
    assert await sealed_customers(raw, 9203) == {"sq-u": list(CUSTOMER_SEALED)}
    await assert_secrets_stayed_out(stack, raw)


async def test_sequelize_include_and_lazy_load(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "sequelize", "include", 9204)
    assert got["include:customer"] == {"name": "sq-i", "phone": "555-SQI"}
    assert got["include:invoices"] == [
        {"total": "12.34", "notes": "sq note one"},
        {"total": "100", "notes": None},
        {"total": "0.01", "notes": "sq note three"},
    ]
    assert got["include:belongs_to"] == [
        {"notes": "sq note three", "customer": {"name": "sq-i", "email": "sq.i@seq.example"}}
    ]
    assert got["include:lazy"] == ["sq note one", None, "sq note three"]
    assert got["include:nested_create"] == {"same": True, "invoices": [["1.50", "sq note nested"]]}
    notes = await raw.fetch("SELECT notes FROM invoices WHERE business_id = 9204 ORDER BY id")
    assert [n is None for (n,) in notes] == [False, True, False, False]
    await assert_sealed_for(raw, 9204, *(n for (n,) in notes if n is not None))
    assert await sealed_customers(raw, 9204) == {
        "sq-i": ["email", "phone"],
        "sq-i-nested": ["tax_id"],
    }
    await assert_secrets_stayed_out(stack, raw)


async def test_sequelize_managed_transactions(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "sequelize", "transaction", 9205)
    assert got["transaction:committed"] is True
    assert got["transaction:app_error"] == "the app changed its mind"
    assert got["transaction:refused"] == ORDER_BY_PHONE
    assert got["transaction:left"] == [
        {"name": "sq-t-ok", "phone": "555-SQT-OK", "email": "sq.t@seq.example"}
    ]
    assert await sealed_customers(raw, 9205) == {"sq-t-ok": ["email", "phone"]}
    await assert_secrets_stayed_out(stack, raw)


async def test_sequelize_refusals_leave_the_pool_usable(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    got = scenario(stack, "sequelize", "refused", 9206)
    assert got["refused:outcomes"] == REFUSED
    assert got["refused:after"] == ["555-SQR"] * 4
    assert await sealed_customers(raw, 9206) == {"sq-r": ["email", "phone"]}
    await assert_never_reached(stack, 'ORDER BY "Customer"."phone"', "LIKE '%seq%'")
    await assert_secrets_stayed_out(stack, raw)


async def test_sequelize_find_or_create_is_refused_find_create_find_works(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    """findOrCreate INSERTs from inside a temporary plpgsql function (to catch
    unique_violation): pgseal cannot seal values in a function body, so it refuses."""
    got = scenario(stack, "sequelize", "find_or_create", 9207)
    assert got["find_or_create:found"] == {"created": False, "phone": "555-SQF"}
    assert got["find_or_create:new"] == {
        "code": "0A000",
        "message": "pgseal: CREATE FUNCTION on encrypted table public.customers is not supported",
    }
    assert got["find_or_create:find_create_find"] == {"created": True, "phone": "555-SQF-NEW"}
    assert await sealed_customers(raw, 9207) == {"sq-f": ["email", "phone"], "sq-f-new": ["phone"]}
    await assert_never_reached(stack, "pg_temp.testfunc")
    await assert_secrets_stayed_out(stack, raw)


async def test_sequelize_upsert(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "sequelize", "upsert", 9208)
    assert got["upsert:insert"] == customer("sq-up", phone="555-SQUP-1")
    updated = customer("sq-up", "SQ.Up@seq.example", phone="555-SQUP-2")
    assert got["upsert:update"] == {"same_id": True, **updated}
    assert got["upsert:found"] == "555-SQUP-2"
    # the other business's upsert on the same id neither moved nor overwrote the row
    assert got["upsert:after_other_tenant"] == updated
    assert got["upsert:bulk"] == [
        customer("sq-up", "SQ.Up@seq.example", "SQTAX-UP", "555-SQUP-3"),
        customer("sq-up-b", tax_id="SQTAX-UPB", phone="555-SQUP-B"),  # the duplicate ignored
        customer("sq-up-c", phone="555-SQUP-C"),
    ]
    assert await sealed_customers(raw, 9208) == {
        "sq-up": ["email", "tax_id", "phone"],
        "sq-up-b": ["tax_id", "phone"],
        "sq-up-c": ["phone"],
    }
    assert await raw.fetchval("SELECT count(*) FROM customers") == 3
    await assert_secrets_stayed_out(stack, raw)


INCREMENT_REFUSED = {
    "code": "0A000",
    "message": "pgseal: UPDATE SET to an expression on encrypted column public.customers.credit"
    " is not supported",
}


async def test_sequelize_edges(stack: Stack, raw: asyncpg.Connection) -> None:
    """Empty and negated IN lists, OR, IS [NOT] NULL, UPDATE/DELETE by a searchable
    column, a paged include with its count, increment (refused), raw queries, a
    per-transaction SET LOCAL tenant and a refusal inside a savepoint."""
    got = scenario(stack, "sequelize", "edges", 9210)
    assert got["edges:in_empty"] == []  # Sequelize sends IN (NULL)
    assert got["edges:not_in"] == ["sq-e1", "sq-e2"]
    assert got["edges:ne"] == ["sq-e1"]  # NULL is not != anything
    assert got["edges:or"] == ["sq-e0", "sq-e1"]
    assert got["edges:is_null"] == ["sq-e2"]
    assert got["edges:not_null"] == ["sq-e0", "sq-e1"]
    assert got["edges:update_where_email"] == 1
    assert got["edges:destroy_where_tax"] == 1
    assert got["edges:find_and_count"] == {
        "count": 2,
        "rows": [["sq-e1", ["sq note e1", "sq note e2", "sq note e3"]]],
    }
    assert got["edges:increment"] == INCREMENT_REFUSED
    assert got["edges:raw_query_bind"] == [{"name": "sq-e1", "phone": "555-SQE-BYMAIL"}]
    assert got["edges:raw_query_replacements"] == [{"name": "sq-e1"}]
    assert got["edges:set_local"] == "555-SQE-LOCAL"
    assert got["edges:after_set_local"] == NO_TENANT  # SET LOCAL ended with the transaction
    assert got["edges:savepoint"] == {"inner": ORDER_BY_PHONE, "after": 3}
    assert got["edges:left"] == [
        ["sq-e-outer", "555-SQE-OUTER"],
        ["sq-e1", "555-SQE-BYMAIL"],
        ["sq-e2", "555-SQE-LOCAL"],
    ]
    assert await sealed_customers(raw, 9210) == {
        "sq-e-outer": ["phone"],
        "sq-e1": ["email", "tax_id", "phone"],
        "sq-e2": ["email", "phone"],
    }
    notes = await raw.fetch("SELECT notes FROM invoices WHERE business_id = 9210")
    assert len(notes) == 3
    await assert_sealed_for(raw, 9210, *(n for (n,) in notes))
    await assert_secrets_stayed_out(stack, raw)


async def test_sequelize_destroy(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "sequelize", "destroy", 9209)
    assert got["destroy:static"] == 0
    assert got["destroy:left"] == ["sq-d-keep"]
    assert got["destroy:invoices_left"] == 0
    assert await sealed_customers(raw, 9209) == {"sq-d-keep": ["phone"]}
    assert await raw.fetchval("SELECT count(*) FROM invoices") == 0
    await assert_secrets_stayed_out(stack, raw)


# --- TypeORM -----------------------------------------------------------------


async def test_typeorm_save_insert_and_query_builder(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "typeorm", "writes", 9301)
    one = customer("to-one", "TO.One@Tor.example", "TOTAX-1", "555-TO1", "10.50")
    assert got["writes:save"] == {"id_is_int": True, **one}
    assert got["writes:save_many"] == [True] * 3
    assert got["writes:insert_ids"] == [True] * 2
    assert got["writes:query_builder_returning"] == [
        {"email": "to.qb@tor.example", "phone": "555-TOQB"}
    ]
    assert got["writes:reread"] == [
        customer("to-b0", "to.b0@tor.example", "TOTAX-B0", "555-TOB0", "0.25"),
        customer("to-b1", "to.b1@tor.example", "TOTAX-B1", "555-TOB1", "1000"),
        customer("to-b2", phone="555-'TOB2'"),
        customer("to-i0", "to.i0@tor.example", phone="555-TOI0", credit="7"),
        customer("to-i1", tax_id="TOTAX-I1", phone="555-TOI1"),
        one,
        customer("to-qb", "to.qb@tor.example", phone="555-TOQB"),
    ]
    assert await sealed_customers(raw, 9301) == {
        "to-one": list(CUSTOMER_SEALED),
        "to-b0": list(CUSTOMER_SEALED),
        "to-b1": list(CUSTOMER_SEALED),
        "to-b2": ["phone"],
        "to-i0": ["email", "phone", "credit"],
        "to-i1": ["tax_id", "phone"],
        "to-qb": ["email", "phone"],
    }
    await assert_secrets_stayed_out(stack, raw)


async def test_typeorm_every_logical_type(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "typeorm", "typed", 9310)
    assert got["typed:found"] == typed_rows("typeorm")
    await assert_typed_sealed(raw, 9310)
    await assert_secrets_stayed_out(stack, raw)


async def test_typeorm_search_by_searchable_columns(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "typeorm", "search", 9302)
    s2 = customer("to-s2", "TO.S2@Tor.example", "TOTAX-S2", "555-TOS2", "2.5")
    assert got["search:email"] == s2
    assert got["search:email_in"] == ["to-s0", "to-s3"]
    assert got["search:tax_in"] == ["to-s1"]
    assert got["search:count"] == 1
    assert got["search:exists"] is True
    assert got["search:by_id"] == s2
    assert got["search:select"] == [{"name": "to-s1", "phone": "555-TOS1"}]
    assert got["search:is_null"] == ["to-s-none"]
    assert got["search:query_builder"] == [{"name": "to-s0", "tax_id": "TOTAX-S0"}]
    assert await sealed_customers(raw, 9302) == {
        **{f"to-s{i}": list(CUSTOMER_SEALED) for i in range(4)},
        "to-s-none": ["phone"],
    }
    await assert_secrets_stayed_out(stack, raw)


async def test_typeorm_update_by_primary_key(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "typeorm", "update", 9303)
    assert got["update:affected"] == 1
    assert got["update:tenant_in_where_affected"] == 1
    assert got["update:reloaded"] == customer(
        "to-u", "TO.U.New@Tor.example", "TOTAX-U2", "555-TOU-NEW", "99.99"
    )
    assert got["update:found_by_new_email"] is True
    assert got["update:old_email_gone"] == 0
    assert got["update:no_session_tenant_in_where"] == 1
    assert got["update:no_tenant"] == NO_TENANT
    assert got["update:after_where"] == "555-TOU-WHERE"
    other = got["update:other_tenant"]
    assert isinstance(other, dict)
    assert other["code"] == "42501"
    assert other["message"].endswith("belongs to another tenant than the session's tenant '9304'")
    assert await sealed_customers(raw, 9303) == {"to-u": list(CUSTOMER_SEALED)}
    await assert_secrets_stayed_out(stack, raw)


async def test_typeorm_relations_and_joins(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "typeorm", "relations", 9304)
    assert got["relations:customer"] == {"name": "to-r", "phone": "555-TOR"}
    assert got["relations:invoices"] == [
        {"total": "12.34", "notes": "tor-note one"},
        {"total": "100", "notes": None},
        {"total": "0.01", "notes": "tor-note three"},
    ]
    assert got["relations:find"] == [["to.r@tor.example", [None, "tor-note one", "tor-note three"]]]
    assert got["relations:many_to_one"] == [
        {"total": "100", "customer": customer("to-r", "to.r@tor.example", phone="555-TOR")}
    ]
    assert got["relations:query_builder"] == [["555-TOR", ["tor-note one", None, "tor-note three"]]]
    assert got["relations:cascade"] == {"same": True, "invoices": [["1.50", "tor-note nested"]]}
    notes = await raw.fetch("SELECT notes FROM invoices WHERE business_id = 9304 ORDER BY id")
    assert [n is None for (n,) in notes] == [False, True, False, False]
    await assert_sealed_for(raw, 9304, *(n for (n,) in notes if n is not None))
    assert await sealed_customers(raw, 9304) == {
        "to-r": ["email", "phone"],
        "to-r-nested": ["tax_id"],
    }
    await assert_secrets_stayed_out(stack, raw)


async def test_typeorm_managed_transactions(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "typeorm", "transaction", 9305)
    assert got["transaction:committed"] is True
    assert got["transaction:app_error"] == "the app changed its mind"
    assert got["transaction:refused"] == ORDER_BY_PHONE
    assert got["transaction:left"] == [
        {"name": "to-t-ok", "email": "to.t@tor.example", "phone": "555-TOT-OK"}
    ]
    assert await sealed_customers(raw, 9305) == {"to-t-ok": ["email", "phone"]}
    await assert_secrets_stayed_out(stack, raw)


async def test_typeorm_refusals_leave_the_pool_usable(
    stack: Stack, raw: asyncpg.Connection
) -> None:
    got = scenario(stack, "typeorm", "refused", 9306)
    assert got["refused:outcomes"] == REFUSED
    assert got["refused:after"] == ["555-TOX"] * 4
    assert await sealed_customers(raw, 9306) == {"to-x": ["email", "phone"]}
    await assert_never_reached(stack, 'ORDER BY "Customer"."phone"')
    await assert_secrets_stayed_out(stack, raw)


async def test_typeorm_upsert(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "typeorm", "upsert", 9307)
    assert got["upsert:same_id"] == [True]
    assert got["upsert:found"] == customer("to-up", "TO.Up@tor.example", phone="555-TOUP-2")
    assert got["upsert:many"] == [True, False]
    assert got["upsert:by_tax"] == ["to-up", "to-up-new"]
    assert got["upsert:first_after_many"] == customer(
        "to-up", "TO.Up@tor.example", tax_id="TOTAX-UP"
    )
    assert await sealed_customers(raw, 9307) == {
        "to-up": ["email", "tax_id"],
        "to-up-new": ["tax_id", "phone"],
    }
    await assert_secrets_stayed_out(stack, raw)


async def test_typeorm_remove_and_delete(stack: Stack, raw: asyncpg.Connection) -> None:
    got = scenario(stack, "typeorm", "remove", 9308)
    assert got["remove:delete_affected"] == 1
    assert got["remove:delete_missing"] == 0
    assert got["remove:left"] == ["to-d-keep"]
    assert got["remove:invoices_left"] == 0
    assert await sealed_customers(raw, 9308) == {"to-d-keep": ["phone"]}
    assert await raw.fetchval("SELECT count(*) FROM invoices") == 0
    await assert_secrets_stayed_out(stack, raw)


async def test_typeorm_edges(stack: Stack, raw: asyncpg.Connection) -> None:
    """Empty and negated In, Not, OR (a where array), IS NOT NULL, update/delete by a
    searchable column, findAndCount with relations and take (TypeORM's DISTINCT
    subquery), increment (refused), a raw query, a per-transaction SET LOCAL tenant
    and a refusal inside a nested transaction (savepoint)."""
    got = scenario(stack, "typeorm", "edges", 9309)
    assert got["edges:in_empty"] == []  # TypeORM sends 0=1
    assert got["edges:not_in"] == ["to-e1", "to-e2"]
    assert got["edges:not"] == ["to-e1"]
    assert got["edges:or"] == ["to-e0", "to-e1"]
    assert got["edges:not_null"] == ["to-e0", "to-e1"]
    assert got["edges:update_where_email"] == 1
    assert got["edges:delete_where_tax"] == 1
    assert got["edges:find_and_count"] == {
        "count": 2,
        "rows": [["to-e1", ["tor-note e1", "tor-note e2", "tor-note e3"]]],
    }
    assert got["edges:increment"] == INCREMENT_REFUSED
    assert got["edges:raw_query"] == [{"name": "to-e1", "phone": "555-TOE-BYMAIL"}]
    assert got["edges:set_local"] == "555-TOE-LOCAL"
    assert got["edges:after_set_local"] == NO_TENANT
    assert got["edges:savepoint"] == {"inner": ORDER_BY_PHONE, "after": 3}
    assert got["edges:left"] == [
        ["to-e-outer", "555-TOE-OUTER"],
        ["to-e1", "555-TOE-BYMAIL"],
        ["to-e2", "555-TOE-LOCAL"],
    ]
    assert await sealed_customers(raw, 9309) == {
        "to-e-outer": ["phone"],
        "to-e1": ["email", "tax_id", "phone"],
        "to-e2": ["email", "phone"],
    }
    notes = await raw.fetch("SELECT notes FROM invoices WHERE business_id = 9309")
    assert len(notes) == 3
    await assert_sealed_for(raw, 9309, *(n for (n,) in notes))
    await assert_secrets_stayed_out(stack, raw)
