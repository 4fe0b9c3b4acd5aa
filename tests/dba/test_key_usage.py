"""proxy.audit.key_version_usage: values per key version counted by Postgres.

Hand-made envelopes (the counter only reads the key-id bytes, it never opens a
value) next to values that merely look like one: the SQL count must agree with
the audit's row-by-row classification, and garbage must neither be counted
nor make the query fail.
"""

from __future__ import annotations

import os

from crypto.envelope import MIN_ENVELOPE_LEN, VERSION, armor, key_id_bytes
from proxy.audit import KeyVersionUsage, audit, key_version_usage
from rules.model import ProtectedColumn, ProtectedTable, Rules
from rules.schema_check import GUARD_FUNCTIONS_SQL, stored_key_id_sql
from tests.dba.conftest import DbaEnv

KEYS = {  # key id -> (tenant, version, state)
    1001: ("a", 1, "retired"),
    1002: ("a", 2, "active"),
    2001: ("b", 1, "active"),
    3001: ("c", 1, "destroyed"),
}
RULES = Rules(
    {
        "public.contacts": ProtectedTable(
            "public",
            "contacts",
            "tenant",
            {
                "phone": ProtectedColumn("public", "contacts", "phone", "text"),
                "note": ProtectedColumn("public", "contacts", "note", "text", storage="text"),
                # Not converted yet (text where bytea is configured): skipped, no error.
                "email": ProtectedColumn("public", "contacts", "email", "text"),
            },
        ),
        "public.missing": ProtectedTable(
            "public", "missing", "tenant", {"x": ProtectedColumn("public", "missing", "x", "text")}
        ),
    }
)


def _envelope(key_id: int, size: int = 20) -> bytes:
    return bytes([VERSION]) + key_id_bytes(key_id) + os.urandom(12 + 16 + size)


async def test_sql_count_matches_the_audit(dba: DbaEnv) -> None:
    con = await dba.connect()
    try:
        await con.executemany(
            "INSERT INTO pgseal.keys (key_id, tenant, kind, version, state, master_key_id,"
            " wrapped_key) VALUES ($1, $2, 'data', $3, $4, '0123456789abcdef',"
            " CASE WHEN $4 = 'destroyed' THEN NULL ELSE '\\x00'::bytea END)",
            [(k, t, v, s) for k, (t, v, s) in KEYS.items()],
        )
        await con.execute(
            "CREATE TABLE contacts (id int PRIMARY KEY, tenant text, phone bytea, note text,"
            " email text)"
        )
        short = bytes([VERSION]) + key_id_bytes(1001) + bytes(MIN_ENVELOPE_LEN - 10)
        rows = [
            (1, "a", _envelope(1001), armor(_envelope(1001, 0)), "x@example.net"),
            (2, "a", _envelope(1002), armor(_envelope(1002)), None),
            (3, "a", _envelope(1001), None, None),
            (4, "b", _envelope(2001), armor(_envelope(2001)), None),
            (5, "b", b"+1-555-0100 plaintext", "pgseal1:!!!! not base64", None),
            (6, "b", short, "pgseal1:" + "A" * 10, None),  # too short for an envelope
            (7, "c", _envelope(3001), armor(_envelope(3001)), None),
            (8, "a", _envelope(9999), None, None),  # unknown key id: audit's finding
            (9, "a", None, None, None),
        ]
        await con.executemany("INSERT INTO contacts VALUES ($1, $2, $3, $4, $5)", rows)
        usage = await key_version_usage(con, RULES)
        scanned = await audit(con, RULES)
    finally:
        await con.close()
    assert usage == [
        KeyVersionUsage("a", 1, "retired", 3),
        KeyVersionUsage("a", 2, "active", 2),
        KeyVersionUsage("b", 1, "active", 2),
        KeyVersionUsage("c", 1, "destroyed", 2),
    ]
    assert usage == scanned.key_versions


async def test_key_id_sql_accepts_exactly_what_the_guard_accepts(dba: DbaEnv) -> None:
    # The counter inlines the guard's test (rewritten for speed in the text form).
    note = RULES.tables["public.contacts"].columns["note"]
    phone = RULES.tables["public.contacts"].columns["phone"]
    texts = [armor(_envelope(7, 0)), armor(_envelope(7, 1)), armor(_envelope(7, 2)),
             "pgseal1:" + "A" * 50, "pgseal1:" + "A" * 49, "pgseal1:A" + "b" * 48 + "==",
             "pgseal1:B" + "b" * 60, "pgseal1:A" + "b" * 60 + "===", "pgseal1:A" + "b" * 60 + "!",
             "xpgseal1:A" + "b" * 60, "", "plain note"]  # fmt: skip
    blobs = [_envelope(7, 0), _envelope(7, 0)[:-1], b"\x02" + _envelope(7)[1:], b"", b"x" * 80]
    con = await dba.connect()
    try:
        await con.execute(GUARD_FUNCTIONS_SQL)
        got_text = await con.fetch(
            f"SELECT ({stored_key_id_sql(note)}) AS k, pgseal.is_armored_envelope(note) AS ok"
            " FROM unnest($1::text[]) AS note",
            texts,
        )
        got_bytea = await con.fetch(
            f"SELECT ({stored_key_id_sql(phone)}) AS k, pgseal.is_envelope(phone) AS ok"
            " FROM unnest($1::bytea[]) AS phone",
            blobs,
        )
    finally:
        await con.close()
    values: list[str | bytes] = [*texts, *blobs]
    for value, row in zip(values, got_text + got_bytea, strict=True):
        assert (row["k"] is not None) == row["ok"], value
    assert [r["ok"] for r in got_text] == [True, True, True, True] + [False] * 8
    assert [r["k"] for r in got_text[:3]] == [key_id_bytes(7)] * 3
    assert [r["ok"] for r in got_bytea] == [True, False, False, False, False]
