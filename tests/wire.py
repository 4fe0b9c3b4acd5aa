"""Reading a server's messages off a plain socket, for tests that speak the protocol by hand."""

from __future__ import annotations

import socket

from proxy import codec


def messages_until_ready(sock: socket.socket, count: int = 1) -> list[tuple[int, bytes]]:
    """(type byte, body) of every message up to the ``count``-th ReadyForQuery."""
    buf = b""
    out: list[tuple[int, bytes]] = []
    sock.settimeout(10)
    while True:
        chunk = sock.recv(65536)
        assert chunk, "pgseal closed the connection"
        buf += chunk
        last = 0
        for kind, start, end in codec.frames(buf):
            out.append((kind, buf[start + 5 : end]))
            last = end
            if kind == ord("Z"):
                count -= 1
                if count == 0:
                    return out
        buf = buf[last:]
