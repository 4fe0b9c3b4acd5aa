"""A fault-injecting TCP hop for tests and the soak: loopback only.

``FaultHop`` relays every connection it accepts to a target (Postgres) and lets
the caller break the link on demand, the way a network or a dying server does:

- ``delay``: seconds added before each chunk is passed on, both directions
  (a slow link; ordering is kept because each direction is one task);
- ``stall()``: hold all traffic of the links open now and of new ones until
  ``resume()`` (a link that stops answering without closing);
- ``reset_one()`` / ``reset_all()``: an abortive close (RST) of links, as when a
  server is killed or a middlebox drops state;
- ``answer = False``: accept new connections but never connect them onward (a
  server that accepts TCP and then says nothing).

``silent_listener()`` makes the other kind of unresponsive server: a listening
socket whose accept queue is full, so a TCP connect to it hangs (the kernel
drops the SYN), which is what a connect timeout must catch.

Modelled on asyncpg's ``_testbase/fuzzer.py`` and psycopg's ``tests/fix_proxy.py``;
unlike those it counts what it did, so a soak can report its faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["FaultHop", "HopCounters", "silent_listener"]

_CHUNK = 65536


@dataclass
class HopCounters:
    """What the hop did, for reports."""

    links: int = 0
    resets: int = 0
    stalls: int = 0
    delayed_chunks: int = 0


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        for writer in (self.client, self.server):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


class FaultHop:
    """Listen on 127.0.0.1 and relay to ``target_host:target_port``, breakably."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.delay = 0.0
        self.answer = True
        self.counters = HopCounters()
        self.links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._rng = random.Random()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> FaultHop:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset_all(count=False)
        for link in list(self.links):
            for task in link.tasks:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    # -- faults ----------------------------------------------------------------
    def stall(self) -> None:
        self.counters.stalls += 1
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def reset_one(self) -> bool:
        """Reset one random link; False when none is open."""
        if not self.links:
            return False
        link = self._rng.choice(sorted(self.links, key=id))
        self._drop(link)
        self.counters.resets += 1
        return True

    def reset_all(self, *, count: bool = True) -> int:
        links = list(self.links)
        for link in links:
            self._drop(link)
        if count:
            self.counters.resets += len(links)
        return len(links)

    def _drop(self, link: _Link) -> None:
        link.reset()
        self.links.discard(link)

    # -- relaying ----------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        self.links.add(link)
        self.counters.links += 1
        if not self.answer:
            with contextlib.suppress(OSError, ConnectionError):
                while await reader.read(_CHUNK):
                    pass
            self._finish(link)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self._finish(link)
            return
        link.server = up_writer
        if link not in self.links:  # reset while connecting
            link.reset()
            return
        link.tasks = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._finish(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                if self.delay > 0:
                    self.counters.delayed_chunks += 1
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

    def _finish(self, link: _Link) -> None:
        self.links.discard(link)
        for writer in (link.client, link.server):
            if writer is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.close()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port where TCP connects hang: yields the port.

    ``listen(0)`` with one connection already queued and never accepted makes
    Linux drop further SYNs, so a connect neither succeeds nor is refused.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        yield port
    finally:
        filler.close()
        listener.close()
