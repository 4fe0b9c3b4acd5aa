"""The session's expectation queue around COPY FROM STDIN, scripted without sockets.

A server answering CopyInResponse, CommandComplete and ReadyForQuery in one
read used to leave a stale expectation behind (the queue was replaced while the
message loop held the old one), so the next statement's Describe answers were
matched to the wrong request: with encryption on, the ParameterDescription of a
rewritten statement reached the client unrewritten.
"""

from __future__ import annotations

import struct

from proxy import codec
from proxy.session import Phase, Session


def _startup() -> bytes:
    body = struct.pack("!i", 196608) + b"user\x00u\x00database\x00d\x00\x00"
    return struct.pack("!i", len(body) + 4) + body


def _ready_session() -> Session:
    session = Session(1)
    session.client_data(_startup())
    session.server_data(
        codec.message(b"R", struct.pack("!i", 0))
        + codec.backend_key_data(7, b"\x00\x00\x00\x08")
        + codec.ready_for_query("I")
    )
    assert session.phase is Phase.READY
    session.to_client.clear()
    session.to_server.clear()
    return session


def _query(sql: str) -> bytes:
    return codec.message(b"Q", sql.encode() + b"\x00")


def _copy_in_response() -> bytes:
    return codec.message(b"G", b"\x00" + struct.pack("!h", 0))


def _complete(tag: str) -> bytes:
    return codec.message(b"C", tag.encode() + b"\x00")


def test_copy_answers_in_one_read_leave_no_stale_expectation() -> None:
    session = _ready_session()
    # the client pipelines the data behind the COPY, as asyncpg does
    session.client_data(
        _query("COPY t FROM STDIN") + codec.message(b"d", b"1\n") + codec.message(b"c")
    )
    assert session.in_flight == 2  # the Query and the CopyDone
    session.server_data(_copy_in_response() + _complete("COPY 1") + codec.ready_for_query("I"))
    assert session.in_flight == 0
    assert session.idle
    # the next statement's answers are matched to it
    session.client_data(
        codec.message(b"P", b"s1\x00SELECT $1\x00\x00\x00")
        + codec.describe("S", "s1")
        + codec.message(b"S")
    )
    assert session.in_flight == 3
    session.server_data(
        codec.message(b"1")
        + codec.message(b"t", struct.pack("!hi", 1, 25))
        + codec.message(b"n")
        + codec.ready_for_query("I")
    )
    assert session.idle


def test_copy_data_after_the_copy_in_response() -> None:
    session = _ready_session()
    session.client_data(_query("COPY t FROM STDIN"))
    session.server_data(_copy_in_response())
    session.client_data(codec.message(b"d", b"1\n") + codec.message(b"c"))
    session.server_data(_complete("COPY 1") + codec.ready_for_query("I"))
    assert session.idle
