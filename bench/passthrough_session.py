"""CPU cost of the session per pass-through transaction, without sockets.

    .venv/bin/python bench/passthrough_session.py [--transactions 200000] [--profile]

Replays the bytes of one ``pgbench -S -M prepared`` transaction (Bind, Describe,
Execute, Sync; BindComplete, RowDescription, DataRow, CommandComplete,
ReadyForQuery) and of one ``-M simple`` transaction through a ready
``Session`` and prints the time per transaction (``--mode`` also has shapes
other than pgbench's, for the paths the fast ones must not slow down). Unlike a pgbench run it does
not depend on what else the (shared, noisy) machine is doing, so it is the
number to watch while changing the hot path; ``--profile`` shows where the
time goes. For a count that does not depend on the machine's load at all, run
it under callgrind with two sizes and take the difference (see
``bench/passthrough_instructions``).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy import codec  # noqa: E402
from proxy.session import Session  # noqa: E402


def _m(kind: bytes, body: bytes = b"") -> bytes:
    return codec.message(kind, body)


def _field(name: bytes, type_oid: int) -> bytes:
    return (
        name
        + b"\x00"
        + (16400).to_bytes(4, "big")
        + (1).to_bytes(2, "big")
        + (type_oid.to_bytes(4, "big") + (4).to_bytes(2, "big") + b"\xff\xff\xff\xff\x00\x00")
    )


PREPARED_CLIENT = (
    _m(b"B", b"\x00P0_1\x00\x00\x00\x00\x01\x00\x00\x00\x0512345\x00\x00")
    + _m(b"D", b"P\x00")
    + _m(b"E", b"\x00\x00\x00\x00\x00")
    + codec.SYNC
)
SIMPLE_CLIENT = _m(b"Q", b"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;\x00")
ROW = _m(b"T", b"\x00\x01" + _field(b"abalance", 23)) + _m(b"D", b"\x00\x01\x00\x00\x00\x010")
PREPARED_SERVER = codec.BIND_COMPLETE + ROW + _m(b"C", b"SELECT 1\x00") + codec.READY_IDLE
SIMPLE_SERVER = ROW + _m(b"C", b"SELECT 1\x00") + codec.READY_IDLE
# Not pgbench, for what the fast paths must not make slower: an unnamed
# statement per query (psycopg, JDBC), two transactions pipelined in one read,
# and a result of 50 rows.
EXTENDED_CLIENT = (
    codec.encode_parse("", "SELECT abalance FROM pgbench_accounts WHERE aid = $1") + PREPARED_CLIENT
)
EXTENDED_SERVER = codec.PARSE_COMPLETE + PREPARED_SERVER
PIPELINED_CLIENT = PREPARED_CLIENT * 2
PIPELINED_SERVER = PREPARED_SERVER * 2
ROWS_CLIENT = SIMPLE_CLIENT
ROWS_SERVER = ROW[: ROW.index(b"D\x00")] + ROW[ROW.index(b"D\x00") :] * 50
ROWS_SERVER += _m(b"C", b"SELECT 50\x00") + codec.READY_IDLE
MODES = {
    "prepared": (PREPARED_CLIENT, PREPARED_SERVER),
    "simple": (SIMPLE_CLIENT, SIMPLE_SERVER),
    "extended": (EXTENDED_CLIENT, EXTENDED_SERVER),
    "pipelined": (PIPELINED_CLIENT, PIPELINED_SERVER),
    "rows": (ROWS_CLIENT, ROWS_SERVER),
}


def ready_session() -> Session:
    session = Session(1)
    session.client_data(codec.StartupMessage(codec.PROTOCOL_3_0, {"user": "u"}).encode())
    session.server_connected()
    session.server_data(
        _m(b"R", b"\x00\x00\x00\x00") + codec.backend_key_data(1, b"abcd") + codec.READY_IDLE
    )
    session.client_data(
        codec.encode_parse("P0_1", "SELECT abalance FROM pgbench_accounts WHERE aid = $1")
        + codec.SYNC
    )
    session.server_data(codec.PARSE_COMPLETE + codec.READY_IDLE)
    session.to_client.clear()
    session.to_server.clear()
    session.actions.clear()
    return session


def run(session: Session, client: bytes, server: bytes, count: int) -> float:
    """Seconds per transaction, the way the adapter drives the session."""
    client_data, server_data = session.client_data, session.server_data
    start = time.perf_counter()
    for _ in range(count):
        client_data(client)
        session.to_server = []
        server_data(server)
        session.to_client = []
    elapsed = time.perf_counter() - start
    assert session.idle, "the session lost track of the transaction"
    return elapsed / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--mode", choices=MODES, help="only this one")
    args = parser.parse_args()
    for name, (client, server) in MODES.items():
        if args.mode != name and (args.mode or name not in ("prepared", "simple")):
            continue
        session = ready_session()
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(run, session, client, server, args.transactions)
            pstats.Stats(profile).sort_stats("tottime").print_stats(12)
            continue
        best = min(run(session, client, server, args.transactions) for _ in range(args.repeat))
        print(f"{name:9} {best * 1e9:8.0f} ns per transaction (session only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
