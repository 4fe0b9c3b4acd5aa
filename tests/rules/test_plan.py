"""SQL in / SQL out table tests of the planner (no database)."""

from __future__ import annotations

import pytest

from rules.model import ProtectedColumn, ProtectedTable, Rules
from rules.plan import (
    BindAction,
    BlindIndex,
    BlindIndexArray,
    ClientParam,
    ClientParamArray,
    Literal,
    PassThrough,
    Plan,
    Refuse,
    Rewrite,
    Seal,
    SessionTenant,
    TenantCommand,
    TenantFromParam,
    TenantLiteral,
    plan_statement,
)


def _col(table: str, name: str, type_: str = "text", **kw: object) -> ProtectedColumn:
    return ProtectedColumn("public", table, name, type_, **kw)  # type: ignore[arg-type]


CUSTOMER_COLUMNS = {
    "company_name": _col("customers", "company_name"),
    "phone": _col("customers", "phone"),
    "tax_id": _col("customers", "tax_id", searchable="tax_id_bidx", normalize=("trim",)),
    "credit_limit": _col("customers", "credit_limit", "numeric"),
}
INVOICE_COLUMNS = {
    "note": ProtectedColumn("billing", "invoices", "note", "text", storage="text"),
    "iban": ProtectedColumn("billing", "invoices", "iban", "text", searchable="iban_bidx"),
}
RULES = Rules(
    {
        "public.customers": ProtectedTable("public", "customers", "business_id", CUSTOMER_COLUMNS),
        "billing.invoices": ProtectedTable("billing", "invoices", "business_id", INVOICE_COLUMNS),
    }
)
PHONE = CUSTOMER_COLUMNS["phone"]
TAX = CUSTOMER_COLUMNS["tax_id"]
NAME = CUSTOMER_COLUMNS["company_name"]


def plan(sql: str, declared: int = 0) -> Plan:
    return plan_statement(sql, RULES, declared)


def rewrite(sql: str, declared: int = 0) -> Rewrite:
    result = plan(sql, declared)
    assert isinstance(result, Rewrite), result
    return result


# --- rewrites: SQL in, extended-protocol SQL out --------------------------------------

REWRITES = [
    # INSERT: literals and parameters, multi-row, DEFAULT, NULL, casts dropped
    (
        "INSERT INTO customers (business_id, phone) VALUES ($1, $2)",
        "INSERT INTO customers (business_id, phone) VALUES ($1, $2)",
    ),
    (
        "INSERT INTO customers (business_id, phone) VALUES ($1::INTEGER, $2::VARCHAR) "
        "RETURNING customers.id",
        "INSERT INTO customers (business_id, phone) VALUES (CAST($1 AS INT), $2) "
        "RETURNING customers.id",
    ),
    (
        "INSERT INTO customers (business_id, phone, company_name) VALUES (7, '555-1234', 'Acme')",
        "INSERT INTO customers (business_id, phone, company_name) VALUES (7, $1, $2)",
    ),
    (
        "INSERT INTO customers (business_id, tax_id) VALUES (1, 'T1'), (2, NULL), (3, DEFAULT)",
        "INSERT INTO customers (business_id, tax_id, tax_id_bidx) "
        "VALUES (1, $1, $2), (2, NULL, NULL), (3, DEFAULT, DEFAULT)",
    ),
    (
        "INSERT INTO customers (business_id, tax_id) VALUES ($1, $2)",
        "INSERT INTO customers (business_id, tax_id, tax_id_bidx) VALUES ($1, $2, $3)",
    ),
    (
        "INSERT INTO customers (business_id, credit_limit, phone) VALUES (1, -12.5, 'x'::text)",
        "INSERT INTO customers (business_id, credit_limit, phone) VALUES (1, $1, $2)",
    ),
    (
        'INSERT INTO "customers" ("business_id", "phone") VALUES (1, $$dollar$$)',
        'INSERT INTO "customers" ("business_id", "phone") VALUES (1, $1)',
    ),
    (
        "INSERT INTO public.customers AS c (business_id, phone) VALUES ($1, $2) "
        "RETURNING c.phone, c.id",
        "INSERT INTO public.customers AS c (business_id, phone) VALUES ($1, $2) "
        "RETURNING c.phone, c.id",
    ),
    # ON CONFLICT: EXCLUDED assignment plus the blind index; same-tenant guard
    (
        "INSERT INTO customers (business_id, id, tax_id) VALUES ($1, $2, $3) "
        "ON CONFLICT (business_id, id) DO UPDATE SET tax_id = EXCLUDED.tax_id",
        "INSERT INTO customers (business_id, id, tax_id, tax_id_bidx) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT(business_id, id) DO UPDATE SET tax_id = EXCLUDED.tax_id, "
        "tax_id_bidx = excluded.tax_id_bidx",
    ),
    (
        "INSERT INTO customers (business_id, id, phone) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone",
        "INSERT INTO customers (business_id, id, phone) VALUES ($1, $2, $3) "
        "ON CONFLICT(id) DO UPDATE SET phone = EXCLUDED.phone "
        "WHERE customers.business_id = excluded.business_id",
    ),
    # ActiveRecord's upsert_all by primary key sets the tenant column to EXCLUDED's
    # too: kept by the same guard, and a row of another business is left alone.
    (
        'INSERT INTO "customers" ("id","business_id","phone") VALUES (1, 61, \'555\') '
        'ON CONFLICT ("id") DO UPDATE SET "business_id"=excluded."business_id",'
        '"phone"=excluded."phone" RETURNING "id"',
        'INSERT INTO "customers" ("id", "business_id", "phone") VALUES (1, 61, $1) '
        'ON CONFLICT("id") DO UPDATE SET "business_id" = excluded."business_id", '
        '"phone" = excluded."phone" WHERE customers.business_id = excluded.business_id '
        'RETURNING "id"',
    ),
    (
        "INSERT INTO customers (id, business_id, name) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO UPDATE SET business_id = EXCLUDED.business_id, name = EXCLUDED.name",
        "INSERT INTO customers (id, business_id, name) VALUES ($1, $2, $3) "
        "ON CONFLICT(id) DO UPDATE SET business_id = EXCLUDED.business_id, name = EXCLUDED.name "
        "WHERE customers.business_id = excluded.business_id",
    ),
    (
        "INSERT INTO customers (business_id, id, phone) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO NOTHING",
        "INSERT INTO customers (business_id, id, phone) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO NOTHING",
    ),
    # UPDATE / DELETE
    (
        "UPDATE customers SET phone = $1 WHERE business_id = $2 AND id = $3",
        "UPDATE customers SET phone = $1 WHERE business_id = $2 AND id = $3",
    ),
    (
        "UPDATE customers SET phone = 'x', tax_id = $1 WHERE business_id = 5 AND id = $2",
        "UPDATE customers SET phone = $3, tax_id = $1, tax_id_bidx = $4 "
        "WHERE business_id = 5 AND id = $2",
    ),
    (
        "UPDATE customers SET phone = NULL, tax_id = DEFAULT WHERE id = 1",
        "UPDATE customers SET phone = NULL, tax_id = DEFAULT, tax_id_bidx = DEFAULT WHERE id = 1",
    ),
    (
        "DELETE FROM customers WHERE tax_id = $1 AND business_id = $2",
        "DELETE FROM customers WHERE tax_id_bidx = $3 AND business_id = $2",
    ),
    # an INSERT sealing for the session's tenant writes the tenant column too
    (
        "INSERT INTO customers (company_name, phone) VALUES ($1, $2), ('b', NULL)",
        "INSERT INTO customers (company_name, phone, business_id) VALUES ($1, $2, $3), "
        "($4, NULL, $5)",
    ),
    (
        "INSERT INTO customers (id, phone) VALUES (1, NULL)",
        "INSERT INTO customers (id, phone) VALUES (1, NULL)",
    ),
    # an UPDATE sealing for the session's tenant is restricted to that tenant's rows
    (
        "UPDATE customers SET phone = $1 WHERE id = $2",
        "UPDATE customers SET phone = $1 WHERE (id = $2) AND customers.business_id = $3",
    ),
    (
        "UPDATE customers c SET phone = 'x' WHERE business_id = 1 OR id = 2",
        "UPDATE customers AS c SET phone = $1 WHERE (business_id = 1 OR id = 2) "
        "AND c.business_id = $2",
    ),
    (
        "UPDATE customers SET tax_id = $1",
        "UPDATE customers SET tax_id = $1, tax_id_bidx = $2 WHERE customers.business_id = $3",
    ),
    # search on a searchable column
    (
        "SELECT * FROM customers WHERE tax_id = $1",
        "SELECT * FROM customers WHERE tax_id_bidx = $2",
    ),
    (
        "SELECT id FROM customers WHERE 'T1' = tax_id",
        "SELECT id FROM customers WHERE $1 = tax_id_bidx",
    ),
    (
        "SELECT id FROM customers c WHERE c.tax_id <> $1::text",
        "SELECT id FROM customers AS c WHERE c.tax_id_bidx <> $2",
    ),
    (
        "SELECT id FROM customers c WHERE c.tax_id IN ('a', $1) OR tax_id = ANY($2)",
        "SELECT id FROM customers AS c WHERE c.tax_id_bidx IN ($3, $4) OR tax_id_bidx = ANY($5)",
    ),
    (
        "SELECT id FROM customers WHERE NOT tax_id IN ($1, $2)",
        "SELECT id FROM customers WHERE NOT tax_id_bidx IN ($3, $4)",
    ),
    (
        "SELECT i.id FROM orders o JOIN customers c ON c.id = o.customer_id AND c.tax_id = $1",
        "SELECT i.id FROM orders AS o JOIN customers AS c ON c.id = o.customer_id "
        "AND c.tax_id_bidx = $2",
    ),
    (
        "SELECT * FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE tax_id = 'T9')",
        "SELECT * FROM orders WHERE customer_id IN "
        "(SELECT id FROM customers WHERE tax_id_bidx = $1)",
    ),
    (
        "WITH c AS (SELECT id, phone FROM customers WHERE tax_id = $1) SELECT phone FROM c",
        "WITH c AS (SELECT id, phone FROM customers WHERE tax_id_bidx = $2) SELECT phone FROM c",
    ),
    # other schema, text storage, searchable with another name
    (
        "INSERT INTO billing.invoices (business_id, note, iban) VALUES (1, 'n', 'DE00')",
        "INSERT INTO billing.invoices (business_id, note, iban, iban_bidx) VALUES (1, $1, $2, $3)",
    ),
    (
        "SELECT note FROM billing.invoices WHERE iban = $1",
        "SELECT note FROM billing.invoices WHERE iban_bidx = $2",
    ),
    # data-modifying CTE
    (
        "WITH n AS (INSERT INTO customers (business_id, phone) VALUES (1, 'p') RETURNING id) "
        "SELECT id FROM n",
        "WITH n AS (INSERT INTO customers (business_id, phone) VALUES (1, $1) RETURNING id) "
        "SELECT id FROM n",
    ),
]


@pytest.mark.parametrize(("sql", "expected"), REWRITES)
def test_rewrite_sql(sql: str, expected: str) -> None:
    assert rewrite(sql).sql_extended == expected


# --- refusals --------------------------------------------------------------------

REFUSALS = [
    ("SELECT phone FROM customers ORDER BY phone", "ORDER BY", PHONE),
    ("SELECT phone AS p FROM customers ORDER BY p DESC", "ORDER BY", PHONE),
    ("SELECT id, phone FROM customers ORDER BY 2", "ORDER BY", PHONE),
    ("SELECT phone, count(*) FROM customers GROUP BY phone", "GROUP BY", PHONE),
    ("SELECT phone, count(*) FROM customers GROUP BY 1", "GROUP BY", PHONE),
    ("SELECT DISTINCT phone FROM customers", "DISTINCT", PHONE),
    ("SELECT DISTINCT * FROM customers", "DISTINCT", NAME),
    ("SELECT DISTINCT ON (phone) id FROM customers", "DISTINCT", PHONE),
    ("SELECT count(DISTINCT phone) FROM customers", "DISTINCT", PHONE),
    ("SELECT id FROM customers WHERE phone < '5'", "range comparison (<)", PHONE),
    ("SELECT id FROM customers WHERE credit_limit >= 10", "range comparison (>=)", None),
    ("SELECT id FROM customers WHERE phone BETWEEN 'a' AND 'b'", "BETWEEN", PHONE),
    ("SELECT id FROM customers WHERE phone LIKE '5%'", "LIKE", PHONE),
    ("SELECT id FROM customers WHERE phone ILIKE '5%'", "ILIKE", PHONE),
    ("SELECT id FROM customers WHERE phone SIMILAR TO '5%'", "SIMILAR TO", PHONE),
    ("SELECT id FROM customers WHERE phone ~ '^5'", "regular expression", PHONE),
    ("SELECT upper(phone) FROM customers", "function upper()", PHONE),
    ("SELECT phone::text FROM customers", "cast", PHONE),
    ("SELECT phone || 'x' FROM customers", "concatenation", PHONE),
    ("SELECT credit_limit + 1 FROM customers", "arithmetic", None),
    ("SELECT max(phone) FROM customers", "aggregate max()", PHONE),
    ("SELECT string_agg(phone, ',') FROM customers", "aggregate", PHONE),
    ("SELECT row_number() OVER (PARTITION BY phone) FROM customers", "window function", PHONE),
    ("SELECT sum(id) OVER (ORDER BY phone) FROM customers", "window function", PHONE),
    (
        "SELECT CASE WHEN phone IS NULL THEN 1 END, CASE phone WHEN 'a' THEN 1 END FROM customers",
        "CASE",
        PHONE,
    ),
    ("SELECT coalesce(phone, 'none') FROM customers", "COALESCE", PHONE),
    ("SELECT * FROM customers a JOIN customers b ON a.phone = b.phone", "JOIN ON", PHONE),
    ("SELECT * FROM customers c JOIN leads l ON l.phone = c.phone", "JOIN ON", PHONE),
    ("SELECT * FROM customers JOIN leads USING (phone)", "JOIN USING", PHONE),
    ("SELECT * FROM customers WHERE tax_id = company_name", "another column", None),
    ("SELECT * FROM customers WHERE phone = $1", "equality (=)", PHONE),
    ("SELECT * FROM customers WHERE phone IN ('a', 'b')", "equality (IN)", PHONE),
    ("SELECT * FROM customers WHERE phone = ANY($1)", "equality (=)", PHONE),
    ("SELECT * FROM customers WHERE tax_id = lower($1)", "expression", TAX),
    ("SELECT * FROM customers WHERE tax_id IN (SELECT t FROM x)", "IN (subquery)", TAX),
    ("SELECT * FROM customers WHERE tax_id IS DISTINCT FROM 'a'", "IS DISTINCT FROM", TAX),
    ("SELECT tax_id = 'a' FROM customers", "outside WHERE", TAX),
    ("SELECT count(*) FROM customers HAVING max(tax_id) = 'a'", "aggregate max()", TAX),
    ("SELECT * FROM (SELECT tax_id FROM customers) s WHERE s.tax_id = 'a'", "subquery", TAX),
    ("SELECT phone FROM customers UNION SELECT phone FROM customers", "UNION", PHONE),
    # ``c.*`` inside an expression is a row value holding envelopes
    ("SELECT to_jsonb(c.*) FROM customers c", "a whole-row reference", None),
    ("SELECT json_agg(s.*) FROM (SELECT phone FROM customers) s", "a whole-row reference", PHONE),
    (
        "INSERT INTO customers (business_id, phone) VALUES (1, 'x') "
        "RETURNING to_jsonb(customers.*)",
        "a whole-row reference",
        None,
    ),
    # a set operation's columns have no origin in RowDescription: never envelopes out
    ("SELECT phone FROM customers UNION ALL SELECT 'x'", "UNION ALL", PHONE),
    ("SELECT phone FROM customers UNION ALL SELECT phone FROM customers", "UNION ALL", PHONE),
    ("SELECT phone FROM customers UNION ALL SELECT NULL", "UNION ALL", PHONE),
    (
        "SELECT * FROM (SELECT phone FROM customers UNION ALL SELECT phone FROM customers) u",
        "UNION ALL",
        PHONE,
    ),
    (
        "WITH RECURSIVE r AS (SELECT id, phone FROM customers "
        "UNION ALL SELECT r.id, r.phone FROM r) SELECT phone FROM r",
        "UNION ALL",
        PHONE,
    ),
    ("SELECT * FROM leads WHERE name = (SELECT phone FROM customers LIMIT 1)", "subquery", PHONE),
    ("SELECT * FROM customers WHERE upper(company_name) = 'ACME'", "function upper()", NAME),
    ("INSERT INTO customers VALUES (1, 'x')", "INSERT without a column list", None),
    (
        "INSERT INTO customers (business_id, phone) SELECT business_id, phone FROM leads",
        "INSERT ... SELECT",
        PHONE,
    ),
    ("INSERT INTO customers (business_id, phone) VALUES (1, upper('x'))", "computed value", PHONE),
    ("INSERT INTO customers (business_id, phone) VALUES (1, 'a' || 'b')", "computed value", PHONE),
    (
        "INSERT INTO customers (business_id, phone) VALUES (1, 'a') ON CONFLICT (phone) DO NOTHING",
        "ON CONFLICT target",
        PHONE,
    ),
    (
        "INSERT INTO customers (business_id, phone) VALUES (1, 'a') "
        "ON CONFLICT (id) DO UPDATE SET phone = customers.phone || 'x'",
        "expression",
        PHONE,
    ),
    ("INSERT INTO customers (business_id, tax_id_bidx) VALUES (1, 'a')", "blind-index", TAX),
    ("INSERT INTO customers (business_id, phone) VALUES (now(), 'a')", "cannot tell", None),
    ("UPDATE customers SET phone = upper($1) WHERE id = 1", "UPDATE SET to an expression", PHONE),
    (
        "UPDATE customers c SET phone = l.phone FROM leads l WHERE l.id = c.id",
        "UPDATE SET to an expression",
        PHONE,
    ),
    ("UPDATE customers SET phone = phone WHERE id = 1", "UPDATE SET to an expression", PHONE),
    ("UPDATE customers SET business_id = 2 WHERE id = 1", "changing tenant column", None),
    (
        "INSERT INTO customers (id, business_id, phone) VALUES (1, 2, 'a') "
        "ON CONFLICT (id) DO UPDATE SET business_id = 3, phone = EXCLUDED.phone",
        "changing tenant column",
        None,
    ),
    (
        "INSERT INTO customers (id, business_id) VALUES (1, 2) "
        "ON CONFLICT (id) DO UPDATE SET business_id = customers.business_id + 1",
        "changing tenant column",
        None,
    ),
    (
        "UPDATE leads SET name = c.phone FROM customers c WHERE c.id = leads.id",
        "copying to another column",
        PHONE,
    ),
    ("COPY customers TO '/tmp/out.csv'", "COPY to or from a file", None),
    ("COPY customers (business_id, phone) FROM PROGRAM 'cat x'", "COPY to or from a file", None),
    ("COPY customers FROM STDIN", "COPY FROM without a column list", None),
    ("COPY (SELECT phone FROM customers) TO '/tmp/x'", "COPY to a file", None),
    ("COPY (SELECT * FROM customers) TO STDOUT", "COPY (SELECT *)", None),
    ("PREPARE p AS SELECT * FROM customers WHERE tax_id = $1", "PREPARE", None),
    ("EXPLAIN ANALYZE INSERT INTO customers (business_id, phone) VALUES (1, 'x')", "EXPLAIN", None),
    ("DECLARE c CURSOR FOR SELECT phone FROM customers ORDER BY phone", "ORDER BY", PHONE),
    ("DO $$ BEGIN UPDATE customers SET phone = 'x'; END $$", "DO", None),
    ("CREATE VIEW v AS SELECT * FROM customers", "CREATE VIEW", None),
    ("CREATE TABLE c2 AS SELECT * FROM customers", "CREATE TABLE ... AS", None),
    (
        "MERGE INTO customers c USING leads l ON l.id = c.id "
        "WHEN MATCHED THEN UPDATE SET phone = l.phone",
        "MERGE",
        None,
    ),
    ("SELECT set_config('pgseal.tenant', '5', false)", "set_config", None),
    ("SELECT * FROM invoices WHERE iban = 'x'", "unqualified table name", None),
    ("SELECT * FROM customers c, LATERAL (SELECT c.phone) x ORDER BY x.phone", "ORDER BY", PHONE),
    (
        "WITH RECURSIVE r AS (SELECT id, phone FROM customers "
        "UNION ALL SELECT r.id, r.phone FROM r) SELECT * FROM r ORDER BY phone",
        "UNION ALL",  # refused before its ORDER BY
        PHONE,
    ),
    ("SELECT json_agg(c) FROM customers c", "whole-row reference", None),
    (
        "SELECT (SELECT count(*) FROM orders o WHERE o.phone = c.phone) FROM customers c",
        "another column",
        PHONE,
    ),
    (
        "SELECT * FROM customers WHERE tax_id = 'a' HAVING count(*) > 0 AND tax_id = 'b'",
        "outside WHERE",
        TAX,
    ),
]


@pytest.mark.parametrize(("sql", "operation", "column"), REFUSALS)
def test_refusal(sql: str, operation: str, column: ProtectedColumn | None) -> None:
    result = plan(sql)
    assert isinstance(result, Refuse), result
    # a write whose business cannot be told is a tenant error, as at Bind time
    assert result.sqlstate == ("42501" if operation == "cannot tell" else "0A000")
    assert result.message.startswith("pgseal")
    assert operation in result.message
    if column is not None:
        assert result.message.endswith(f" on encrypted column {column.qualified} is not supported")
    assert result.hint


def test_refusal_message_format_and_hint() -> None:
    result = plan("SELECT * FROM customers WHERE phone = '555-0101'")
    assert result == Refuse(
        "pgseal: equality (=) on encrypted column public.customers.phone is not supported",
        "mark it searchable in config.yaml (searchable: <blind-index column>) for equality",
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM customers WHERE phone LIKE '%SECRET-555%'",
        "UPDATE customers SET phone = upper('SECRET-555') WHERE id = 1",
        "INSERT INTO customers (business_id, phone) VALUES (1, 'SECRET' || '-555')",
        "SELECT id FROM customers WHERE phone = 'SECRET-555'",
        "INSERT INTO customers VALUES (1, 'SECRET-555')",
    ],
)
def test_refusal_never_echoes_literals(sql: str) -> None:
    result = plan(sql)
    assert isinstance(result, Refuse)
    assert "SECRET" not in result.message
    assert "SECRET" not in (result.hint or "")
    assert "SECRET" not in repr(result)


def test_an_analyser_error_is_a_refusal_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    import rules.plan

    def broken(*args: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'iter_expressions'")

    monkeypatch.setattr(rules.plan, "analyze", broken)
    result = plan("SELECT phone FROM customers WHERE id = 1")
    assert isinstance(result, Refuse)
    assert result.message == (
        "pgseal could not analyse this statement; it touches encrypted table public.customers"
    )


def test_functions_in_from_see_the_items_before_them() -> None:
    """``FROM t, f(t.col)`` is implicitly LATERAL: a function of a protected column
    there would send ciphertext (or its length) to the client."""
    for sql, operation in [
        ("SELECT * FROM customers c, encode(c.phone, 'hex') x", "function encode()"),
        ("SELECT * FROM customers c JOIN length(c.phone) x ON true", "function length()"),
        ("SELECT * FROM customers c, ROWS FROM (upper(c.phone)) x", "function upper()"),
        ("SELECT * FROM customers c, unnest(ARRAY[c.phone]) x", "array"),
    ]:
        result = plan(sql)
        assert isinstance(result, Refuse), sql
        assert operation in result.message
        assert "public.customers.phone" in result.message
    for sql in (
        "SELECT * FROM customers c, generate_series(1, c.id) x",
        "SELECT * FROM ROWS FROM (generate_series(1, 2)) g, customers",
    ):
        assert isinstance(plan(sql), PassThrough), sql


def test_unparsable_statement_naming_a_protected_table_is_refused() -> None:
    result = plan("SELECT phone FROM customers WHERE id = $1::oid[]")
    assert result == Refuse(
        "pgseal could not parse this statement; it touches encrypted table public.customers",
        "simplify the statement or run it without pgseal",
    )


# --- allowed without rewrite: original bytes kept ------------------------------------

ALLOWED_UNCHANGED = [
    "SELECT * FROM customers",
    "select   phone, c.company_name AS name FROM public.customers c WHERE id = $1",
    "SELECT t.* FROM customers t",
    "SELECT to_jsonb(l.*), c.* FROM leads l, customers c",
    "SELECT phone FROM customers WHERE phone IS NULL OR tax_id IS NOT NULL",
    "SELECT count(phone), count(*) FROM customers",
    "SELECT p FROM (SELECT phone AS p FROM customers) s",
    "WITH x AS (SELECT phone FROM customers) SELECT x.phone FROM x",
    "SELECT id FROM customers UNION ALL SELECT id FROM customers",
    "WITH RECURSIVE r AS (SELECT id FROM customers UNION ALL SELECT r.id FROM r) SELECT id FROM r",
    "SELECT c.phone, o.total FROM customers c JOIN orders o ON o.customer_id = c.id "
    "ORDER BY o.total",
    "SELECT id FROM customers ORDER BY id DESC LIMIT 10",
    "SELECT * FROM orders WHERE EXISTS (SELECT * FROM customers c WHERE c.id = orders.cid)",
    'SELECT "Phone" FROM "Customers" ORDER BY "Phone"',
    "SELECT phone FROM other_schema.customers ORDER BY phone",
    "SELECT x.phone FROM leads x ORDER BY x.phone",
    "DELETE FROM customers WHERE id = $1",
    "DELETE FROM customers WHERE id = 3 RETURNING phone",
    "UPDATE customers SET name = $1 WHERE id = $2",
    "INSERT INTO customers (business_id, name) VALUES (1, 'plain')",
    "INSERT INTO customers (business_id, name) SELECT business_id, name FROM leads",
    "INSERT INTO customers DEFAULT VALUES",
    "TABLE customers",
    "SELECT * FROM customers FOR UPDATE",
    "COPY customers TO STDOUT",
    "COPY customers (business_id, phone) FROM STDIN WITH (FORMAT binary)",
    "ALTER TABLE customers ADD COLUMN x int",
    "CREATE INDEX ON customers (tax_id_bidx)",
    "TRUNCATE customers",
    "LOCK TABLE customers",
    "LISTEN customers",
    "NOTIFY customers, 'hello'",
    "PREPARE p AS SELECT phone FROM customers WHERE id = $1",
    "EXPLAIN SELECT phone FROM customers",
    "VACUUM customers",
]


@pytest.mark.parametrize("sql", ALLOWED_UNCHANGED)
def test_allowed_statements_keep_their_bytes(sql: str) -> None:
    result = plan(sql)
    assert isinstance(result, PassThrough), result


@pytest.mark.parametrize(
    "sql",
    [
        "LISTEN chan",
        "NOTIFY chan, 'payload'",
        "UNLISTEN *",
        "PREPARE q (int) AS SELECT 1 + $1",
        "EXECUTE q(1)",
        "DEALLOCATE q",
        "DO $$ BEGIN PERFORM 1; END $$",
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        "COMMIT",
        "SET search_path = public",
        "SHOW server_version",
        "COPY pgbench_accounts FROM STDIN",
        "SELECT t.oid, t.typname FROM pg_type t WHERE t.oid = any($1::oid[])",
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
        "this is not sql at all",
    ],
)
def test_statements_naming_no_protected_table_pass_through(sql: str) -> None:
    assert plan(sql) == PassThrough()


# --- tenant commands ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "value", "local"),
    [
        ("SET pgseal.tenant = '42'", "42", False),
        ("SET pgseal.tenant TO 'it''s'", "it's", False),
        ("set session pgseal.tenant to 7", "7", False),
        ("SET LOCAL pgseal.tenant = 'b-1'", "b-1", True),
        ("SET pgseal.tenant TO DEFAULT", None, False),
        ("RESET pgseal.tenant", None, False),
        ("RESET ALL", None, False),
        ("DISCARD ALL", None, False),
    ],
)
def test_tenant_commands(sql: str, value: str | None, local: bool) -> None:
    result = plan(sql)
    assert isinstance(result, TenantCommand), result
    assert (result.value, result.local) == (value, local)
    assert result.statements[0].text == sql


def test_other_settings_pass_through() -> None:
    result = plan("SET pgseal.other = 1")
    assert isinstance(result, PassThrough)
    assert result.statements[0].tenant_command is None


def test_tenant_set_earlier_in_the_same_query_is_used() -> None:
    result = rewrite("SET pgseal.tenant = '42'; INSERT INTO customers (phone) VALUES ('a')")
    assert [s.tenant for s in result.slots] == [TenantLiteral("42")] * 2
    assert result.statements[0].tenant_command == TenantCommand("42", False)
    # the row gets the tenant its envelope is sealed for
    assert result.render_simple([b"\x01", b"42"]) == (
        "SET pgseal.tenant = '42'; "
        "INSERT INTO customers (phone, business_id) VALUES (E'\\\\x01'::bytea, E'42')"
    )


def test_reset_then_write_in_the_same_query_is_refused() -> None:
    result = plan("RESET pgseal.tenant; INSERT INTO customers (phone) VALUES ('a')")
    assert isinstance(result, Refuse)
    assert "cannot tell which business owns this write to public.customers.phone" in result.message
    assert result.sqlstate == "42501"


# --- slots, parameters and tenants ---------------------------------------------------


def test_insert_literals_become_slots_with_row_tenants() -> None:
    result = rewrite(
        "INSERT INTO customers (business_id, company_name, tax_id) "
        "VALUES (7, 'Acme', 'T1'), ($1, 'Beta', NULL)"
    )
    assert result.sql_extended == (
        "INSERT INTO customers (business_id, company_name, tax_id, tax_id_bidx) "
        "VALUES (7, $2, $3, $4), ($1, $5, NULL, NULL)"
    )
    assert [(s.source, s.action, s.tenant) for s in result.slots] == [
        (Literal("Acme"), Seal(NAME), TenantLiteral("7")),
        (Literal("T1"), Seal(TAX), TenantLiteral("7")),
        (Literal("T1"), BlindIndex(TAX), TenantLiteral("7")),
        (Literal("Beta"), Seal(NAME), TenantFromParam(1)),
    ]
    assert result.client_param_count == 1
    assert result.params[0].action is BindAction.PASS
    assert result.parse_oids([0]) == (0, 17, 17, 17, 17)


def test_sqlalchemy_insert_seals_the_cast_parameter_in_place() -> None:
    result = rewrite(
        "INSERT INTO customers (business_id, phone) VALUES ($1::INTEGER, $2::VARCHAR) "
        "RETURNING customers.id"
    )
    assert result.slots == ()
    tenant_param, phone_param = result.params
    assert tenant_param.action is BindAction.PASS
    assert phone_param.action is BindAction.SEAL
    assert phone_param.column == PHONE
    assert phone_param.tenant == TenantFromParam(1)
    assert phone_param.parse_oid == 17
    # Described as Postgres would: the cast's type (varchar), stored as text.
    assert phone_param.logical_oid == 1043
    assert phone_param.cast is not None
    assert phone_param.cast.logical == "varchar"
    assert result.parse_oids([23, 1043]) == (23, 17)


def test_search_parameter_is_replaced_by_a_slot_and_sent_as_null() -> None:
    result = rewrite("SELECT * FROM customers WHERE tax_id = $1 AND business_id = $2")
    assert result.sql_extended == (
        "SELECT * FROM customers WHERE tax_id_bidx = $3 AND business_id = $2"
    )
    assert result.slots[0].source == ClientParam(1)
    assert result.slots[0].action == BlindIndex(TAX)
    assert result.slots[0].tenant == TenantFromParam(2)
    p1, p2 = result.params
    assert p1.action is BindAction.REPLACE_WITH_NULL
    assert p1.parse_oid == 25
    assert p1.logical_oid == 25
    assert p2.action is BindAction.PASS


def test_any_array_parameter() -> None:
    result = rewrite("SELECT id FROM customers WHERE tax_id = ANY($1::text[]) AND business_id = 3")
    assert result.sql_extended == (
        "SELECT id FROM customers WHERE tax_id_bidx = ANY($2) AND business_id = 3"
    )
    assert result.slots[0].source == ClientParamArray(1)
    assert result.slots[0].action == BlindIndexArray(TAX)
    assert result.slots[0].tenant == TenantLiteral("3")
    assert result.slots[0].type_oid == 1001


def test_declared_param_count_moves_added_parameters() -> None:
    result = rewrite("SELECT * FROM customers WHERE tax_id = $1", declared=3)
    assert result.sql_extended == "SELECT * FROM customers WHERE tax_id_bidx = $4"
    assert [p.action for p in result.params] == [
        BindAction.REPLACE_WITH_NULL,
        BindAction.PASS,
        BindAction.PASS,
    ]


def test_parameter_with_a_plain_use_gets_a_slot_instead_of_in_place_seal() -> None:
    result = rewrite("INSERT INTO customers (business_id, phone, name) VALUES (1, $1, $1)")
    assert result.sql_extended == (
        "INSERT INTO customers (business_id, phone, name) VALUES (1, $2, $1)"
    )
    assert result.slots[0].source == ClientParam(1)
    assert result.slots[0].action == Seal(PHONE)
    assert result.params[0].action is BindAction.PASS


def test_parameter_sealed_for_two_tenants_uses_slots() -> None:
    result = rewrite("INSERT INTO customers (business_id, phone) VALUES (1, $1), (2, $1)")
    assert result.sql_extended == (
        "INSERT INTO customers (business_id, phone) VALUES (1, $2), (2, $3)"
    )
    assert [s.tenant for s in result.slots] == [TenantLiteral("1"), TenantLiteral("2")]
    assert result.params[0].action is BindAction.REPLACE_WITH_NULL


def test_update_tenant_from_where_and_session_fallback() -> None:
    with_where = rewrite("UPDATE customers c SET phone = $1 WHERE c.business_id = $2")
    assert with_where.params[0].tenant == TenantFromParam(2)
    without = rewrite("UPDATE customers SET phone = $1 WHERE id = $2")
    assert without.params[0].tenant == SessionTenant()
    only_or = rewrite("UPDATE customers SET phone = $1 WHERE business_id = 1 OR id = 2")
    assert only_or.params[0].tenant == SessionTenant()


def test_update_guard_slot_is_the_session_tenant_as_untyped_text() -> None:
    result = rewrite("UPDATE customers SET phone = 'p' WHERE id = 2")
    assert [type(s.action).__name__ for s in result.slots] == ["Seal", "TenantValue"]
    assert result.slots[1].tenant == SessionTenant()
    assert result.parse_oids(()) == (17, 0)  # Postgres infers the tenant column's type
    assert result.formats_added == (1, 0)
    assert result.render_simple([b"\x01", b"4'2"]) == (
        "UPDATE customers SET phone = E'\\\\x01'::bytea "
        "WHERE (id = 2) AND customers.business_id = E'4''2'"
    )
    # a tenant in WHERE, or nothing sealed: no guard, the text is kept
    for sql in (
        "UPDATE customers SET phone = $1 WHERE business_id = $2 AND id = $3",
        "UPDATE customers SET phone = NULL WHERE id = 1",
    ):
        assert not any(type(s.action).__name__ == "TenantValue" for s in rewrite(sql).slots)


def test_render_simple_inlines_bytea_and_text_envelopes() -> None:
    result = rewrite(
        "INSERT INTO billing.invoices (business_id, note, iban) VALUES (1, 'n', 'DE00')"
    )
    assert [s.type_oid for s in result.slots] == [25, 17, 17]
    sql = result.render_simple([b"PGS1:abc'd", b"\x01\x02", None])
    assert sql == (
        "INSERT INTO billing.invoices (business_id, note, iban, iban_bidx) "
        "VALUES (1, E'PGS1:abc''d'::text, E'\\\\x0102'::bytea, NULL)"
    )
    with pytest.raises(ValueError, match="expected 3 slot values"):
        result.render_simple([None])


def test_envelope_literal_is_flagged() -> None:
    envelope = "\\x01" + "ab" * 40
    result = rewrite(f"INSERT INTO customers (business_id, phone) VALUES (1, '{envelope}')")
    source = result.slots[0].source
    assert isinstance(source, Literal)
    assert source.may_be_envelope
    assert source.text == envelope
    assert envelope not in repr(result)


def test_statement_info_reports_tables_and_operations() -> None:
    result = rewrite("UPDATE customers SET phone = $1 FROM leads l WHERE l.id = customers.id")
    (info,) = result.statements
    assert info.operation == "UPDATE"
    assert info.writes == frozenset({"public.customers"})
    ddl = plan("ALTER TABLE customers ADD COLUMN note bytea")
    assert isinstance(ddl, PassThrough)
    assert ddl.statements[0].is_ddl
    select = plan("SELECT phone FROM customers c JOIN billing.invoices i ON i.cid = c.id")
    assert isinstance(select, PassThrough)
    assert select.statements[0].reads == frozenset({"public.customers", "billing.invoices"})
    assert select.statements[0].operation == "SELECT"


def test_copy_info() -> None:
    result = rewrite("COPY customers (business_id, tax_id) FROM STDIN (FORMAT csv)")
    assert result.fragments == (
        "COPY customers (business_id, tax_id, tax_id_bidx) FROM STDIN (FORMAT csv)",
    )
    copy = result.statements[0].copy
    assert copy is not None
    assert (copy.table, copy.direction, copy.format) == ("public.customers", "from", "csv")
    assert copy.columns == ("business_id", "tax_id", "tax_id_bidx")
    out = plan("COPY (SELECT id, phone FROM customers) TO STDOUT WITH BINARY")
    assert isinstance(out, PassThrough)
    query_copy = out.statements[0].copy
    assert query_copy is not None
    assert query_copy.outputs == (None, PHONE)
    assert query_copy.format == "binary"


def test_copy_without_the_tenant_column_gets_it_appended() -> None:
    result = rewrite("COPY customers (tax_id, phone) FROM STDIN")
    assert result.fragments == (
        "COPY customers (tax_id, phone, tax_id_bidx, business_id) FROM STDIN",
    )
    copy = result.statements[0].copy
    assert copy is not None
    assert copy.appended_tenant
    assert copy.columns == ("tax_id", "phone", "tax_id_bidx", "business_id")
    # No protected column in the list: nothing to seal, nothing appended.
    assert isinstance(plan("COPY customers (id) FROM STDIN"), PassThrough)


# --- multi-statement strings ---------------------------------------------------------


def test_multi_statement_rewrites_only_what_it_must() -> None:
    sql = (
        "SELECT  1 ; INSERT INTO customers (business_id, phone) VALUES (1, 'a');\n"
        "select phone from customers;"
    )
    result = rewrite(sql)
    assert result.render_simple([b"\xaa"]) == (
        "SELECT  1 ; INSERT INTO customers (business_id, phone) VALUES (1, E'\\\\xaa'::bytea);\n"
        "select phone from customers;"
    )
    assert [s.operation for s in result.statements] == ["SELECT", "INSERT", "SELECT"]


def test_multi_statement_any_refusal_refuses_all() -> None:
    result = plan(
        "INSERT INTO customers (business_id, phone) VALUES (1, 'a'); "
        "SELECT phone FROM customers ORDER BY phone"
    )
    assert isinstance(result, Refuse)
    assert "ORDER BY" in result.message


def test_multi_statement_pass_through() -> None:
    sql = "BEGIN; SELECT phone FROM customers WHERE id = 1; COMMIT"
    result = plan(sql)
    assert isinstance(result, PassThrough)
    assert [s.operation for s in result.statements] == ["BEGIN", "SELECT", "COMMIT"]


# --- driver-generated SQL --------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # psycopg (client-side binding off) / asyncpg prepared
        (
            "SELECT customers.id, customers.phone FROM customers "
            "WHERE customers.tax_id = $1::VARCHAR",
            "SELECT customers.id, customers.phone FROM customers WHERE customers.tax_id_bidx = $2",
        ),
        # SQLAlchemy Core update
        (
            "UPDATE customers SET phone=$1::VARCHAR WHERE customers.id = $2::INTEGER "
            "AND customers.business_id = $3::INTEGER",
            "UPDATE customers SET phone = $1 WHERE customers.id = CAST($2 AS INT) "
            "AND customers.business_id = CAST($3 AS INT)",
        ),
        # SQLAlchemy executemany "insertmanyvalues"
        (
            "INSERT INTO customers (business_id, phone) VALUES ($1::INTEGER, $2::VARCHAR), "
            "($3::INTEGER, $4::VARCHAR) RETURNING customers.id",
            "INSERT INTO customers (business_id, phone) VALUES (CAST($1 AS INT), $2), "
            "(CAST($3 AS INT), $4) RETURNING customers.id",
        ),
    ],
)
def test_driver_generated_sql(sql: str, expected: str) -> None:
    assert rewrite(sql).sql_extended == expected


def test_no_plaintext_literal_in_any_rewritten_sql() -> None:
    for sql, _ in REWRITES:
        result = rewrite(sql)
        simple = (
            result.render_simple([b"\x01"] * len(result.slots))
            if not any(isinstance(s.source, ClientParamArray) for s in result.slots)
            else ""
        )
        for slot in result.slots:
            if isinstance(slot.source, Literal) and slot.source.text:
                assert f"'{slot.source.text}'" not in result.sql_extended
                assert f"'{slot.source.text}'" not in simple


@pytest.mark.parametrize("index", [0, -1])
def test_a_plan_cannot_name_parameter_zero(index: int) -> None:
    """``$0`` would index a Bind's values from the end: the plan types refuse it,
    so a planner bug becomes a refusal instead of sealing the wrong value."""
    from rules.plan_types import BindAction, ClientParamArray, ParamPlan, TenantFromParam

    for make in (
        ClientParam,
        ClientParamArray,
        TenantFromParam,
        lambda i: ParamPlan(i, BindAction.SEAL),
    ):
        with pytest.raises(ValueError, match="is not a parameter"):
            make(index)
    assert ClientParam(1).index == 1


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TEMP TABLE customers (id int, business_id int, phone bytea)",
        "create temporary table if not exists Customers (LIKE public.customers)",
        'CREATE LOCAL TEMP TABLE pg_temp."customers" (id int)',
        "CREATE GLOBAL TEMPORARY TABLE invoices (note text)",  # billing.invoices' name too
        "/* staging */ CREATE TEMP TABLE customers AS SELECT 1",
    ],
)
def test_a_temporary_table_named_like_a_protected_one_is_refused(sql: str) -> None:
    # pg_temp is searched first: the session's bare name would be the temporary
    # table, its values sealed by pgseal and its envelopes never opened.
    result = plan(sql)
    assert isinstance(result, Refuse), result
    assert result.sqlstate == "0A000"
    assert "encrypted table" in result.message


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TEMP TABLE customers_staging (LIKE customers)",
        "CREATE TABLE archive.customers (id int)",  # a schema of its own: not searched first
        'CREATE TEMP TABLE "Customers" (id int)',  # another name: quoted, case kept
    ],
)
def test_other_tables_near_a_protected_one_are_created(sql: str) -> None:
    assert not isinstance(plan(sql), Refuse)
