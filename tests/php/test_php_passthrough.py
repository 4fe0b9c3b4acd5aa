"""PHP's PDO (pdo_pgsql: libpq underneath) through a pass-through pgseal.

Three ways PDO talks: named server-side statements that it deallocates with SQL
``DEALLOCATE`` when the statement object goes, emulated prepares (values quoted
into the SQL text), and unnamed statements (``PGSQL_ATTR_DISABLE_PREPARES``).
Each must answer as Postgres does straight.
"""

from __future__ import annotations

import secrets

from tests.clients.conftest import Relay
from tests.php.runner import run_pdo


def test_pdo_through_pgseal_answers_as_postgres(relay: Relay) -> None:
    tag = secrets.token_hex(4)
    proxied = run_pdo(
        "passthrough", relay.proxy.host, relay.proxy.port, relay.database, relay.user, tag
    )
    server = relay.server
    direct = run_pdo("passthrough", server.host, server.port, relay.database, relay.user, tag + "d")
    assert proxied.keys() == direct.keys()
    for how in ("server", "emulated", "unnamed"):
        assert proxied[f"{how}:reused"] == [50, f"{how}-7 it's \\ ✓"]
        assert proxied[f"{how}:bytea"] == "0001ff" + how.encode().hex()
        # An error in a transaction, then 25P02 until ROLLBACK, which undoes the insert.
        assert proxied[f"{how}:transaction"] == ["42P01", "25P02", 0]
        assert proxied[f"{how}:transaction"] == direct[f"{how}:transaction"]
