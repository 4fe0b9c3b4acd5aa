"""A mutation fuzzer for pgseal's frontend protocol, run against a live pgseal.

The corpus is real client traffic (simple queries, extended-protocol pipelines,
COPY, writes and reads of a protected column); each case takes one corpus entry,
mutates it (bit flips, truncation, wrong or huge lengths, unknown message types,
spliced and repeated messages, junk startup packets) and sends it on a fresh
connection after a normal startup. A case passes when the connection ends in an
ErrorResponse, a clean close, or ordinary answers, within a time bound, and a
healthy client on another connection keeps getting answers throughout.

Used by tests/fuzz (a short run) and bench/fuzz (long runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "CaseResult",
    "FuzzStats",
    "Session",
    "Target",
    "corpus",
    "mutate",
    "run_case",
    "startup_packet",
]

MARKER = "FUZZ-PLAINTEXT-7f3a"


def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def _cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def startup_packet(user: str, database: str, **options: str) -> bytes:
    body = struct.pack("!I", 196608)
    for key, value in {"user": user, "database": database, **options}.items():
        body += _cstr(key) + _cstr(value)
    body += b"\x00"
    return struct.pack("!I", len(body) + 4) + body


def _parse(name: str, sql: str, types: tuple[int, ...] = ()) -> bytes:
    body = _cstr(name) + _cstr(sql) + struct.pack("!H", len(types))
    body += b"".join(struct.pack("!I", t) for t in types)
    return _msg(b"P", body)


def _bind(portal: str, stmt: str, params: list[bytes | None], fmt: int = 0) -> bytes:
    body = _cstr(portal) + _cstr(stmt) + struct.pack("!HH", 1, fmt) + struct.pack("!H", len(params))
    for p in params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
    body += struct.pack("!H", 0)
    return _msg(b"B", body)


def _execute(portal: str = "") -> bytes:
    return _msg(b"E", _cstr(portal) + struct.pack("!I", 0))


def _describe(kind: bytes, name: str = "") -> bytes:
    return _msg(b"D", kind + _cstr(name))


SYNC = _msg(b"S", b"")
FLUSH = _msg(b"H", b"")


def _query(sql: str) -> bytes:
    return _msg(b"Q", _cstr(sql))


def corpus(table: str) -> list[bytes]:
    """Real traffic shapes; ``table`` has business_id int and a protected text ``secret``."""
    insert = f"INSERT INTO {table} (business_id, secret) VALUES ($1, $2)"
    return [
        _query("SELECT 1"),
        _query(f"SELECT secret FROM {table} WHERE business_id = 1"),
        _query(f"INSERT INTO {table} (business_id, secret) VALUES (1, '{MARKER}')"),
        _query(f"SELECT secret FROM {table} ORDER BY secret"),
        _query("SELECT 1; SELECT 2; SELECT pg_catalog.now()"),
        _parse("", insert) + _bind("", "", [b"1", MARKER.encode()]) + _execute() + SYNC,
        _parse("s1", f"SELECT secret FROM {table} WHERE business_id = $1")
        + _describe(b"S", "s1")
        + _bind("p1", "s1", [b"1"])
        + _describe(b"P", "p1")
        + _execute("p1")
        + SYNC,
        _parse("", "SELECT $1::int")
        + _bind("", "", [b"\x00\x00\x00\x05"], 1)
        + _execute()
        + FLUSH
        + SYNC,
        _query(f"COPY {table} (business_id, secret) FROM STDIN")
        + _msg(b"d", f"1\t{MARKER}\n".encode())
        + _msg(b"c", b""),
        _parse("", f"COPY {table} (business_id, secret) FROM STDIN")  # as pg8000 sends it
        + _bind("", "", [])
        + _execute()
        + FLUSH
        + SYNC
        + _msg(b"d", f"1\t{MARKER}\n".encode())
        + _msg(b"c", b"")
        + SYNC,
        _query("BEGIN") + _query(f"UPDATE {table} SET secret = '{MARKER}'") + _query("ROLLBACK"),
        _msg(b"F", struct.pack("!IHHIH", 1598, 0, 0, 0, 0)),
    ]


def _messages(data: bytes) -> list[bytes]:
    out = []
    pos = 0
    while pos + 5 <= len(data):
        length = struct.unpack("!I", data[pos + 1 : pos + 5])[0]
        out.append(data[pos : pos + 1 + length])
        pos += 1 + length
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three random mutations of a message stream."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(10)
        if choice == 0 and buf:  # bit flips
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(buf))
                buf[i] ^= 1 << rng.randrange(8)
        elif choice == 1 and buf:  # truncate
            del buf[rng.randrange(len(buf)) :]
        elif choice == 2:  # a length field set to something wrong or huge
            msgs = _messages(bytes(buf))
            if msgs:
                i = rng.randrange(len(msgs))
                start = sum(len(m) for m in msgs[:i])
                value = rng.choice([0, 1, 3, 4, 5, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 20)])
                buf[start + 1 : start + 5] = struct.pack("!I", value)
        elif choice == 3 and buf:  # unknown or out-of-state message type
            msgs = _messages(bytes(buf))
            if msgs:
                i = rng.randrange(len(msgs))
                start = sum(len(m) for m in msgs[:i])
                buf[start] = rng.choice(b"\x00\x01ZTRKdcfXpxyz\xff")
        elif choice == 4:  # splice messages in another order / repeat them
            msgs = _messages(bytes(buf))
            rng.shuffle(msgs)
            buf = bytearray(b"".join(msgs * rng.randint(1, 3)))
        elif choice == 5:  # random bytes appended
            buf += rng.randbytes(rng.randint(1, 64))
        elif choice == 6 and buf:  # invalid UTF-8 inside
            i = rng.randrange(len(buf))
            buf[i:i] = b"\xff\xfe\xc0"
        elif choice == 7:  # Bind with a wrong parameter count
            buf += _bind("", "", [b"1"] * rng.randint(0, 5)) + _execute() + SYNC
        elif choice == 8 and buf:  # drop a middle chunk
            i = rng.randrange(len(buf))
            del buf[i : i + rng.randint(1, 16)]
        else:  # a huge declared length without the data
            buf += b"Q" + struct.pack("!I", rng.choice([1 << 30, (1 << 31) - 1, 1 << 24]))
    return bytes(buf)


@dataclass
class Target:
    host: str
    port: int
    user: str
    database: str
    password: str | None = None


@dataclass
class CaseResult:
    outcome: str  # "error", "closed", "answered", "waiting"
    seconds: float
    reused: bool = False  # ran on a connection an earlier case left idle


@dataclass
class FuzzStats:
    cases: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0
    reused: int = 0  # cases that ran on a connection an earlier case left idle
    healthy_queries: int = 0  # answers the parallel healthy client got during the run


@dataclass
class Session:
    """A client connection past startup, idle (its last message was ReadyForQuery 'I')."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


IDLE = b"Z\x00\x00\x00\x05I"
PROBE = _query("SELECT 'fuzz-probe'")


async def _read_until_ready(reader: asyncio.StreamReader, timeout: float) -> bytes:  # noqa: ASYNC109
    data = b""
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), timeout)
        if not chunk:
            raise ConnectionError("closed during startup")
        data += chunk
        if b"Z\x00\x00\x00\x05" in data:
            return data


async def _still_usable(session: Session, bound: float) -> bool:
    """A plain query gets its answer and leaves the connection idle again.

    This drains whatever a case's later pipelines still had coming (a repeated
    Sync answers twice), so the next case on this connection starts clean.
    """
    try:
        session.writer.write(PROBE)
        await session.writer.drain()
        data = b""
        while not (b"fuzz-probe" in data and data.endswith(IDLE)):
            chunk = await asyncio.wait_for(session.reader.read(65536), bound)
            if not chunk:
                return False
            data += chunk
        return True
    except (ConnectionError, OSError, TimeoutError):
        return False


async def run_case(
    target: Target,
    payload: bytes,
    *,
    junk_startup: bool = False,
    bound: float = 2.0,
    idle: list[Session] | None = None,
) -> CaseResult:
    """Send ``payload`` after a normal startup (or instead of one) and watch the outcome.

    With ``idle``, the case takes a connection from it instead of starting a new
    one, and puts its connection back when the case left it idle and a probe
    query still works: a fresh connection costs pgseal and Postgres a backend
    start each, which is most of a case's time, while an idle connection after
    a case is exactly the state a fresh one is in after startup.
    """
    loop = asyncio.get_running_loop()
    begin = loop.time()
    reused = idle is not None and bool(idle) and not junk_startup
    if reused:
        assert idle is not None
        session = idle.pop()
    else:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        session = Session(reader, writer)
    keep = False
    try:
        if junk_startup:
            session.writer.write(payload)
        else:
            if not reused:
                session.writer.write(startup_packet(target.user, target.database))
                await _read_until_ready(session.reader, bound)
            session.writer.write(payload)
        await session.writer.drain()
        received = b""
        outcome = "answered"
        deadline = begin + bound
        while True:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                chunk = await asyncio.wait_for(session.reader.read(65536), min(left, 0.3))
            except TimeoutError:
                # Quiet: answered, or waiting for the rest of a message the
                # mutation cut short, which is what Postgres does too.
                outcome = "waiting" if not received else outcome
                break
            if not chunk:
                outcome = "closed"
                break
            received += chunk
            if received.endswith(IDLE) or received.endswith(b"Z\x00\x00\x00\x05E"):
                break
        if b"E\x00\x00" in received and outcome == "answered":
            outcome = "error"
        seconds = loop.time() - begin
        keep = idle is not None and received.endswith(IDLE) and await _still_usable(session, bound)
        return CaseResult(outcome, seconds, reused)
    except (ConnectionError, OSError):
        return CaseResult("closed", loop.time() - begin, reused)
    finally:
        if keep:
            assert idle is not None
            idle.append(session)
        else:
            await session.close()


async def healthy_query(target: Target) -> bool:
    """A well-behaved client on its own connection: SELECT 1 gets its answer."""
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        writer.write(startup_packet(target.user, target.database))
        await _read_until_ready(reader, 10)
        writer.write(_query("SELECT 41 + 1"))
        data = b""
        while not data.endswith(b"Z\x00\x00\x00\x05I"):
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            if not chunk:
                return False
            data += chunk
        return b"42" in data
    finally:
        writer.close()


async def fuzz(
    target: Target,
    table: str,
    cases: int,
    seed: int,
    *,
    progress: Callable[[FuzzStats], None] | None = None,
    concurrency: int = 16,
) -> FuzzStats:
    """Run ``cases`` mutated sessions, ``concurrency`` at a time, while a healthy client queries.

    The cases come from one seeded generator, so a seed names a run. Workers
    pull the next case when they finish one (no batch barrier: a case that sits
    out its quiet timeout holds only its own worker), and the healthy client
    runs alongside on its own connections the whole time, each of its queries
    a check that pgseal still serves others.
    """
    rng = random.Random(seed)
    seeds = corpus(table)
    stats = FuzzStats()
    idle: list[Session] = []
    done = asyncio.Event()

    def generate() -> Iterator[tuple[int, bytes, bool]]:
        for i in range(cases):
            junk = rng.random() < 0.1
            base = startup_packet(target.user, target.database) if junk else rng.choice(seeds)
            yield i, mutate(base, rng), junk

    pending = generate()

    async def worker() -> None:
        for i, payload, junk in pending:
            try:
                result = await run_case(target, payload, junk_startup=junk, idle=idle)
            except Exception as exc:  # the harness must report, not die
                stats.failures.append(f"case {i}: {type(exc).__name__}: {exc}")
                continue
            stats.cases += 1
            stats.reused += result.reused
            stats.outcomes[result.outcome] = stats.outcomes.get(result.outcome, 0) + 1
            stats.slowest = max(stats.slowest, result.seconds)
            if result.seconds > 5:
                stats.failures.append(f"case {i}: took {result.seconds:.1f}s")
            if progress is not None and stats.cases % 50 == 0:
                progress(stats)

    async def healthy() -> None:
        while not done.is_set():
            try:
                ok = await healthy_query(target)
            except (ConnectionError, OSError, TimeoutError) as exc:
                ok = False
                stats.failures.append(f"healthy client: {type(exc).__name__}: {exc}")
            if not ok:
                stats.failures.append(f"healthy client failed after {stats.cases} cases")
            stats.healthy_queries += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.05)

    checker = asyncio.create_task(healthy())
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        done.set()
        await checker
        for session in idle:
            await session.close()
    if not await healthy_query(target):
        stats.failures.append("healthy client failed at the end")
    return stats
