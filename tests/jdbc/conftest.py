"""pgjdbc through a pass-through pgseal: the ``relay`` of tests/clients, and the Java runs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.clients.conftest import Relay, relay
from tests.jdbc.runner import Results, compiled, url

__all__ = ["PassThroughRuns", "passthrough", "relay"]


@dataclass(frozen=True)
class PassThroughRuns:
    """The same scenarios straight at Postgres and through pgseal, in one database."""

    direct: Results
    proxy: Results


@pytest.fixture(scope="module")
def passthrough(relay: Relay) -> PassThroughRuns:
    jdbc = compiled()
    # Two JVMs at once (the scenarios use their own tables and channels, by prefix).
    direct = jdbc.start(
        "PassThrough",
        url(relay.server.host, relay.server.port, relay.database, relay.user),
        "jdbc_direct",
    )
    proxy = jdbc.start(
        "PassThrough",
        url(relay.proxy.host, relay.proxy.port, relay.database, relay.user),
        "jdbc_proxy",
    )
    return PassThroughRuns(jdbc.results(direct), jdbc.results(proxy))
