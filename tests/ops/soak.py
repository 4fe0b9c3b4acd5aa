"""The soak with faults: many clients, encrypted reads and writes, a hostile network.

``run_soak`` starts its own PostgreSQL (it is restarted once mid-run), a
``FaultHop`` between pgseal and that server (both the client legs and pgseal's
key-store connections cross it), and ``pgseal serve`` with one encrypted table
(three protected columns, one searchable, five businesses). Then, for the
duration:

- ``clients`` asyncpg clients loop over inserts, updates, reads of their own
  rows (checked against what they know) and equality searches on the blind
  index, each op bounded by a timeout;
- a fault injector, every 0.3-1 s, does one of: kill a client connection in
  the middle of a query (abrupt close), cancel a running query (asyncpg sends
  a CancelRequest through pgseal), reset one pgseal↔Postgres link (RST), slow
  every link down for a while, stall every link for a while; and once, at 40 %
  of the run, restarts PostgreSQL (fast shutdown).

Every client keeps a ledger: a write it saw succeed is *committed*; a write
whose outcome it could not see (error, cancel, kill mid-commit) is *in doubt*
and may or may not have happened. At the end, over a quiet network:

- every committed row reads back through pgseal with exactly its values (the
  phone may also be one of the in-doubt updates: the client could not know),
  and every in-doubt insert is either absent or exact; rows nobody wrote count
  as phantoms;
- every stored value, read raw, is an envelope, and every envelope opens
  (one SELECT of the whole table through pgseal, which opens them all);
- pgseal's RSS, after a warm-up, grew by at most ``rss_bound_mib``;
- pgseal's file descriptors, not counting its connections to the upstream
  (the key-store pool may have grown), are back to the warm-up count.

The outcome is a ``SoakReport``; ``bench/soak`` prints it, the CI test asserts it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from proxy.embedded import EmbeddedPostgres
from tests.faulthop import FaultHop
from tests.pgseal_process import REPO_ROOT, PgsealProcess, start_pgseal

__all__ = ["SoakOptions", "SoakReport", "run_soak"]

TENANTS = 5
SCHEMA = """
CREATE TABLE soak_people (
    id bigint PRIMARY KEY,
    business_id int NOT NULL,
    name bytea,
    phone bytea,
    email bytea,
    email_bidx bytea
)
"""
RULES = """tables:
  public.soak_people:
    tenant_column: business_id
    columns:
      name: {type: text}
      phone: {type: text}
      email: {type: text, searchable: email_bidx}
"""
#: pgseal's ``key_cache.opened_rows`` in the soak: well below the RSS bound.
OPENED_ROWS_BYTES = 1 << 20
_PLAINTEXT_IN_LOG = re.compile(r"Soak Person|@soak\.example|\+49 [34]0 \d{7}")
#: Errors a client may see while the injector works: lost and refused
#: connections, cancels, shutdowns, timeouts, the key store briefly away.
EXPECTED_STATES = frozenset(
    {"08000", "08001", "08003", "08006", "08P01", "57014", "57P01", "57P02", "57P03", "58000",
     "53300", "25P02", "40001", "40P01", "55000"}
)  # fmt: skip


@dataclass(frozen=True)
class SoakOptions:
    clients: int = 50
    seconds: float = 60.0
    warmup_seconds: float = 5.0
    op_timeout: float = 8.0
    rss_bound_mib: float = 16.0
    seed: int | None = None
    restart_postgres: bool = True
    faults: bool = True  # False: the same load on a quiet network (a control run)
    workers: int = 1  # pgseal serve --workers N: RSS and fds are then summed over workers


@dataclass
class SoakReport:
    options: SoakOptions
    seed: int
    duration_s: float = 0.0
    ops: Counter[str] = field(default_factory=Counter)  # kind -> succeeded
    errors: Counter[str] = field(default_factory=Counter)  # sqlstate or type -> count
    faults: Counter[str] = field(default_factory=Counter)
    committed_writes: int = 0
    doubtful_writes: int = 0
    rows_verified: int = 0
    rows_lost: int = 0
    phantoms: int = 0
    bad_reads: int = 0
    bad_searches: int = 0
    envelopes_checked: int = 0
    envelopes_bad: int = 0
    open_failure: str | None = None
    rss_kib: tuple[int, int] = (0, 0)  # after warm-up, at the end
    fds: tuple[int, int] = (0, 0)  # the same, without upstream connections
    internal_errors_logged: int = 0
    secrets_in_log: int = 0
    log_bytes: int = 0
    phases_s: dict[str, float] = field(default_factory=dict)  # setup, load, drain, verify
    problems: list[str] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)  # error kind -> first message

    @property
    def unexpected_errors(self) -> dict[str, int]:
        return {k: v for k, v in self.errors.items() if k.startswith("SQLSTATE ") and
                k.removeprefix("SQLSTATE ") not in EXPECTED_STATES}  # fmt: skip

    @property
    def rss_growth_mib(self) -> float:
        return (self.rss_kib[1] - self.rss_kib[0]) / 1024

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        out = list(self.problems)
        for name in ("rows_lost", "phantoms", "bad_reads", "bad_searches", "envelopes_bad",
                     "internal_errors_logged", "secrets_in_log"):  # fmt: skip
            if getattr(self, name):
                out.append(f"{name} = {getattr(self, name)}")
        if self.open_failure:
            out.append(f"reading every row through pgseal failed: {self.open_failure}")
        if self.unexpected_errors:
            out.append(f"unexpected errors: {self.unexpected_errors}")
        if self.rss_growth_mib > self.options.rss_bound_mib:
            out.append(f"RSS grew {self.rss_growth_mib:.1f} MiB > {self.options.rss_bound_mib} MiB")
        if self.fds[1] > self.fds[0]:
            out.append(f"file descriptors {self.fds[1]} > baseline {self.fds[0]}")
        return out

    def text(self) -> str:
        o = self.options
        lines = [
            f"soak: {o.clients} clients, {self.duration_s:.0f} s, seed {self.seed}, "
            f"pgseal workers {o.workers}",
            "ops ok: " + ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items())),
            "faults injected: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
            + f" (total {sum(self.faults.values())})",
            "client errors: " + ", ".join(f"{k} {v}" for k, v in self.errors.most_common()),
            f"writes: {self.committed_writes} committed, {self.doubtful_writes} in doubt",
            f"rows verified: {self.rows_verified}, rows lost: {self.rows_lost}, "
            f"phantoms: {self.phantoms}, bad reads: {self.bad_reads}, "
            f"bad searches: {self.bad_searches}",
            f"envelopes checked raw: {self.envelopes_checked}, malformed: {self.envelopes_bad}, "
            f"open failure: {self.open_failure or 'none'}",
            f"pgseal RSS: {self.rss_kib[0] / 1024:.1f} MiB after warm-up -> "
            f"{self.rss_kib[1] / 1024:.1f} MiB at the end "
            f"(growth {self.rss_growth_mib:+.1f} MiB, bound {o.rss_bound_mib} MiB)",
            f"pgseal fds (without upstream links): {self.fds[0]} after warm-up -> {self.fds[1]}",
            f"pgseal's log: {self.log_bytes} bytes, internal errors {self.internal_errors_logged}, "
            f"plaintext values or master key {self.secrets_in_log}",
            "phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases_s.items()),
            "result: " + ("PASS" if self.ok else "FAIL: " + "; ".join(self.failures())),
        ]
        return "\n".join(lines)


# -- the ledger -------------------------------------------------------------------


@dataclass
class _Row:
    business: int
    name: str
    email: str
    phone: str
    committed: bool  # the insert was seen to succeed
    doubtful_phones: set[str] = field(default_factory=set)

    def phones(self) -> set[str]:
        return {self.phone} | self.doubtful_phones


@dataclass
class _Ledger:
    rows: dict[int, _Row] = field(default_factory=dict)


# -- clients ------------------------------------------------------------------------


def _state(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    return f"SQLSTATE {sqlstate}" if sqlstate else type(exc).__name__


class _Client:
    def __init__(self, index: int, dsn: str, ledger: _Ledger, report: SoakReport, seed: int):
        self.index = index
        self.dsn = dsn
        self.ledger = ledger
        self.report = report
        self.rng = random.Random(seed * 1000 + index)
        self.business = index % TENANTS + 1
        self.conn: asyncpg.Connection[Any] | None = None
        self.current: asyncio.Future[None] | None = None
        self.mine: list[int] = []
        self.next_id = (index + 1) * 10_000_000
        self.stopping = False

    async def run(self, op_timeout: float) -> None:
        while not self.stopping:
            if self.conn is None or self.conn.is_closed():
                try:
                    self.conn = await asyncpg.connect(self.dsn, timeout=5)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                        TimeoutError) as exc:  # fmt: skip
                    self.report.errors["connect: " + _state(exc)] += 1
                    self.report.examples.setdefault("connect: " + _state(exc), f"{exc!s:.300}")
                    self.conn = None
                    await asyncio.sleep(0.2)
                    continue
            kind, op = self._pick()
            self.current = asyncio.ensure_future(self._bounded(op, op_timeout))
            await asyncio.wait({self.current})
            future, self.current = self.current, None
            if future.cancelled():
                self.report.errors["cancelled"] += 1
                await asyncio.sleep(0.05)  # let asyncpg's CancelRequest go out
                self._discard_connection()
                continue
            failure = future.exception()
            if failure is None:
                self.report.ops[kind] += 1
                continue
            self.report.errors[_state(failure)] += 1
            self.report.examples.setdefault(_state(failure), f"{kind}: {failure!s:.300}")
            if isinstance(failure, asyncpg.PostgresError):
                self._reset_after_error()
            else:
                self._discard_connection()

    async def _bounded(self, op: Callable[[], Coroutine[Any, Any, None]], limit: float) -> None:
        async with asyncio.timeout(limit):
            await op()

    def _reset_after_error(self) -> None:
        """After an error the server reported: keep the connection if it is usable."""
        conn = self.conn
        if conn is not None and (conn.is_closed() or conn.is_in_transaction()):
            self._discard_connection()

    def _discard_connection(self) -> None:
        """After a cancel, a timeout or a client-side error, start afresh, as a pool does.

        asyncpg marks a transaction as started before its BEGIN runs and does
        not undo that when the BEGIN is cancelled: every later
        ``transaction()`` on that connection becomes a SAVEPOINT inside a
        BEGIN nobody commits, so writes that look committed are lost when the
        connection ends. Found by this soak; not a pgseal matter.
        """
        if self.conn is not None:
            self.conn.terminate()
            self.conn = None

    def _pick(self) -> tuple[str, Callable[[], Coroutine[Any, Any, None]]]:
        roll = self.rng.random()
        if not self.mine or roll < 0.35:
            return "insert", self._insert
        if roll < 0.55:
            return "update", self._update
        if roll < 0.85:
            return "read", self._read
        return "search", self._search

    async def _insert(self) -> None:
        assert self.conn is not None
        row_id = self.next_id
        self.next_id += 1
        tag = secrets.token_hex(4)
        row = _Row(
            self.business,
            name=f"Soak Person {row_id} {tag}",
            email=f"p{row_id}.{tag}@soak.example",
            phone=f"+49 30 {self.rng.randrange(10**7):07d}",
            committed=False,
        )
        self.ledger.rows[row_id] = row  # in doubt until the client sees success
        self.report.doubtful_writes += 1
        slow = self.rng.random() < 0.2
        async with self.conn.transaction():
            await self.conn.execute(
                "INSERT INTO soak_people (id, business_id, name, phone, email) "
                "VALUES ($1, $2, $3, $4, $5)",
                row_id, row.business, row.name, row.phone, row.email,
            )  # fmt: skip
            if slow:  # a commit that a kill or cancel can hit in the middle
                await self.conn.execute("SELECT pg_sleep(0.05)")
        row.committed = True
        self.report.doubtful_writes -= 1
        self.report.committed_writes += 1
        self.mine.append(row_id)

    async def _update(self) -> None:
        assert self.conn is not None
        row_id = self.rng.choice(self.mine)
        row = self.ledger.rows[row_id]
        phone = f"+49 40 {self.rng.randrange(10**7):07d}"
        row.doubtful_phones.add(phone)
        self.report.doubtful_writes += 1
        status = await self.conn.execute(
            "UPDATE soak_people SET phone = $1 WHERE id = $2 AND business_id = $3",
            phone, row_id, row.business,
        )  # fmt: skip
        if status != "UPDATE 1":
            self.report.problems.append(f"update of committed row {row_id} said {status!r}")
        row.doubtful_phones.discard(phone)
        row.phone = phone
        self.report.doubtful_writes -= 1
        self.report.committed_writes += 1

    async def _read(self) -> None:
        assert self.conn is not None
        row_id = self.rng.choice(self.mine)
        row = self.ledger.rows[row_id]
        got = await self.conn.fetchrow(
            "SELECT business_id, name, phone, email FROM soak_people WHERE id = $1", row_id
        )
        if got is None or (got["business_id"], got["name"], got["email"]) != (
            row.business, row.name, row.email,
        ) or got["phone"] not in row.phones():  # fmt: skip
            self.report.bad_reads += 1

    async def _search(self) -> None:
        assert self.conn is not None
        row_id = self.rng.choice(self.mine)
        row = self.ledger.rows[row_id]
        ids = await self.conn.fetch(
            "SELECT id FROM soak_people WHERE email = $1 AND business_id = $2",
            row.email, row.business,
        )  # fmt: skip
        if [r["id"] for r in ids] != [row_id]:
            self.report.bad_searches += 1


# -- faults -------------------------------------------------------------------------


class _Injector:
    def __init__(
        self,
        clients: list[_Client],
        hop: FaultHop,
        cluster: EmbeddedPostgres,
        report: SoakReport,
        rng: random.Random,
    ) -> None:
        self.clients = clients
        self.hop = hop
        self.cluster = cluster
        self.report = report
        self.rng = rng

    def _busy(self) -> list[_Client]:
        return [c for c in self.clients if c.current is not None and not c.current.done()]

    async def run(self, seconds: float, restart_at: float | None) -> None:
        faults = self.report.faults
        end = time.monotonic() + seconds
        restart_due = time.monotonic() + restart_at if restart_at is not None else None
        while time.monotonic() < end:
            await asyncio.sleep(self.rng.uniform(0.3, 1.0))
            if not self.report.options.faults:
                continue
            if restart_due is not None and time.monotonic() >= restart_due:
                restart_due = None
                attempts = await asyncio.to_thread(_restart, self.cluster)
                faults["postgres restarted"] += 1
                if attempts > 1:
                    self.report.examples["postgres stop"] = f"took {attempts} pg_ctl stop calls"
                continue
            kind = self.rng.choice(("kill", "kill", "cancel", "cancel", "reset", "delay", "stall"))
            if kind in ("kill", "cancel"):
                busy = self._busy()
                if not busy:
                    continue
                victim = self.rng.choice(busy)
                if kind == "kill" and victim.conn is not None:
                    victim.conn.terminate()  # the socket closes mid-query
                    faults["client killed mid-query"] += 1
                elif kind == "cancel" and victim.current is not None:
                    victim.current.cancel()  # asyncpg sends a CancelRequest
                    faults["query cancelled"] += 1
            elif kind == "reset":
                if self.hop.reset_one():
                    faults["upstream link reset"] += 1
            elif kind == "delay":
                self.hop.delay = self.rng.uniform(0.05, 0.3)
                faults["upstream delayed"] += 1
                await asyncio.sleep(self.rng.uniform(1.0, 2.5))
                self.hop.delay = 0.0
            else:
                self.hop.stall()
                faults["upstream stalled"] += 1
                await asyncio.sleep(self.rng.uniform(0.5, 2.0))
                self.hop.resume()


# -- the run -------------------------------------------------------------------------


def _restart(cluster: EmbeddedPostgres) -> int:
    """Fast shutdown (sessions get 57P01), then start; returns the stop attempts.

    pg_ctl is run here rather than through ``cluster.stop`` so that a failed
    stop is reported with pg_ctl's own words, and retried.
    """
    errors = []
    for attempt in range(1, 6):
        result = subprocess.run(
            [cluster.binaries.tool("pg_ctl"), "-D", str(cluster.datadir), "-m", "fast", "-w",
             "-t", "60", "stop"],
            capture_output=True, text=True, user=cluster.datadir.owner(), cwd="/",
        )  # fmt: skip
        if not (cluster.datadir / "postmaster.pid").exists():
            cluster.start()
            return attempt
        errors.append(f"exit {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
        time.sleep(0.5)
    raise RuntimeError("PostgreSQL did not stop: " + " | ".join(errors))


def _serving(proxy: PgsealProcess, workers: int) -> list[int]:
    """The pids that proxy: pgseal itself, or its workers."""
    assert proxy.process is not None
    pid = proxy.process.pid
    if workers == 1:
        return [pid]
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _fds(pids: list[int]) -> int:
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)


async def _verify(report: SoakReport, ledger: _Ledger, proxy_dsn: str, direct_dsn: str) -> None:
    through = await asyncpg.connect(proxy_dsn, timeout=10)
    try:
        try:
            rows = await through.fetch(
                "SELECT id, business_id, name, phone, email FROM soak_people"
            )
        except asyncpg.PostgresError as exc:
            report.open_failure = f"{exc.sqlstate}: {exc}"
            rows = []
        stored = {r["id"]: r for r in rows}
        for row_id, row in ledger.rows.items():
            got = stored.pop(row_id, None)
            if got is None:
                if row.committed:
                    report.rows_lost += 1
                continue
            exact = (got["business_id"], got["name"], got["email"]) == (
                row.business, row.name, row.email,
            ) and got["phone"] in row.phones()  # fmt: skip
            if row.committed:
                report.rows_verified += 1
                report.rows_lost += not exact
            elif not exact:
                report.problems.append(f"in-doubt insert {row_id} stored with other values")
        report.phantoms = len(stored)
        sample = [i for i, r in ledger.rows.items() if r.committed]
        for row_id in random.Random(report.seed).sample(sample, min(50, len(sample))):
            row = ledger.rows[row_id]
            found = await through.fetch(
                "SELECT id FROM soak_people WHERE email = $1 AND business_id = $2",
                row.email, row.business,
            )  # fmt: skip
            report.bad_searches += [r["id"] for r in found] != [row_id]
    finally:
        await through.close()
    raw = await asyncpg.connect(direct_dsn, timeout=10)
    try:
        for record in await raw.fetch("SELECT name, phone, email, email_bidx FROM soak_people"):
            for column in ("name", "phone", "email"):
                value = record[column]
                report.envelopes_checked += 1
                # Envelope v1: version byte, 8-byte key id, 12-byte nonce, tag.
                malformed = value is None or value[:1] != b"\x01" or len(value) < 1 + 8 + 12 + 16
                plaintext = value is not None and (b"Soak Person" in value or b"@soak" in value)
                report.envelopes_bad += malformed or plaintext
            if record["email_bidx"] is None:
                report.envelopes_bad += 1
    finally:
        await raw.close()


async def _quiet_fds(pids: list[int], hop: FaultHop) -> int:
    """pgseal's fds minus its upstream links."""
    return _fds(pids) - len(hop.links)


async def _all_listening(proxy: PgsealProcess, workers: int) -> list[int]:
    """Wait until every worker says it listens; their pids."""
    deadline = time.monotonic() + 20
    while workers > 1 and proxy.log_text().count(" listening on ") < workers:
        if time.monotonic() > deadline:
            raise RuntimeError("pgseal's workers did not all start")
        await asyncio.sleep(0.1)
    return _serving(proxy, workers)


async def run_soak(options: SoakOptions, workdir: Path | None = None) -> SoakReport:
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    report = SoakReport(options, seed)
    rng = random.Random(seed)
    t0 = time.monotonic()
    # The cluster lives under /tmp, not under pytest's tmp_path: pytest resets
    # its own root to 0700 whenever another run starts, and PostgreSQL runs as
    # another user when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="pgseal-soak-"))
    cluster = EmbeddedPostgres(datadir=base / "data")
    await asyncio.to_thread(cluster.start)
    hop: FaultHop | None = None
    proxy: PgsealProcess | None = None
    try:
        direct = cluster.dsn("postgres")
        setup = await asyncpg.connect(direct)
        await setup.execute(SCHEMA)
        await setup.close()
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "proxy", "keys", "init", "--dsn", direct],
            cwd=REPO_ROOT, check=True, capture_output=True,
        )  # fmt: skip
        hop = await FaultHop("127.0.0.1", cluster.port).start()
        master_key = base64.b64encode(os.urandom(32)).decode()
        via_hop = f"postgresql://postgres@127.0.0.1:{hop.port}/postgres"
        proxy = await asyncio.to_thread(
            start_pgseal,
            (workdir or base) / "pgseal",
            f"postgresql://127.0.0.1:{hop.port}/postgres",
            f"service_dsn: {via_hop}\nmaster_key: env:PGSEAL_SOAK_MK\n"
            "limits: {connect_timeout_seconds: 3, startup_timeout_seconds: 10}\n"
            # The opened-rows memory fills by design up to its bound (16 MiB
            # by default, cleared when full): small here, so it fills and
            # clears many times and RSS growth past it is a leak.
            f"key_cache: {{opened_rows: {OPENED_ROWS_BYTES}}}\n" + RULES,
            {"PGSEAL_SOAK_MK": master_key},
            args=("--workers", str(options.workers)) if options.workers > 1 else (),
        )
        pids = await _all_listening(proxy, options.workers)
        ledger = _Ledger()
        dsn = proxy.dsn()
        clients = [_Client(i, dsn, ledger, report, seed) for i in range(options.clients)]
        started = time.monotonic()
        report.phases_s["setup"] = started - t0
        tasks = [asyncio.ensure_future(c.run(options.op_timeout)) for c in clients]
        await asyncio.sleep(options.warmup_seconds)
        if pids != _serving(proxy, options.workers):
            report.problems.append("a pgseal worker was restarted during the warm-up")
        report.rss_kib = (_rss_kib(pids), 0)
        # Warm-up baseline with every client connected: its fds less the
        # clients' sockets and the upstream links is pgseal's own set.
        connected = sum(c.conn is not None and not c.conn.is_closed() for c in clients)
        fds_at_warmup = _fds(pids) - connected - len(hop.links)
        injector = _Injector(clients, hop, cluster, report, rng)
        restart_at = options.seconds * 0.4 if options.restart_postgres else None
        await injector.run(max(0.0, options.seconds - options.warmup_seconds), restart_at)
        hop.resume()
        hop.delay = 0.0
        for client in clients:
            client.stopping = True
        await asyncio.wait_for(asyncio.gather(*tasks), options.op_timeout + 10)
        for client in clients:
            if client.conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.conn.close(), 5)
        report.duration_s = time.monotonic() - started
        report.phases_s["load"] = report.duration_s
        t0 = time.monotonic()
        await _verify(report, ledger, dsn, direct)
        report.phases_s["verify"] = time.monotonic() - t0
        # Every client is gone: the fds must come back (give closes a moment).
        deadline = time.monotonic() + 10
        while True:
            fds_now = await _quiet_fds(pids, hop)
            if fds_now <= fds_at_warmup or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        report.fds = (fds_at_warmup, fds_now)
        if pids != _serving(proxy, options.workers):
            report.problems.append("a pgseal worker died and was restarted")
        report.rss_kib = (report.rss_kib[0], _rss_kib(pids))
        log = proxy.log_text()
        report.log_bytes = len(log)
        report.internal_errors_logged = log.count("internal error")
        # What pgseal logged under faults holds no protected value and no key.
        report.secrets_in_log = len(_PLAINTEXT_IN_LOG.findall(log)) + log.count(master_key)
        if not report.faults.get("postgres restarted") and options.restart_postgres:
            report.problems.append("postgres was not restarted")
    finally:
        if proxy is not None:
            proxy.stop()
        if hop is not None:
            await hop.close()
        await asyncio.to_thread(cluster.destroy)
        shutil.rmtree(base, ignore_errors=True)  # a workdir keeps pgseal's log
    return report
