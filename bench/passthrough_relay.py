"""The floor for a Python proxy: a uvloop byte relay that parses nothing.

    .venv/bin/python bench/passthrough_relay.py LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT

(UPSTREAM_HOST may be a unix-socket directory, as libpq's ``host=``.)

``bench/passthrough --with-relay`` runs it as a fourth target, so pgseal's
cost can be split into what any asyncio proxy pays (event loop, syscalls)
and what pgseal's framing and bookkeeping add on top.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import cast


class _Side(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.early.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def main(listen: int, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def accept() -> _Side:
        client = _Side()

        async def connect() -> None:
            if host.startswith("/"):  # a unix-socket directory, as libpq's host=
                path = f"{host}/.s.PGSQL.{port}"
                _transport, upstream = await loop.create_unix_connection(_Side, path)
            else:
                _transport, upstream = await loop.create_connection(_Side, host, port)
            upstream.peer, client.peer = client, upstream
            assert upstream.transport is not None
            for chunk in client.early:
                upstream.transport.write(chunk)
            client.early.clear()

        task = loop.create_task(connect())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return client

    server = await loop.create_server(accept, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
