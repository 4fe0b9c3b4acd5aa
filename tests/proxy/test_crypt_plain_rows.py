"""Unprotected result rows on the encrypted session: a run is relayed as it came.

With column encryption on, a result with nothing to open (a plaintext table)
skips the per-message loop for its run of DataRows. These replays check that
the run is still framed exactly: every split of the bytes gives the same
output, a bad length inside the run is a protocol violation, and a protected
result right after it is still opened (sans-IO, on the bench's session).
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path
from types import ModuleType

from proxy import codec
from proxy.session import Phase, Session

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(
        "encrypted_session_bench_rows", ROOT / "bench" / "encrypted_session.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _m(kind: bytes, body: bytes = b"") -> bytes:
    return codec.message(kind, body)


PLAIN_SQL = "SELECT a, b FROM plain_read WHERE business_id = $1"
NOTICE = _m(b"N", b"SNOTICE\x00Mhello\x00\x00")


def _plain_rows(count: int) -> list[bytes]:
    return [
        codec.encode_data_row([f"row-{r}".encode(), None if r % 3 else b""]) for r in range(count)
    ]


def _session_with_plain_statement(bench: ModuleType) -> tuple[Session, bytes, bytes]:
    session, read_client, read_server, *_ = bench.build(0)
    fields = [
        codec.FieldDescription(n, 17000, 1 + i, 25, -1, -1, 0) for i, n in enumerate((b"a", b"b"))
    ]
    session.client_data(codec.encode_parse("pr", PLAIN_SQL) + _m(b"D", b"Spr\x00") + codec.SYNC)
    session.server_data(
        codec.PARSE_COMPLETE
        + codec.encode_parameter_description([23])
        + codec.encode_row_description(fields)
        + codec.READY_IDLE
    )
    session.to_client.clear()
    session.to_server.clear()
    return session, read_client, read_server


def _plain_query() -> bytes:
    bind = codec.encode_bind("", "pr", [1], [(1).to_bytes(4, "big")], [0, 0])
    return bind + _m(b"E", b"\x00\x00\x00\x00\x00") + codec.SYNC


def _drain(session: Session) -> bytes:
    out = b"".join(bytes(b) for b in session.to_client)
    session.to_client = []
    return out


async def test_unprotected_run_is_relayed_unchanged_in_every_split() -> None:
    bench = _bench()
    rows = _plain_rows(12)
    answer = (
        codec.BIND_COMPLETE
        + b"".join(rows[:5])
        + NOTICE
        + b"".join(rows[5:])
        + _m(b"C", b"SELECT 12\x00")
        + codec.READY_IDLE
    )
    session, _, _ = _session_with_plain_statement(bench)
    for cut in range(1, len(answer)):
        session.client_data(_plain_query())
        session.to_server = []
        session.server_data(answer[:cut])
        session.server_data(answer[cut:])
        assert _drain(session) == answer, cut
        assert session.idle, cut


async def test_bad_length_inside_an_unprotected_run_is_a_protocol_violation() -> None:
    bench = _bench()
    rows = _plain_rows(6)
    broken = b"D" + struct.pack("!I", 3)  # shorter than its own length field
    session, _, _ = _session_with_plain_statement(bench)
    session.client_data(_plain_query())
    session.server_data(codec.BIND_COMPLETE + b"".join(rows[:3]) + broken + b"".join(rows[3:]))
    out = _drain(session)
    assert b"08P01" in out
    assert b"invalid message length 3\x00" in out  # found where it is, not further on
    assert session.phase is Phase.CLOSED
    # the read that held it is not relayed in part: the client gets the FATAL
    assert out.startswith(b"E")
    assert b"row-0" not in out


async def test_protected_result_after_an_unprotected_run_is_still_opened() -> None:
    bench = _bench()
    session, read_client, read_server = _session_with_plain_statement(bench)
    rows = _plain_rows(4)
    plain_answer = (
        codec.BIND_COMPLETE + b"".join(rows) + _m(b"C", b"SELECT 4\x00") + codec.READY_IDLE
    )
    session.client_data(_plain_query() + read_client)
    session.to_server = []
    session.server_data(plain_answer + read_server)
    out = _drain(session)
    assert out.startswith(plain_answer)
    assert bench.field_value(0, 0) in out  # the protected rows were opened
    assert b"\x11\x22\x33\x44\x55\x66\x77\x88" not in out  # no envelope reached the client
    assert session.idle
