"""Secrets hygiene over the whole run: no key and no plaintext in any pgseal output.

Runs last (file order). It exercises a pgseal of its own at debug level with
distinctive values (writes, reads, searches, refusals, a tampered value, a bad
parameter, a killed upstream), then scans every pgseal log of the test run for
every master key it was given (base64, hex and raw) and for the values.
"""

from __future__ import annotations

import base64
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PgServer
from tests.pgseal_process import LAUNCHED
from tests.stacks import encrypted_database

VALUES = ["hygiene-phone-0a9f", "hygiene-tax-77c1", "hygiene-note-e3d2", "1234567.891"]


def _forms(secret: str) -> list[bytes]:
    forms = [secret.encode()]
    try:
        raw = base64.b64decode(secret, validate=True)
    except ValueError:
        return forms
    if len(raw) == 32:
        forms += [raw, raw.hex().encode(), base64.urlsafe_b64encode(raw)]
    return forms


async def _exercise(pg_server: PgServer, direct: str, tmp_path: Path) -> None:
    encrypted = await encrypted_database(
        pg_server,
        direct,
        tmp_path,
        table_sql="CREATE TABLE h (id serial, business_id int, phone bytea, tax bytea,"
        " tax_bidx bytea, amount bytea)",
        rules="tables:\n  h:\n    tenant_column: business_id\n    columns:\n"
        "      phone: {type: text}\n      tax: {type: text, searchable: tax_bidx}\n"
        "      amount: {type: numeric}\n",
    )
    proxy = encrypted.proxy
    try:
        conn = await asyncpg.connect(encrypted.dsn())
        await conn.execute(
            "INSERT INTO h (business_id, phone, tax, amount) VALUES ($1, $2, $3, $4)",
            1,
            VALUES[0],
            VALUES[1],
            __import__("decimal").Decimal(VALUES[3]),
        )
        await conn.execute(f"INSERT INTO h (business_id, phone) VALUES (1, '{VALUES[2]}')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as no_tenant:
            await conn.fetchval("SELECT phone FROM h WHERE tax = $1", VALUES[1])
        assert "search of public.h.tax" in str(no_tenant.value)
        found = await conn.fetchval(
            "SELECT phone FROM h WHERE tax = $1 AND business_id = 1", VALUES[1]
        )
        assert found == VALUES[0]
        for sql in (
            f"SELECT phone FROM h WHERE phone LIKE '{VALUES[0]}%'",
            f"SELECT * FROM h WHERE phone = '{VALUES[0]}'",
        ):
            with pytest.raises(asyncpg.FeatureNotSupportedError):
                await conn.fetch(sql)
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute(
                "INSERT INTO h (business_id, amount) VALUES (1, $1::text::numeric)", VALUES[0]
            )
        raw = await asyncpg.connect(direct)
        await raw.execute(
            "UPDATE h SET phone = overlay(phone placing '\\xff'::bytea from 30 for 1)"
            " WHERE tax IS NOT NULL"
        )
        await raw.close()
        with pytest.raises(asyncpg.PostgresError) as tampered:
            await conn.fetch("SELECT phone FROM h")
        assert tampered.value.sqlstate == "XX001"
        for value in VALUES:
            assert value not in str(tampered.value)
        await conn.close()
    finally:
        proxy.stop()


async def test_no_key_or_plaintext_in_any_pgseal_log(
    pg_server: PgServer, fresh_db: str, tmp_path: Path
) -> None:
    await _exercise(pg_server, fresh_db, tmp_path)
    assert LAUNCHED, "the exercise above started a pgseal"
    for log_path, given in LAUNCHED:
        if not log_path.exists():
            continue
        data = log_path.read_bytes()
        for secret in given:
            for form in _forms(secret):
                assert form not in data, f"a secret given to pgseal is in {log_path}"
        for value in VALUES:
            assert value.encode() not in data, f"a plaintext value is in {log_path}"
