"""Values pgseal inlines into a simple Query mean the same whatever the session's
standard_conforming_strings: with it off (psycopg2 then quotes as E'...'), a plain
'\\x01...' literal is read as the byte 0x01 followed by the hex digits as text, so
an envelope written that way was stored corrupted and could never be opened."""

from __future__ import annotations

from tests.rules.test_plan import rewrite


def test_bytea_envelope_is_an_escape_string() -> None:
    result = rewrite("INSERT INTO customers (business_id, phone) VALUES (1, 'p')")
    sql = result.render_simple([b"\x01\x5c\x27\xff"])  # bytes that look like \ and '
    assert sql == "INSERT INTO customers (business_id, phone) VALUES (1, E'\\\\x015c27ff'::bytea)"


def test_tenant_and_armoured_values_escape_backslash_and_quote() -> None:
    result = rewrite("UPDATE customers SET phone = 'p' WHERE id = 2")
    sql = result.render_simple([b"\x01", b"4\\'2"])
    assert sql.endswith("customers.business_id = E'4\\\\''2'")
    armoured = rewrite(
        "INSERT INTO billing.invoices (business_id, note, iban) VALUES (1, 'n', NULL)"
    )
    sql = armoured.render_simple([b"PGS1:a\\b"])
    assert "E'PGS1:a\\\\b'::text" in sql
