"""The encrypted session's framing fast paths (sans-IO, on the bench's session).

An Execute of a portal whose result shape pgseal does not know must get a
Describe injected before it (and its answer hidden), also when it comes in
a run of untouched messages; Sync/Flush/completions pass unchanged.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from proxy import codec

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(
        "encrypted_session_bench", ROOT / "bench" / "encrypted_session.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _m(kind: bytes, body: bytes = b"") -> bytes:
    return codec.message(kind, body)


async def test_execute_of_undescribed_statement_gets_a_describe() -> None:
    bench = _bench()
    session = bench.build(0)[0]
    sql = "SELECT f1 FROM enc_read WHERE business_id = 1"
    session.client_data(codec.encode_parse("u", sql) + codec.SYNC)
    session.server_data(codec.PARSE_COMPLETE + codec.READY_IDLE)
    session.to_client.clear()
    session.to_server.clear()

    execute = _m(b"E", b"\x00\x00\x00\x00\x00")
    flush = _m(b"H")
    bind = codec.encode_bind("", "u", [], [], [0])
    session.client_data(bind + flush + execute + codec.SYNC)
    to_server = b"".join(bytes(b) for b in session.to_server)
    session.to_server = []
    describe = _m(b"D", b"P\x00")
    assert to_server.endswith(flush + describe + execute + codec.SYNC), to_server

    field = codec.FieldDescription(b"f1", bench.TABLE_OID, 4, 17, -1, -1, 0)
    row_description = codec.encode_row_description([field])
    complete = _m(b"C", b"SELECT 0\x00")
    session.server_data(codec.BIND_COMPLETE + row_description + complete + codec.READY_IDLE)
    to_client = b"".join(bytes(b) for b in session.to_client)
    # The injected Describe's RowDescription is pgseal's, never the client's.
    assert to_client == codec.BIND_COMPLETE + complete + codec.READY_IDLE, to_client
    assert session.idle


async def test_named_portal_execute_is_framed_and_tracked() -> None:
    bench = _bench()
    session, _read_client, read_server, *_rest = bench.build(0)
    # Bind a named portal of the described read statement: no Describe needed.
    bind = codec.encode_bind(
        "p1", "r", [1, 1], [(1).to_bytes(4, "big"), (2).to_bytes(4, "big")], [1] * 6
    )
    execute = _m(b"E", b"p1\x00\x00\x00\x00\x00")
    session.client_data(bind + execute + codec.SYNC)
    to_server = b"".join(bytes(b) for b in session.to_server)
    session.to_server = []
    assert to_server.endswith(execute + codec.SYNC)
    assert b"D\x00\x00\x00\x07Pp1\x00" not in to_server
    session.server_data(read_server)
    to_client = b"".join(bytes(b) for b in session.to_client)
    assert to_client.startswith(codec.BIND_COMPLETE)
    assert to_client.endswith(_m(b"C", b"SELECT 50\x00") + codec.READY_IDLE)
    # Every row was opened: no envelope reaches the client.
    assert read_server[len(codec.BIND_COMPLETE) : len(codec.BIND_COMPLETE) + 40] not in to_client
    assert session.idle


async def test_malformed_ready_for_query_is_fatal_on_the_encrypted_path() -> None:
    # As on the plain path: a ReadyForQuery without its status byte, or with
    # an unknown one, is a broken server, never a status to guess.
    bench = _bench()
    for bad in (_m(b"Z"), _m(b"Z", b"X"), _m(b"Z", b"II")):
        session = bench.build(0)[0]
        session.client_data(codec.SYNC)
        session.to_server.clear()
        session.server_data(bad)
        to_client = b"".join(bytes(b) for b in session.to_client)
        assert b"invalid ReadyForQuery message" in to_client, bad
        assert b"08P01" in to_client
        assert session.phase.name == "CLOSED"
