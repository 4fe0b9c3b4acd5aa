"""CPU cost of pgseal's encrypted read and write paths, without sockets.

    .venv/bin/python bench/encrypted_session.py [--queries 2000] [--profile]

Replays, through a ready ``Session`` with column encryption on, what
``bench/encrypted`` puts on the wire: the read response of one asyncpg
prepared query (BindComplete, 50 DataRows of 6 bytea envelopes in binary
format, CommandComplete, ReadyForQuery) and one single-row INSERT with six
protected parameters (Bind with the plaintexts, answered by BindComplete,
CommandComplete, ReadyForQuery). It prints microseconds per read query, per
opened field (all-in: framing, DataRow rewrite, the decrypt) and per INSERT,
next to the bare ``AESGCM`` calls on the same data. ``read`` opens every row
(a first read, or ``OpenedRows`` off); ``reread`` is the same response read
again, its rows remembered by ``OpenedRows`` as bench/encrypted's repeated
queries are. The numbers isolate
pgseal's own cost from the shared machine's noise; ``--profile`` shows where
the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from crypto_micro import TENANT, build_facade  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from crypto.envelope import seal  # noqa: E402
from proxy import codec  # noqa: E402
from proxy.encryption import OPENED_ROWS_BYTES, Encryption  # noqa: E402
from proxy.session import Session  # noqa: E402
from rules.catalog import CatalogMap  # noqa: E402
from rules.model import ProtectedColumn, ProtectedTable, Rules  # noqa: E402

FIELDS = [f"f{i}" for i in range(1, 7)]
ROWS = 50
TABLE_OID = 16500
READ_SQL = f"SELECT {', '.join(FIELDS)} FROM enc_read WHERE business_id = $1 AND bucket = $2"
WRITE_SQL = (
    f"INSERT INTO enc_read (business_id, bucket, {', '.join(FIELDS)}) "
    f"VALUES ($1, $2, {', '.join(f'${i}' for i in range(3, 3 + len(FIELDS)))})"
)


def _m(kind: bytes, body: bytes = b"") -> bytes:
    return codec.message(kind, body)


def field_value(row: int, field: int) -> bytes:
    """The shape of bench/encrypted's values: about 20 characters."""
    return f"value-{row:06d}-{field}-{'x' * (field * 2)}".encode()


def build(opened_rows_bytes: int) -> tuple[Session, bytes, bytes, bytes, bytes, AESGCM, bytes]:
    """A ready session with both statements prepared and described, and the replays.

    ``opened_rows_bytes`` 0: every row is opened as on its first read (no
    ``OpenedRows``); the default size: rows read again are remembered.
    """
    material = os.urandom(32)
    facade, key = build_facade(material)
    columns = {f: ProtectedColumn("public", "enc_read", f, "text") for f in FIELDS}
    rules = Rules({"public.enc_read": ProtectedTable("public", "enc_read", "business_id", columns)})
    catalog = CatalogMap(
        by_attr={(TABLE_OID, 4 + i): columns[f] for i, f in enumerate(FIELDS)},
        table_by_oid={TABLE_OID: "public.enc_read"},
    )
    session = Session(1)
    session.encryption = Encryption(
        rules, facade, catalog, service_dsn="", opened_rows_bytes=opened_rows_bytes
    )
    session.client_data(codec.StartupMessage(codec.PROTOCOL_3_0, {"user": "u"}).encode())
    session.server_connected()
    session.server_data(
        _m(b"R", b"\x00\x00\x00\x00") + codec.backend_key_data(1, b"abcd") + codec.READY_IDLE
    )
    assert session.crypt is not None
    session.crypt.session_tenant = TENANT
    # Prepare and describe both statements, as asyncpg's prepare() does.
    fields = [
        codec.FieldDescription(f.encode(), TABLE_OID, 4 + i, 17, -1, -1, 0)
        for i, f in enumerate(FIELDS)
    ]
    row_description = codec.encode_row_description(fields)
    for name, sql, types, described in (
        ("r", READ_SQL, [23, 23], row_description),
        ("w", WRITE_SQL, [23, 23] + [17] * 6, codec.NO_DATA),
    ):
        session.client_data(
            codec.encode_parse(name, sql) + _m(b"D", b"S" + name.encode() + b"\x00") + codec.SYNC
        )
        param_desc = codec.encode_parameter_description(types)
        session.server_data(codec.PARSE_COMPLETE + param_desc + described + codec.READY_IDLE)
        assert session.to_client, "the statement was not described"
    session.to_client.clear()
    session.to_server.clear()
    session.actions.clear()

    # asyncpg: binary results, one format code per column; Execute; Sync.
    read_client = (
        codec.encode_bind(
            "", "r", [1, 1], [(1).to_bytes(4, "big"), (2).to_bytes(4, "big")], [1] * len(FIELDS)
        )
        + _m(b"E", b"\x00\x00\x00\x00\x00")
        + codec.SYNC
    )
    rows = [
        codec.encode_data_row(
            [seal(key, f"public.enc_read.{f}", field_value(r, i)) for i, f in enumerate(FIELDS)]
        )
        for r in range(ROWS)
    ]
    read_server = (
        codec.BIND_COMPLETE + b"".join(rows) + _m(b"C", f"SELECT {ROWS}\x00".encode())
        + codec.READY_IDLE
    )  # fmt: skip
    write_client = (
        codec.encode_bind(
            "",
            "w",
            [1] * 2 + [0] * 6,
            [int(TENANT).to_bytes(4, "big"), (7).to_bytes(4, "big")]
            + [field_value(7, i) for i in range(len(FIELDS))],
            [1],
        )
        + _m(b"E", b"\x00\x00\x00\x00\x00")
        + codec.SYNC
    )
    write_server = codec.BIND_COMPLETE + _m(b"C", b"INSERT 0 1\x00") + codec.READY_IDLE
    envelope = seal(key, "public.enc_read.f1", field_value(7, 0))
    return session, read_client, read_server, write_client, write_server, AESGCM(material), envelope


def check(session: Session, client: bytes, server: bytes) -> tuple[bytes, bytes]:
    """One replay; what reached the server and the client (for the checks)."""
    session.client_data(client)
    to_server = b"".join(bytes(b) for b in session.to_server)
    session.to_server = []
    session.server_data(server)
    to_client = b"".join(bytes(b) for b in session.to_client)
    session.to_client = []
    assert not session.actions, session.actions
    assert session.idle, "the session lost track of the transaction"
    return to_server, to_client


def run(session: Session, client: bytes, server: bytes, count: int) -> float:
    """Seconds per query, the way the adapter drives the session."""
    client_data, server_data = session.client_data, session.server_data
    start = time.perf_counter()
    for _ in range(count):
        client_data(client)
        session.to_server = []
        server_data(server)
        session.to_client = []
    elapsed = time.perf_counter() - start
    assert session.idle, "the session lost track of the transaction"
    assert not session.actions, "the replay needed keys or failed"
    return elapsed / count


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--only", choices=("read", "reread", "write"))
    parser.add_argument("--no-aesgcm", action="store_true", help="skip the bare AESGCM timings")
    return asyncio.run(measure(parser.parse_args()))


async def measure(args: argparse.Namespace) -> int:
    # The key cache arms its TTL timers on the running loop: the replay runs in one.
    session, read_client, read_server, write_client, write_server, raw, env = build(0)
    # Its own key and replays: envelopes of the other build would not open.
    remembered, again_client, again_server, *_ = build(OPENED_ROWS_BYTES)
    _, again = check(remembered, again_client, again_server)
    assert field_value(0, 0) in again
    assert check(remembered, again_client, again_server)[1] == again  # the same, remembered
    assert remembered.encryption is not None
    assert sum(len(t) for t in remembered.encryption.opened_rows.by_fields.values()) == ROWS

    # The replays do what they claim: plaintext out, envelopes in.
    _, to_client = check(session, read_client, read_server)
    assert field_value(0, 0) in to_client
    assert field_value(ROWS - 1, 5) in to_client
    assert read_server.count(b"\x01\x11\x22\x33\x44\x55\x66\x77\x88") == ROWS * len(FIELDS)
    assert b"\x11\x22\x33\x44\x55\x66\x77\x88" not in to_client
    to_server, _ = check(session, write_client, write_server)
    assert field_value(7, 0) not in to_server
    assert to_server.count(b"\x11\x22\x33\x44") == 6

    workloads = {
        "read": (session, read_client, read_server),
        "reread": (remembered, again_client, again_server),
        "write": (session, write_client, write_server),
    }
    for name, (session, client, server) in workloads.items():
        if args.only and name != args.only:
            continue
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(run, session, client, server, args.queries)
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
            continue
        best = min(run(session, client, server, args.queries) for _ in range(args.repeat))
        if name != "write":
            per_field = best / (ROWS * len(FIELDS))
            how = "every row opened" if name == "read" else "rows read again, remembered"
            print(f"{name:6} {best * 1e6:8.1f} us per query  {per_field * 1e9:6.0f} ns per field "
                  f"({ROWS} rows x {len(FIELDS)} fields, binary, {how})")  # fmt: skip
        else:
            print(f"write  {best * 1e6:8.1f} us per INSERT ({len(FIELDS)} fields sealed)")
    if args.no_aesgcm:
        return 0
    nonce, ct = env[9:21], env[21:]
    aad = b"pgseal:v1:" + env[1:9] + b"public.enc_read.f1"
    number = 100_000
    dec = min(timeit.repeat(lambda: raw.decrypt(nonce, ct, aad), number=number, repeat=3))
    enc = min(timeit.repeat(lambda: raw.encrypt(os.urandom(12), ct, aad), number=number, repeat=3))
    print(f"AESGCM alone: decrypt {dec / number * 1e9:.0f} ns, "
          f"encrypt with a fresh nonce {enc / number * 1e9:.0f} ns")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
