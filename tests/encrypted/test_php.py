"""PHP's PDO (pdo_pgsql) on protected columns, in its three ways of sending a
statement: named server-side statements (text parameters, no types), emulated
prepares (values quoted into the SQL: pgseal seals the literals) and unnamed
statements. Writes, searchable equality and IN, every kind of value PDO binds
(a LOB as binary bytea, a bool, an int), a refusal; the raw columns hold
envelopes and the plaintexts never reached Postgres."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from tests.encrypted.conftest import Stack, assert_envelope, assert_never_reached
from tests.php.runner import run_pdo


async def test_pdo_on_protected_columns(stack: Stack, raw: asyncpg.Connection) -> None:
    tag = secrets.token_hex(4)
    checks = await asyncio.to_thread(
        run_pdo, "encrypted", "127.0.0.1", stack.proxy.port, "postgres", "postgres", tag
    )
    for how in ("server", "emulated", "unnamed"):
        assert checks[f"{how}:search"] == [[f"php-{how}-7", f"555-{tag}-7"]], how
        assert checks[f"{how}:in"] == [f"php-{how}-3", f"php-{how}-4"], how
        # Typed by the RowDescription pgseal rewrites: a PHP bool, stringified "1".
        lob = "0001ff" + tag.encode().hex()
        want = [f"php text {tag} it's", "-12.50", "1", "2024-02-29", lob, "42"]
        assert checks[f"{how}:typed"] == want, how
        refused = checks[f"{how}:refused"]
        assert isinstance(refused, dict)
        assert refused["sqlstate"] == "0A000", how
        assert "ORDER BY on encrypted column public.customers.phone" in refused["message"]
        assert checks[f"{how}:after"] == 20, how
    rows = await raw.fetch(
        "SELECT phone, email, tax_id FROM customers WHERE business_id BETWEEN 9101 AND 9103"
    )
    assert len(rows) == 60
    for row in rows:
        assert_envelope(row["phone"], f"555-{tag}")
        assert_envelope(row["email"], tag)
        assert_envelope(row["tax_id"], tag)
    typed = await raw.fetch(
        "SELECT c_text, c_bytea FROM typed WHERE business_id BETWEEN 9101 AND 9103"
    )
    assert len(typed) == 3
    for row in typed:
        assert_envelope(row["c_text"], f"php text {tag}")
        assert_envelope(row["c_bytea"])
    await assert_never_reached(stack, f"555-{tag}", f"php text {tag}")
