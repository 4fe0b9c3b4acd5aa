"""The pass-through fast paths against the exact queue, on mixed traffic.

``Session.server_data`` takes a shortcut when one round trip is in flight and
the server's read is its whole answer (see ``Session.server_data``). These
tests replay the same random conversations through two sessions, one with the
lane and one forced onto the exact per-message queue (and fed each client
batch cut before its last byte, so that the client path never takes the
Execute and Sync a batch ends with as one run), and require the same
bytes each way, the same registry, transaction status and queue length after
every step. The conversations mix the lane's shapes (Bind/Describe/Execute/Sync,
a lone Query) with Parse, Close, named portals, Flush, FunctionCall, COPY,
server errors, notices, ParameterStatus and pgseal's own refusals, delivered
whole, pipelined and split at random places. The server side is a small model
of Postgres that answers what the session actually sent it.
"""

from __future__ import annotations

import random

import pytest

from proxy import codec
from proxy.session import Action, Session, SessionLimits
from tests.proxy import wire
from tests.proxy.playbook import Playbook
from tests.proxy.test_session import REFUSAL, connect

SELECT_ROW = [wire.row_description(wire.int4_field()), wire.data_row(b"1")]


class ServerModel:
    """Answers the frontend messages a session forwarded, the way Postgres would.

    Failures are decided per message by ``rng``; after an extended-protocol
    error everything up to Sync is skipped. Answers are queued per message and
    handed out by ``take``.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.skipping = False
        self.in_copy = False
        self.status = "I"
        self.out: list[bytes] = []

    def feed(self, data: bytes) -> None:
        for kind, start, end in codec.frames(data):
            self._answer(kind, data[start + 5 : end])

    def _fails(self) -> bool:
        return self.rng.random() < 0.15

    def _extras(self) -> list[bytes]:
        roll = self.rng.random()
        if roll < 0.1:
            return [wire.notice("careful")]
        if roll < 0.15:
            return [wire.parameter_status("application_name", f"a{self.rng.randrange(9)}")]
        if roll < 0.2:
            return [wire.notification(7, "ch", "hello")]
        return []

    def _error(self) -> bytes:
        if self.status == "T":
            self.status = "E"
        return wire.error("42P01", "relation does not exist")

    def _answer(self, kind: int, body: bytes) -> None:
        out = self.out
        if self.in_copy:
            if kind == ord("c"):
                self.in_copy = False
                out += [wire.command_complete("COPY 2"), wire.ready(self.status)]
            elif kind == ord("f"):
                self.in_copy = False
                out += [self._error(), wire.ready(self.status)]
            return  # CopyData; Sync and Flush are ignored in copy-in mode
        if kind in b"cf":
            return  # CopyDone/CopyFail outside COPY: ignored
        if kind == ord("S"):
            self.skipping = False
            out += [*self._extras(), wire.ready(self.status)]
            return
        if kind == ord("Q"):
            self.skipping = False
            sql = body[:-1].decode()
            if sql.startswith("pgseal") or self._fails():
                out += [self._error(), wire.ready(self.status)]
                return
            if sql.startswith("COPY"):
                self.in_copy = True
                out.append(wire.copy_response(b"G", 0, 0))
                return
            if sql == "BEGIN":
                self.status = "T"
            elif sql in ("COMMIT", "ROLLBACK"):
                self.status = "I"
            out += [*self._extras(), *SELECT_ROW, wire.command_complete("SELECT 1")]
            out.append(wire.ready(self.status))
            return
        if kind == ord("F"):
            if self._fails():
                out += [self._error(), wire.ready(self.status)]
            else:
                out += [wire.function_call_response(b"42"), wire.ready(self.status)]
            return
        if self.skipping or kind == ord("H"):
            return
        if (kind == ord("P") and body.startswith(b"pgseal")) or (kind in b"PBE" and self._fails()):
            self.skipping = True
            out.append(self._error())
            return
        if kind == ord("P"):
            out.append(wire.parse_complete())
        elif kind == ord("B"):
            out.append(wire.bind_complete())
        elif kind == ord("D"):
            if body[:1] == b"S":
                out.append(wire.parameter_description(23))
            out.append(self.rng.choice([wire.no_data(), SELECT_ROW[0]]))
        elif kind == ord("E"):
            rows = self.rng.randrange(3)
            out += [wire.data_row(b"1")] * rows + self._extras()
            suspended = body.endswith(b"\x00\x00\x00\x01")
            out.append(wire.portal_suspended() if suspended else wire.command_complete("SELECT"))
        elif kind == ord("C"):
            out.append(wire.close_complete())

    def take(self) -> bytes:
        data, self.out = b"".join(self.out), []
        return data


def _round_trip(rng: random.Random) -> tuple[list[bytes], list[bytes]]:
    """An extended-protocol batch up to Sync, cut where a refusal may come in."""
    name = rng.choice(["", "", "s1", "s2"])
    portal = rng.choice(["", "", "", "p1"])
    shape = rng.random()
    if shape < 0.4:  # the lane's shape: pgbench -M prepared
        head = [wire.bind(portal, name, [b"5"]), wire.describe("P", portal), wire.execute(portal)]
    elif shape < 0.6:  # unnamed statement each time (psycopg, asyncpg)
        head = [wire.parse(name, "SELECT $1", [23]), wire.bind(portal, name, [b"5"])]
        head += [wire.describe("S", name), wire.execute(portal, rng.choice([0, 1]))]
    elif shape < 0.75:
        head = [wire.close(rng.choice("SP"), rng.choice([name, portal])), wire.flush()]
        head += [wire.bind(portal, name), wire.execute(portal)]
    else:
        head = [wire.parse(name, "SELECT 1"), wire.describe("S", name), wire.flush()]
    cut = rng.randrange(len(head) + 1)
    return head[:cut], [*head[cut:], wire.sync()]


def _conversation(rng: random.Random) -> list[tuple[str, object]]:
    """Events: ('client', bytes), ('refuse', simple_query), ('server', fraction)."""
    events: list[tuple[str, object]] = []
    for _ in range(40):
        roll = rng.random()
        if roll < 0.45:
            before, after = _round_trip(rng)
            events.append(("client", b"".join(before)))
            if rng.random() < 0.1:
                events.append(("refuse", False))
            events.append(("client", b"".join(after)))
        elif roll < 0.7:
            sql = rng.choice(["SELECT 1", "BEGIN", "COMMIT", "ROLLBACK", "PREPARE q AS SELECT 1"])
            sql = rng.choice([sql, sql, "DEALLOCATE ALL", "DISCARD ALL", "DEALLOCATE q"])
            events.append(("client", wire.query(sql)))
        elif roll < 0.75:
            events.append(("refuse", True))
        elif roll < 0.8:
            events.append(("client", wire.function_call(1598, [b"x"])))
        elif roll < 0.85:
            events.append(("server", 1.0))
            events.append(("client", wire.query("COPY t FROM STDIN")))
            events.append(("server", 1.0))
            end = rng.choice([wire.copy_done(), wire.copy_fail("no")])
            events.append(("client", wire.copy_data(b"1\n") + wire.copy_data(b"2\n") + end))
        # The server answers all of it, some of it or nothing yet.
        events.append(("server", rng.choice([1.0, 1.0, 1.0, 0.0, rng.random()])))
    events.append(("server", 1.0))
    return events


def _state(session: Session) -> tuple[object, ...]:
    return (
        session.phase,
        session.in_flight,
        session.idle,
        session.txn_status,
        {name: (s.query, s.param_types, s.sql_level) for name, s in session.statements.items()},
        dict(session.portals),
        dict(session.server_params),
        session._copy_in_syncs_ignored,
        list(session._pending),
        session._cbuf,
    )


def _drain(session: Session) -> tuple[bytes, bytes, list[Action]]:
    out = (b"".join(session.to_server), b"".join(session.to_client), list(session.actions))
    session.to_server, session.to_client, session.actions = [], [], []
    return out


def _ready_session() -> Session:
    playbook = Playbook(Session(1))
    connect(playbook)
    playbook.session.client_data(
        wire.parse("s1", "SELECT 1") + wire.parse("s2", "SELECT 2") + wire.sync()
    )
    playbook.session.server_data(wire.parse_complete() * 2 + wire.ready())
    _drain(playbook.session)
    return playbook.session


def _replay(seed: int) -> int:
    """Play one conversation through both sessions; returns how often the lane was taken."""
    rng = random.Random(seed)
    exact, lane = _ready_session(), _ready_session()
    exact_reads = 0
    server_messages = lane._server_messages

    def counting(buf: bytes) -> bytes:
        nonlocal exact_reads
        exact_reads += 1
        return server_messages(buf)

    lane._server_messages = counting  # type: ignore[method-assign]
    server_reads = 0
    server = ServerModel(random.Random(seed + 1))
    backlog = b""
    events = _conversation(rng)
    for step, (event, arg) in enumerate(events):
        inputs: list[tuple[str, object]] = [(event, arg)]
        if event == "server":
            assert isinstance(arg, float)
            backlog += server.take()
            cut = int(len(backlog) * arg)
            inputs = []
            if cut:
                # Sometimes in two reads, split at a random byte.
                split = rng.choice([cut, rng.randrange(1, cut + 1)])
                inputs = [("server", backlog[:split])]
                if split < cut:
                    inputs.append(("server", backlog[split:cut]))
            backlog = backlog[cut:]
        for kind, value in inputs:
            exact._lane = 0  # the reference never takes the lane
            for session in (exact, lane):
                if kind == "refuse":
                    session.refuse(REFUSAL, simple_query=bool(value))
                elif kind == "client":
                    assert isinstance(value, bytes)
                    if session is exact:
                        # Cut before the last byte, the batch never ends with the
                        # Execute and Sync the plain client path takes as a run.
                        session.client_data(value[:-1])
                        session.client_data(value[-1:])
                    else:
                        session.client_data(value)
                else:
                    assert isinstance(value, bytes)
                    session.server_data(value)
            server_reads += kind == "server"
            where = f"seed {seed}, step {step}: {kind}"
            sent_exact, sent_lane = _drain(exact), _drain(lane)
            assert sent_lane == sent_exact, where
            assert _state(lane) == _state(exact), where
            server.feed(sent_exact[0])
    assert exact.phase is lane.phase
    return server_reads - exact_reads  # the reads the lane took


@pytest.mark.parametrize("seed", range(0, 400, 8))
def test_the_lane_and_the_exact_queue_agree_on_mixed_traffic(seed: int) -> None:
    taken = sum(_replay(s) for s in range(seed, seed + 8))
    assert taken > 0, "the conversations never took the lane: the test would prove nothing"


def test_the_lane_answers_the_pgbench_shapes() -> None:
    session = _ready_session()
    prepared = [wire.bind("", "s1", [b"5"]), wire.describe("P"), wire.execute(), wire.sync()]
    answer = [wire.bind_complete(), *SELECT_ROW, wire.command_complete("SELECT 1"), wire.ready()]
    for client, server in (
        (prepared, answer),
        ([wire.query("SELECT 1")], answer[1:]),
        ([wire.query("BEGIN")], [wire.command_complete("BEGIN"), wire.ready("T")]),
        (prepared, [answer[0], wire.error("22012", "division by zero"), wire.ready("E")]),
    ):
        session.client_data(b"".join(client))
        assert session._lane == session.in_flight == len(client)
        session.server_data(b"".join(server))
        assert (session._lane, session.in_flight) == (0, 0)
        assert session.to_client == [b"".join(server)]
        _drain(session)
    assert session.txn_status == "E"


def test_the_lane_still_rejects_an_invalid_ready_for_query() -> None:
    session = _ready_session()
    session.client_data(wire.query("SELECT 1"))
    _drain(session)
    session.server_data(wire.command_complete("SELECT 1") + wire.ready("X"))
    fatal = b"".join(session.to_client)
    assert fatal.startswith(b"E")
    assert b"08P01" in fatal
    assert b"invalid ReadyForQuery" in fatal


@pytest.mark.parametrize(
    "head",
    [
        b"C\x00\x00\x00\x02",
        # A length of 0, then bytes that frame exactly up to the ReadyForQuery
        # if the bad length were only skipped over.
        b"N\x00\x00\x00\x00\x08abcd",
    ],
    ids=["short", "realigning"],
)
def test_the_lane_still_rejects_a_bad_length_before_the_ready_for_query(head: bytes) -> None:
    session = _ready_session()
    session.client_data(wire.query("SELECT 1"))
    _drain(session)
    session.server_data(head + wire.ready())
    fatal = b"".join(session.to_client)
    assert fatal.startswith(b"E")
    assert b"08P01" in fatal
    assert b"invalid message length" in fatal


def test_the_lane_still_rejects_a_message_over_the_limit() -> None:
    session = _ready_session()
    session.limits = SessionLimits(max_message_size=64)
    session.client_data(wire.query("SELECT 1"))
    _drain(session)
    session.server_data(
        wire.data_row(b"x" * 100) + wire.command_complete("SELECT 1") + wire.ready()
    )
    fatal = b"".join(session.to_client)
    assert fatal.startswith(b"E")
    assert b"08P01" in fatal
    assert b"x" * 100 not in fatal


@pytest.mark.parametrize(
    "answer",
    [
        # A second ReadyForQuery nobody asked for: the exact queue ignores it.
        [wire.command_complete("SELECT 1"), wire.ready("T"), wire.ready("I")],
        # CopyInResponse changes what the client's Syncs mean: never skimmed.
        [wire.copy_response(b"G", 0, 0), wire.command_complete("COPY 0"), wire.ready()],
    ],
    ids=["two-ready", "copy-in"],
)
def test_the_lane_leaves_reads_it_does_not_model_to_the_exact_queue(answer: list[bytes]) -> None:
    exact, lane = _ready_session(), _ready_session()
    for session in (exact, lane):
        session.client_data(wire.query("SELECT 1"))
    assert lane._lane == 1
    exact._lane = 0
    for session in (exact, lane):
        session.server_data(b"".join(answer))
    assert _drain(lane) == _drain(exact)
    assert _state(lane) == _state(exact)


RUN = wire.describe("P") + wire.execute() + wire.sync()


@pytest.mark.parametrize(
    ("before", "batch"),
    [
        # The run's bytes at the end of a CopyData: framed as what they are.
        ([], wire.query("COPY t FROM STDIN") + wire.copy_data(RUN)),
        # A CopyData ending with the run's Describe, then the real Execute and Sync.
        (
            [],
            wire.query("COPY t FROM STDIN")
            + wire.copy_data(wire.describe("P"))
            + wire.execute()
            + wire.sync(),
        ),
        # ... and of a CopyData not complete yet.
        ([], wire.query("COPY t FROM STDIN") + wire.copy_data(RUN + b"x" * 40)[:-40]),
        # In copy-in mode the server ignores Sync: no run either.
        (
            [wire.query("COPY t FROM STDIN")],
            wire.copy_data(b"1\n") + wire.execute() + wire.sync(),
        ),
        # The run after a named portal, a Parse and a Flush.
        ([], wire.parse("", "SELECT 1") + wire.bind("p1", "") + wire.flush() + RUN),
        ([], wire.bind("", "s1") + wire.execute() + wire.sync()),
    ],
    ids=[
        "copy-data",
        "copy-data-overlapping",
        "partial-copy-data",
        "copy-in",
        "mixed",
        "execute-sync",
    ],
)
def test_the_client_run_matches_message_by_message(before: list[bytes], batch: bytes) -> None:
    whole, cut = _ready_session(), _ready_session()
    for session in (whole, cut):
        for message in before:
            session.client_data(message)
            session.server_data(wire.copy_response(b"G", 0, 0))
    whole.client_data(batch)
    cut.client_data(batch[:-1])
    cut.client_data(batch[-1:])
    cut._lane = whole._lane
    assert _drain(whole) == _drain(cut)
    assert _state(whole) == _state(cut)


def test_the_lane_keeps_no_long_answer_head() -> None:
    session = _ready_session()
    tags = [wire.command_complete("INSERT 0 1")] * 500  # a long answer without rows
    session.client_data(wire.query("INSERT INTO t VALUES (1)"))
    session.server_data(b"".join(tags) + wire.ready())
    assert session.in_flight == 0
    assert session._lane_head == b""
    session.client_data(wire.query("SELECT 1"))
    session.server_data(b"".join(SELECT_ROW) + wire.command_complete("SELECT 1") + wire.ready())
    assert session._lane_head == SELECT_ROW[0]
    assert session.to_client[-1].startswith(SELECT_ROW[0])
