"""Long protocol fuzz runs against a live pgseal: ``bench/fuzz --minutes N``.

Starts an embedded PostgreSQL and pgseal with one encrypted table (tests/stacks.py), then runs the
mutation fuzzer of tests/fuzz/engine.py in batches until the time is up,
printing cases/s and outcomes, and at the end where the CPU went (this
harness, pgseal, Postgres with its backends), since a case is mostly one
connection start in each. Exit status 1 on any failure (a crash, a hang,
a healthy client refused, a plaintext stored, an internal error in the log).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from proxy.embedded import EmbeddedPostgres  # noqa: E402
from tests.conftest import PgServer  # noqa: E402
from tests.fuzz.engine import MARKER, FuzzStats, Target, fuzz  # noqa: E402
from tests.stacks import encrypted_database  # noqa: E402


async def main(minutes: float, seed: int, batch: int, concurrency: int) -> int:
    base = Path(tempfile.mkdtemp(prefix="pgseal-fuzz-"))
    cluster = EmbeddedPostgres(datadir=base / "data")
    cluster.start()
    proxy = None
    try:
        dsn = cluster.dsn()
        encrypted = await encrypted_database(
            PgServer(dsn, cluster),
            dsn,
            base / "pgseal",
            "limits: {max_message_size: 1048576}\n",
        )
        proxy = encrypted.proxy
        assert proxy.process is not None
        pgseal_cpu = proxy.process.pid
        postmaster = int((base / "data" / "postmaster.pid").read_text().split()[0])
        cpu_before = (time.process_time(), _cpu(pgseal_cpu), _cpu(postmaster, children=True))
        target = Target("127.0.0.1", proxy.port, encrypted.user, encrypted.name)
        total = FuzzStats()
        start = time.monotonic()
        round_ = 0
        while time.monotonic() - start < minutes * 60:
            stats = await fuzz(target, "t", batch, seed + round_, concurrency=concurrency)
            round_ += 1
            total.cases += stats.cases
            total.reused += stats.reused
            total.healthy_queries += stats.healthy_queries
            total.failures += stats.failures
            total.slowest = max(total.slowest, stats.slowest)
            for k, v in stats.outcomes.items():
                total.outcomes[k] = total.outcomes.get(k, 0) + v
            elapsed = time.monotonic() - start
            print(
                f"{elapsed:7.0f}s  {total.cases:9d} cases  {total.cases / elapsed:7.0f}/s  "
                f"{dict(sorted(total.outcomes.items()))}  failures={len(total.failures)}",
                flush=True,
            )
            if proxy.process is None or proxy.process.poll() is not None:
                total.failures.append("pgseal exited")
                break
        cpu = (time.process_time(), _cpu(pgseal_cpu), _cpu(postmaster, children=True))
        harness_s, pgseal_s, postgres_s = (a - b for a, b in zip(cpu, cpu_before, strict=True))
        raw = await asyncpg.connect(dsn)
        values = await raw.fetch("SELECT secret FROM t WHERE secret IS NOT NULL")
        await raw.close()
        if any(v["secret"][0] != 1 or MARKER.encode() in v["secret"] for v in values):
            total.failures.append("a plaintext value was stored")
        log = proxy.log_text()
        if "Traceback" in log or "internal error" in log:
            total.failures.append("pgseal logged an internal error or a traceback")
        print(f"cases: {total.cases}, slowest case: {total.slowest:.2f}s, stored values: "
              f"{len(values)}, failures: {len(total.failures)}")  # fmt: skip
        print(
            f"elapsed {elapsed:.0f}s, {total.cases / elapsed:.0f} cases/s, "
            f"{total.reused} cases on a reused connection, "
            f"{total.healthy_queries} healthy-client answers; CPU seconds: harness "
            f"{harness_s:.0f}, pgseal {pgseal_s:.0f}, Postgres {postgres_s:.0f}"
        )
        for failure in total.failures[:20]:
            print("  FAIL", failure)
        return 1 if total.failures else 0
    finally:
        if proxy is not None:
            proxy.stop()
        cluster.destroy()


def _cpu(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (and of its exited, reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime..cstime are fields 14-17.
    ticks = [int(v) for v in fields[11:15]]
    return (sum(ticks) if children else ticks[0] + ticks[1]) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16, help="cases in flight at once")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.minutes, args.seed, args.batch, args.concurrency)))
