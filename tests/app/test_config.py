"""The root config.yaml's ``tables:`` section, as pgseal loads it, against the app's promises.

test_schema.py checks that the section and the migrations agree column by column;
here the file goes through pgseal's own loader (``rules.config.load_config``),
every data class issue 5 lists is encrypted, the lookups the app makes are
searchable, and each amount the app sums in SQL is plaintext with a comment
beside it saying so.
"""

from __future__ import annotations

import re

import pytest

from rules.config import load_config
from tests.app.plaintexts import RULES_PATH

#: Every data class the app promises to encrypt: table -> columns.
ENCRYPTED = {
    "users": {"email", "full_name", "password_hash", "totp_secret"},
    "customers": {
        "company_name", "contact_name", "email", "phone", "address", "tax_id", "vat_number",
    },
    "suppliers": {
        "company_name", "contact_name", "email", "phone", "address", "tax_id", "vat_number",
    },
    "invoices": {"notes"},
    "quotes": {"notes"},
    "line_items": {"description"},
    "payments": {"method", "reference", "notes"},
    "expenses": {"merchant", "description"},
    "mileage_logs": {"from_place", "to_place", "purpose", "distance_miles"},
    "time_entries": {"description"},
    "bank_accounts": {
        "account_name", "bank_name", "account_number", "sort_code", "iban", "swift_bic",
    },
    "payment_instructions": {"instructions"},
    "integration_credentials": {"api_key", "oauth_refresh_token"},
}  # fmt: skip

SEARCHABLE = {
    ("customers", "email"),
    ("customers", "tax_id"),
    ("customers", "vat_number"),
    ("suppliers", "email"),
    ("suppliers", "tax_id"),
    ("suppliers", "vat_number"),
    ("users", "email"),
}

#: Amounts the app adds up in SQL: they must stay plaintext.
SUMMED_IN_SQL = {
    ("line_items", "quantity"),
    ("line_items", "unit_price"),
    ("payments", "amount"),
    ("expenses", "amount"),
    ("time_entries", "duration_minutes"),
}


def test_root_config_loads_with_pgseal_and_encrypts_every_data_class() -> None:
    config = load_config(RULES_PATH)
    for table, columns in ENCRYPTED.items():
        rules = config.rules.table(table)
        assert rules is not None, table
        assert rules.tenant_column == "business_id", table
        assert set(rules.columns) == columns, table
    for table, column in SEARCHABLE:
        rules = config.rules.table(table)
        assert rules is not None
        assert rules.columns[column].searchable == f"{column}_bidx", (table, column)
        assert "casefold" in rules.columns[column].normalize, (table, column)
    # Nothing else is searchable: a blind index leaks equality, so only where needed.
    searchable = {
        (table, name)
        for table in ENCRYPTED
        for name, rule in (config.rules.table(table) or pytest.fail(table)).columns.items()
        if rule.searchable
    }
    assert searchable == SEARCHABLE


def test_amounts_summed_in_sql_stay_plaintext_with_a_comment_saying_why() -> None:
    config = load_config(RULES_PATH)
    text = RULES_PATH.read_text()
    for table, column in SUMMED_IN_SQL:
        rules = config.rules.table(table)
        assert rules is not None
        assert column not in rules.columns, (table, column)
        # A comment line in the table's own block names the column and the reason.
        block = re.search(rf"\n  public\.{table}:\n(.*?)(?=\n  public\.|\Z)", text, re.S)
        assert block is not None, table
        comments = [ln for ln in block.group(1).splitlines() if ln.strip().startswith("#")]
        assert any(column in ln and "plaintext" in ln and "SQL" in ln for ln in comments), (
            table,
            column,
        )
