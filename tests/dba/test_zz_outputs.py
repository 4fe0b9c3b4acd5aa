"""Runs last in tests/dba: no CLI output of the package shows a protected value or a key.

The tools name rows by primary key only; this scans everything they printed
(stdout and stderr of every command) for the plaintext the tests stored and
for the master keys in base64 and hex.
"""

from __future__ import annotations

import base64

from tests.dba.conftest import MASTER_KEYS, OUTPUTS

#: Prefixes of the plaintext values the tests write (see each test's SCHEMA).
PLAINTEXT_SAMPLES = ("+1-555-0", "+44-", "TX-1", "DE89-3704", "Payer 1", "@Example.com",
                     "@example.org", "note 1", "memo 1")  # fmt: skip


def test_no_plaintext_or_key_in_any_output() -> None:
    assert len(OUTPUTS) > 20  # the other tests of the package ran first
    text = "\n".join(OUTPUTS)
    for sample in PLAINTEXT_SAMPLES:
        assert sample not in text, sample
    for key in MASTER_KEYS:
        raw = base64.b64decode(key)
        assert key not in text
        assert raw.hex() not in text.lower()
