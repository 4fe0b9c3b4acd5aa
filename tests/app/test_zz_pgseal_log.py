"""Runs last in tests/app: pgseal's log of the whole app suite holds none of its plaintext.

The tests' pgseal runs at log level debug (tests/conftest.py), the most it ever
says. Values shorter than 8 characters are not hunted (they are words such as
"card" that a log may contain for other reasons); the master key is checked by
tests/test_zz_secrets.py for every pgseal of the run.
"""

from __future__ import annotations

from tests.app.conftest import AppDatabase
from tests.app.plaintexts import MIN_SUBSTRING, written_plaintexts


def test_pgseal_logged_no_plaintext_the_app_sent(app_database: AppDatabase) -> None:
    assert app_database.pgseal_log is not None
    log = app_database.pgseal_log.read_text(errors="replace")
    assert "column encryption on" in log, "not the log of an encrypting pgseal"
    values = {v for v in written_plaintexts() if len(v) >= MIN_SUBSTRING}
    assert len(values) > 100, "the app suite sent too little to check"
    leaked = sorted(v for v in values if v in log)
    assert not leaked, f"{len(leaked)} plaintext values in pgseal's log"
