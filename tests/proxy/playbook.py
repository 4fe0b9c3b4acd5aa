"""A script runner for ``proxy.session.Session`` (after mitmproxy's ``Playbook``).

A script is a chain of steps: bytes from the client or the server go in, and
the bytes the session must send each way and the actions it must ask for are
stated right after. Every output has to be expected: feeding the next input
while something the script did not mention is still queued fails the test, so
a script cannot pass by forgetting to look.

    pb = Playbook(Session(1))
    pb.client(wire.query("SELECT 1")).to_server(wire.query("SELECT 1"))
    pb.server(wire.ready()).to_client(wire.ready())
    pb.done()

Inputs can be cut into chunks (``chunk=``) to check that no decision depends
on how TCP delivered the bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.session import Action, Session


class Playbook:
    """Drives one session; see the module docstring."""

    def __init__(self, session: Session, *, chunk: int | None = None) -> None:
        self.session = session
        self.chunk = chunk
        self._to_server = b""
        self._to_client = b""
        self._actions: list[Action] = []

    # -- inputs --------------------------------------------------------------------
    def client(self, *messages: bytes) -> Playbook:
        """The client sent ``messages`` (concatenated, optionally chunked)."""
        return self._feed(self.session.client_data, b"".join(messages))

    def server(self, *messages: bytes) -> Playbook:
        """The server sent ``messages``."""
        return self._feed(self.session.server_data, b"".join(messages))

    def call(self, event: Callable[[], None]) -> Playbook:
        """Some other event: ``server_connected``, ``server_closed``, ``refuse``..."""
        self._check_drained("before the next event")
        event()
        self._collect()
        return self

    def _feed(self, sink: Callable[[bytes], None], data: bytes) -> Playbook:
        self._check_drained("before the next input")
        step = self.chunk or max(len(data), 1)
        for pos in range(0, len(data), step):
            sink(data[pos : pos + step])
            self._collect()
        return self

    def _collect(self) -> None:
        s = self.session
        self._to_server += b"".join(s.to_server)
        self._to_client += b"".join(s.to_client)
        self._actions += s.actions
        s.to_server, s.to_client, s.actions = [], [], []

    # -- expectations ----------------------------------------------------------------
    def to_server(self, *messages: bytes) -> Playbook:
        expected = b"".join(messages)
        assert self._to_server == expected, _diff("to_server", self._to_server, expected)
        self._to_server = b""
        return self

    def to_client(self, *messages: bytes) -> Playbook:
        expected = b"".join(messages)
        assert self._to_client == expected, _diff("to_client", self._to_client, expected)
        self._to_client = b""
        return self

    def take_client(self) -> bytes:
        """What went to the client, for tests that check it piecewise."""
        out, self._to_client = self._to_client, b""
        return out

    def actions(self, *expected: type[Action] | Action) -> list[Action]:
        """The actions asked for, by type or by value, in order; returns them."""
        got, self._actions = self._actions, []
        assert len(got) == len(expected), f"actions: got {got!r}, expected {expected!r}"
        for action, want in zip(got, expected, strict=True):
            if isinstance(want, type):
                assert isinstance(action, want), f"action {action!r} is not a {want.__name__}"
            else:
                assert action == want, f"action {action!r} != {want!r}"
        return got

    def done(self) -> None:
        self._check_drained("at the end of the script")

    def _check_drained(self, when: str) -> None:
        left = []
        if self._to_server:
            left.append(f"to_server={self._to_server!r}")
        if self._to_client:
            left.append(f"to_client={self._to_client!r}")
        if self._actions:
            left.append(f"actions={self._actions!r}")
        assert not left, f"unexpected output {when}: " + ", ".join(left)


def _diff(what: str, got: bytes, expected: bytes) -> str:
    return f"{what}:\n  got      {_messages(got)}\n  expected {_messages(expected)}"


def _messages(buf: bytes) -> str:
    """Readable list of typed messages (falls back to raw bytes)."""
    out = []
    pos = 0
    while pos + 5 <= len(buf) and 32 < buf[pos] < 127:
        end = pos + 1 + int.from_bytes(buf[pos + 1 : pos + 5], "big")
        out.append(f"{chr(buf[pos])}{buf[pos + 5 : end]!r}")
        pos = end
    if pos < len(buf):
        out.append(repr(buf[pos:]))
    return "[" + ", ".join(out) + "]"
