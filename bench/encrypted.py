"""Encrypted columns: pgseal on protected columns against Postgres on plaintext ones.

    bench/encrypted [--duration 5] [--rounds 3] [--clients 4] [--floor] [--pgbouncer]
                    [--unix-upstream] [--workers N]

One embedded PostgreSQL (or ``--dsn``) holds two pairs of tables of the same
shape (``id, business_id, bucket, f1 .. f6``): ``enc_*`` with the six fields
protected (bytea envelopes, ``type: text`` in the rules) and ``plain_*`` with
them as plain ``text``. pgseal runs as ``pgseal serve`` in front of it.

* **read**: ``SELECT f1..f6 FROM t WHERE business_id = $1 AND bucket = $2``,
  asyncpg, prepared once per connection, 50 rows x 6 text fields per query;
  through pgseal on ``enc_read`` vs directly on ``plain_read``.
* **write**: ``INSERT INTO t (business_id, bucket, f1..f6) VALUES ($1..$8)``,
  single row, prepared; through pgseal on ``enc_write`` vs directly on
  ``plain_write``.
* ``--floor``: also the same workloads through pgseal on the ``plain_*`` tables
  (pass-through, nothing sealed or opened): the relay's own cost, which no work
  on the encrypted paths can go below.
* ``--pgbouncer``: also the same workloads through PgBouncer (session pooling,
  bench/passthrough's setup) on the ``plain_*`` tables: what a proxy hop written
  in C costs on this machine, with nothing encrypted at all.

``--workers N`` also runs ``pgseal serve --workers N`` (N processes on one
port, the same rules and master key) on the encrypted tables, as ``pgseal*N``,
its CPU summed over the workers.

``--unix-upstream`` has pgseal and PgBouncer reach Postgres through its unix
socket (as when the proxy runs on the database host); the clients still connect
over TCP, and so does the direct run.

Every proxy's CPU time per query (from /proc) is printed beside its rate: unlike
the rate it hardly depends on what else the machine is doing.

Reads repeat 40 buckets of 50 rows, so after the first round pgseal serves them
from ``OpenedRows`` (rows read again); ``open per field`` below gives the cost
of a first read as well.

Each run uses ``--clients`` asyncpg connections in one client process for
``--duration`` seconds; every round runs both targets, alternating which goes
first. Prints queries per second (median of the rounds) and the ratios (targets:
>= 0.6x for both), then the per-field open cost (the proxy's DataRow path timed
in-process, and the end-to-end difference per field), and pgseal's plan-cache
hit rate and counters read from its ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from passthrough import Target, cpu_split, sched_split, start_pgbouncer  # noqa: E402  (bench/)

from proxy.embedded import EmbeddedPostgres, free_port  # noqa: E402
from tests.pgseal_process import REPO_ROOT, start_pgseal  # noqa: E402

FIELDS = [f"f{i}" for i in range(1, 7)]
ROWS_PER_QUERY = 50
BUCKETS = 40
TENANTS = ("1", "2")

SCHEMA = "\n".join(
    f"CREATE TABLE {name} (id bigserial PRIMARY KEY, business_id int NOT NULL, bucket int,"
    + ", ".join(f"{f} {kind}" for f in FIELDS)
    + f"); CREATE INDEX ON {name} (business_id, bucket);"
    for name, kind in (
        ("enc_read", "bytea"),
        ("plain_read", "text"),
        ("enc_write", "bytea"),
        ("plain_write", "text"),
    )
)
RULES = "tables:\n" + "".join(
    f"  {table}:\n    tenant_column: business_id\n    columns:\n"
    + "".join(f"      {f}: {{type: text}}\n" for f in FIELDS)
    for table in ("enc_read", "enc_write")
)


def field_value(row: int, field: int) -> str:
    """About 20 characters, like a name, a phone number or an e-mail address."""
    return f"value-{row:06d}-{field}-{'x' * (field * 2)}"


def read_sql(table: str) -> str:
    return f"SELECT {', '.join(FIELDS)} FROM {table} WHERE business_id = $1 AND bucket = $2"


def write_sql(table: str) -> str:
    params = ", ".join(f"${i}" for i in range(3, 3 + len(FIELDS)))
    return (
        f"INSERT INTO {table} (business_id, bucket, {', '.join(FIELDS)}) VALUES ($1, $2, {params})"
    )


async def load(dsn_enc: str, dsn_plain: str) -> None:
    """The same rows in both read tables: enc_read written through pgseal."""
    rows = [
        (int(TENANTS[b % 2]), b, *(field_value(b * ROWS_PER_QUERY + r, f) for f in range(6)))
        for b in range(BUCKETS)
        for r in range(ROWS_PER_QUERY)
    ]
    for dsn, table in ((dsn_enc, "enc_read"), (dsn_plain, "plain_read")):
        conn = await asyncpg.connect(dsn)
        try:
            await conn.executemany(write_sql(table), rows)
            await conn.execute(f"ANALYZE {table}")
        finally:
            await conn.close()


Workload = Callable[[asyncpg.Connection, int], Awaitable[None]]


async def read_workload(dsn: str, table: str, clients: int, duration: float) -> float:
    async def one(conn: asyncpg.Connection) -> int:
        stmt = await conn.prepare(read_sql(table))
        done, i = 0, 0
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            bucket = i % BUCKETS
            rows = await stmt.fetch(int(TENANTS[bucket % 2]), bucket)
            if len(rows) != ROWS_PER_QUERY:
                raise SystemExit(f"{table}: expected {ROWS_PER_QUERY} rows, got {len(rows)}")
            done, i = done + 1, i + 7
        return done

    return await _run(dsn, clients, duration, one)


async def write_workload(dsn: str, table: str, clients: int, duration: float) -> float:
    async def one(conn: asyncpg.Connection) -> int:
        stmt = await conn.prepare(write_sql(table))
        done = 0
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            tenant = int(TENANTS[done % 2])
            await stmt.fetch(tenant, done, *(field_value(done, f) for f in range(6)))
            done += 1
        return done

    return await _run(dsn, clients, duration, one)


async def _run(
    dsn: str, clients: int, duration: float, one: Callable[[asyncpg.Connection], Awaitable[int]]
) -> float:
    conns = [await asyncpg.connect(dsn) for _ in range(clients)]
    try:
        start = time.perf_counter()
        counts = await asyncio.gather(*(one(c) for c in conns))
        return sum(counts) / (time.perf_counter() - start)
    finally:
        for conn in conns:
            await conn.close()


async def check_stored(direct_dsn: str, tables: list[str]) -> None:
    """The benchmark measured what it claims: envelopes in enc_*, not plaintext."""
    conn = await asyncpg.connect(direct_dsn)
    try:
        for table in tables:
            row = await conn.fetchrow(f"SELECT {', '.join(FIELDS)} FROM {table} LIMIT 1")
            assert row is not None
            for value in row:
                if not (isinstance(value, bytes) and value[0] == 1 and b"value-" not in value):
                    raise SystemExit(f"{table} holds something else than envelopes")
    finally:
        await conn.close()


async def open_cost_in_process(repeat: int = 5) -> tuple[float, float, float]:
    """ns per field of SessionCrypto.data_row on a 6-field row (binary out, as
    asyncpg asks) opened, and read again (remembered by OpenedRows), and of the
    bare AES-GCM decrypt, with a cached key."""
    from crypto_micro import COLUMN, TENANT, build_facade  # bench/, this script's directory
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from crypto.envelope import seal
    from proxy import codec
    from proxy.encryption import (
        OPENED_ROWS_BYTES,
        Encryption,
        PortalState,
        RowColumns,
        column_codec,
    )
    from rules.catalog import CatalogMap
    from rules.model import ProtectedColumn, Rules

    material = os.urandom(32)
    facade, key = build_facade(material)
    schema, table, name = COLUMN.split(".")
    column = ProtectedColumn(schema, table, name, "text")
    envelopes = [seal(key, COLUMN, field_value(7, f).encode()) for f in range(6)]
    body = codec.encode_data_row(envelopes)[5:]  # without the message header
    number = 20_000
    per_row: list[float] = []
    for remembered in (0, OPENED_ROWS_BYTES):
        encryption = Encryption(
            Rules(), facade, CatalogMap(), service_dsn="", opened_rows_bytes=remembered
        )
        crypt = encryption.session({})
        crypt.session_tenant = TENANT
        state = PortalState(
            columns=RowColumns(6, tuple((i, column, column_codec(column)) for i in range(6))),
            result_formats=(1,),
        )
        opened = crypt.data_row(body, state)
        assert opened is not None
        assert codec.decode_data_row(opened[5:])[0] == b"value-000007-0-"
        timer = timeit.Timer(functools.partial(crypt.data_row, body, state))
        per_row.append(min(timer.repeat(number=number, repeat=repeat)))
    raw = AESGCM(material)
    env = envelopes[0]
    aad = b"pgseal:v1:" + env[1:9] + COLUMN.encode()
    dec_ns = min(
        timeit.repeat(lambda: raw.decrypt(env[9:21], env[21:], aad), number=number, repeat=repeat)
    )
    cold, warm = (t / number / 6 * 1e9 for t in per_row)
    return cold, warm, dec_ns / number * 1e9


def machine_busy() -> float:
    """Seconds of CPU all cores have spent not idle since boot (/proc/stat).

    Says whether a run was bound by the machine's CPU (near 100 %) or by
    the round trips (cores left idle while every client waits).
    """
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if match:
            key = match.group(1) + (match.group(2) or "")
            values[key] = float(match.group(3))
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="asyncpg connections per run")
    parser.add_argument("--dsn", help="an existing server (superuser DSN), not an embedded one")
    parser.add_argument(
        "--only", choices=("read", "write"), help="run one workload (for profiling)"
    )
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="also run PgBouncer on the plaintext tables (a proxy hop in C, nothing encrypted)",
    )
    parser.add_argument(
        "--unix-upstream",
        action="store_true",
        help="proxies reach Postgres through its unix socket (embedded Postgres only)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run pgseal on the plaintext tables (the proxy's pass-through floor)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run pgseal serve --workers N on the encrypted tables",
    )
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="pgseal-bench-enc-"))
    cluster = None
    proxy = None
    multi = None
    bouncer: subprocess.Popen[bytes] | None = None
    try:
        if args.dsn:
            direct = args.dsn
        else:
            cluster = EmbeddedPostgres(datadir=base / "data")
            cluster.start()
            direct = cluster.dsn()
        url = urlsplit(direct)
        host, port = url.hostname or "127.0.0.1", url.port or 5432
        user, database = url.username or "postgres", (url.path.lstrip("/") or "postgres")

        async def schema() -> None:
            conn = await asyncpg.connect(direct)
            try:
                await conn.execute(SCHEMA)
            finally:
                await conn.close()

        asyncio.run(schema())
        subprocess.run(
            [sys.executable, "-m", "proxy", "keys", "init", "--dsn", direct],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        metrics_port = free_port()
        up_host, upstream = host, f"postgresql://{host}:{port}/{database}"
        if args.unix_upstream:
            if cluster is None:
                sys.exit("--unix-upstream needs the embedded Postgres (no --dsn)")
            up_host = str(cluster.socket_dir)
            upstream = f"postgresql:///{database}?host={up_host}&port={port}"
        master_env = {"PGSEAL_BENCH_MK": base64.b64encode(os.urandom(32)).decode()}
        proxy = start_pgseal(
            base / "pgseal",
            upstream,
            f"service_dsn: {direct}\nmaster_key: env:PGSEAL_BENCH_MK\n"
            f"metrics_listen: 127.0.0.1:{metrics_port}\n{RULES}",
            master_env,
        )
        sealed = proxy.dsn(user=user, database=database)
        print("loading ...", flush=True)
        asyncio.run(load(sealed, direct))

        runs: dict[tuple[str, str], list[float]] = {}
        workloads = {"read": read_workload, "write": write_workload}
        if args.only:
            workloads = {args.only: workloads[args.only]}
        assert proxy.process is not None
        seal_pids = (proxy.process.pid,)
        targets = [("pgseal", sealed, "enc", seal_pids), ("direct", direct, "plain", ())]
        if args.floor:
            # pgseal relaying the plaintext tables: what any statement costs
            # through this proxy before a single field is sealed or opened.
            targets.append(("relay", sealed, "plain", seal_pids))
        if args.workers > 1:
            multi = start_pgseal(
                base / "pgseal-workers",
                upstream,
                f"service_dsn: {direct}\nmaster_key: env:PGSEAL_BENCH_MK\n{RULES}",
                master_env,
                args=("--workers", str(args.workers)),
            )
            assert multi.process is not None
            name = f"pgseal*{args.workers}"
            multi_dsn = multi.dsn(user=user, database=database)
            targets.append((name, multi_dsn, "enc", (multi.process.pid,)))
        if args.pgbouncer:
            bouncer, bouncer_port = start_pgbouncer(base / "pgbouncer", up_host, port, user)
            bounced = f"postgresql://{user}@127.0.0.1:{bouncer_port}/{database}"
            targets.append(("pgbouncer", bounced, "plain", (bouncer.pid,)))
        cpu: dict[tuple[str, str], list[float]] = {}
        user_cpu: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            order = targets if round_ % 2 == 0 else targets[::-1]
            for workload, run in workloads.items():
                for name, dsn, prefix, pids in order:
                    target = Target(name, "", 0, pids, name.startswith("pgseal*"))
                    before = time.perf_counter(), cpu_split(target)
                    machine, client, sched = machine_busy(), os.times(), sched_split(target)
                    qps = asyncio.run(run(dsn, f"{prefix}_{workload}", args.clients, args.duration))
                    elapsed = time.perf_counter() - before[0]
                    busy = (machine_busy() - machine) / elapsed / (os.cpu_count() or 1)
                    client_s = sum(os.times()[:2]) - sum(client[:2])
                    runs.setdefault((workload, name), []).append(qps)
                    line = (
                        f"round {round_ + 1} {workload:5} {name:9} {qps:9.0f} q/s"
                        f"   machine {busy:4.0%} busy, client {client_s / elapsed:4.0%}"
                    )
                    if pids:  # the proxy's CPU per query (connects included)
                        after, queries = cpu_split(target), qps * elapsed
                        user = (after[0] - before[1][0]) / queries * 1e6
                        per_query = user + (after[1] - before[1][1]) / queries * 1e6
                        cpu.setdefault((workload, name), []).append(per_query)
                        user_cpu.setdefault((workload, name), []).append(user)
                        line += f"   {per_query:6.1f} us CPU/query ({user:5.1f} us user)"
                        now = sched_split(target)
                        ran, waited = (now[0] - sched[0]) / elapsed, (now[1] - sched[1]) / elapsed
                        line += f", ran {ran:4.0%} + waited for a CPU {waited:4.0%}"
                    print(line, flush=True)
        written = ["enc_read"] + (["enc_write"] if "write" in workloads else [])
        asyncio.run(check_stored(direct, written))
        metrics = scrape(metrics_port)

        print()
        print(f"{args.clients} asyncpg connections, {args.duration:g} s per run, "
              f"{args.rounds} alternating rounds, medians")  # fmt: skip
        medians: dict[tuple[str, str], float] = {
            key: statistics.median(values) for key, values in runs.items()
        }
        verdicts = []
        for workload in workloads:
            seal, plain = medians[(workload, "pgseal")], medians[(workload, "direct")]
            ratio = seal / plain
            verdicts.append(ratio >= 0.6)
            what = (
                f"{ROWS_PER_QUERY} rows x {len(FIELDS)} protected text fields per query"
                if workload == "read"
                else f"single-row INSERT of {len(FIELDS)} protected text fields"
            )
            print(f"{workload:5} pgseal {seal:8.0f} q/s   direct {plain:8.0f} q/s   "
                  f"ratio {ratio:.2f}x (target >= 0.6x: {'met' if ratio >= 0.6 else 'MISSED'})"
                  f"   [{what}]")  # fmt: skip
            if (workload, "relay") in medians:
                relay = medians[(workload, "relay")]
                print(f"      pgseal relaying plaintext tables {relay:8.0f} q/s   "
                      f"ratio {relay / plain:.2f}x (the floor through pgseal)")  # fmt: skip
            if (workload, f"pgseal*{args.workers}") in medians:
                many = medians[(workload, f"pgseal*{args.workers}")]
                print(f"      pgseal --workers {args.workers} (encrypted) {many:8.0f} q/s   "
                      f"ratio {many / plain:.2f}x")  # fmt: skip
            if (workload, "pgbouncer") in medians:
                bounced_qps = medians[(workload, "pgbouncer")]
                print(f"      PgBouncer on plaintext tables    {bounced_qps:8.0f} q/s   "
                      f"ratio {bounced_qps / plain:.2f}x (a proxy hop in C, nothing encrypted); "
                      f"pgseal/PgBouncer {seal / bounced_qps:.2f}x")  # fmt: skip
            costs = ", ".join(
                f"{name} {statistics.median(cpu[(workload, name)]):.1f} us"
                f" ({statistics.median(user_cpu[(workload, name)]):.1f} user)"
                for name in ("pgseal", f"pgseal*{args.workers}", "relay", "pgbouncer")
                if (workload, name) in cpu
            )
            print(f"      proxy CPU per query: {costs}")
        field_ns, again_ns, decrypt_ns = asyncio.run(open_cost_in_process())
        print(f"open per field: {field_ns:.0f} ns in pgseal's DataRow path (in-process, "
              f"AES-GCM decrypt alone {decrypt_ns:.0f} ns); {again_ns:.0f} ns for a row "
              "read again (remembered)")  # fmt: skip
        if "read" in workloads:
            fields_per_query = ROWS_PER_QUERY * len(FIELDS)
            seal_read, plain_read = medians[("read", "pgseal")], medians[("read", "direct")]
            e2e_ns = (1 / seal_read - 1 / plain_read) * args.clients / fields_per_query * 1e9
            print(f"end to end: {e2e_ns:.0f} ns more per field and query than direct")
        hits = metrics.get("pgseal_plan_cache_hits_total", 0.0)
        misses = metrics.get("pgseal_plan_cache_misses_total", 0.0)
        total = hits + misses
        rate = hits / total if total else 0.0
        print(f"plan cache: {hits:.0f} hits, {misses:.0f} misses, hit rate {rate:.1%} "
              "(consulted per Parse; asyncpg prepares once per connection)")  # fmt: skip
        for key, value in sorted(metrics.items()):
            if key.startswith(("pgseal_values_", "pgseal_key_cache_hits", "pgseal_queries")):
                print(f"  {key} {value:.0f}")
        return 0 if all(verdicts) else 1
    finally:
        if proxy is not None:
            proxy.stop()
        if multi is not None:
            multi.stop()
        if bouncer is not None:
            bouncer.terminate()
            bouncer.wait(10)
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
