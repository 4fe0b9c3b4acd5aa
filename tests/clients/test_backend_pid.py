"""Clients see their backend's real pid (with a cancel secret of pgseal's own).

Drivers compare the pid of BackendKeyData with the pid of each notification
to tell their own NOTIFYs from others', and apps with pg_backend_pid() and
pg_stat_activity: all three agree through pgseal, as on a direct connection.
"""

from __future__ import annotations

import asyncio

import asyncpg

from proxy.server import Proxy, ProxySettings
from proxy.session import RegisterCancelKey
from tests.clients.conftest import Relay


async def test_the_pid_is_the_backends(relay: Relay) -> None:
    conn = await asyncpg.connect(relay.dsn())
    try:
        pid = conn.get_server_pid()
        assert pid == await conn.fetchval("SELECT pg_backend_pid()")
        heard: asyncio.Queue[int] = asyncio.Queue()
        await conn.add_listener("pgseal_pid", lambda _c, sender, _ch, _p: heard.put_nowait(sender))
        await conn.execute("NOTIFY pgseal_pid, 'self'")
        assert await asyncio.wait_for(heard.get(), 10) == pid  # its own notification
    finally:
        await conn.close()


def test_a_closed_connection_never_drops_the_key_of_a_new_one_with_its_pid() -> None:
    proxy = Proxy(ProxySettings(upstream_host="127.0.0.1"))
    proxy.register_cancel(RegisterCancelKey(4242, b"old-secret", 4242, b"up-1"))
    # The old backend exited; Postgres gave its pid to a new backend, whose
    # client registered before the old client's connection was torn down.
    proxy.register_cancel(RegisterCancelKey(4242, b"new-secret", 4242, b"up-2"))
    proxy.unregister_cancel(4242, b"old-secret")
    assert proxy.cancel_keys[4242].upstream_secret == b"up-2"
    proxy.unregister_cancel(4242, b"new-secret")
    assert 4242 not in proxy.cancel_keys
