"""One pgseal process against two: ``bench/workers [--duration 10] [--rounds 3]``.

Starts an embedded PostgreSQL, initialises pgbench, and runs two pgseal
instances side by side with no encrypted tables: ``serve`` (one process) and
``serve --workers 2``. Then ``pgbench -S`` (prepared and simple protocol)
against direct Postgres and each pgseal, alternating the order every round,
and prints the median TPS, the ratio 2 workers / 1 worker, and how the
connections spread over the two workers (from their "connection opened" lines).

On a machine with fewer idle cores than pgbench + Postgres + pgseal workers
need, a second worker cannot help much; the figure says what this machine did.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.embedded import EmbeddedPostgres, find_binaries  # noqa: E402
from tests.pgseal_process import PgsealProcess, start_pgseal  # noqa: E402


def run_pgbench(port: int, args: list[str]) -> float:
    env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": "postgres"}
    result = subprocess.run(
        [str(find_binaries().bin_dir / "pgbench"), *args, "postgres"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    tps = re.search(r"tps = ([\d.]+)", result.stdout)
    if result.returncode != 0 or tps is None:
        sys.exit(f"pgbench on port {port} failed: {result.stderr[-1000:]}")
    return float(tps.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("PGSEAL_TEST_LOG_LEVEL", "info")
    base = Path(tempfile.mkdtemp(prefix="pgseal-workers-"))
    cluster = EmbeddedPostgres(datadir=base / "data")
    cluster.start()
    proxies: list[PgsealProcess] = []
    try:
        upstream = f"postgresql://127.0.0.1:{cluster.port}/postgres"
        subprocess.run(
            [str(find_binaries().bin_dir / "pgbench"), "-i", "-q", "-s", str(args.scale),
             "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "postgres"],
            check=True, capture_output=True,
        )  # fmt: skip
        one = start_pgseal(base / "one", upstream)
        proxies.append(one)
        two = start_pgseal(base / "two", upstream, args=("--workers", "2"))
        proxies.append(two)
        targets = {"direct": cluster.port, "1 worker": one.port, "2 workers": two.port}
        results: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        names = list(targets)
        for round_ in range(args.rounds):
            order = names[round_ % 3 :] + names[: round_ % 3]
            for mode in ("prepared", "simple"):
                for name in order:
                    tps = run_pgbench(
                        targets[name],
                        ["-S", "-M", mode, "-c", str(args.clients), "-j", str(args.threads),
                         "-T", str(args.duration), "-n"],
                    )  # fmt: skip
                    results[(mode, name)].append(tps)
                    print(f"round {round_ + 1} {mode:8} {name:9} {tps:10.0f} tps", flush=True)
        print()
        print(f"pgbench -S -c {args.clients} -j {args.threads} -T {args.duration}, "
              f"{args.rounds} alternating rounds, median TPS, {os.cpu_count()} CPUs")  # fmt: skip
        for mode in ("prepared", "simple"):
            med = {name: statistics.median(results[(mode, name)]) for name in names}
            print(f"{mode:9} direct {med['direct']:8.0f}   1 worker {med['1 worker']:8.0f}   "
                  f"2 workers {med['2 workers']:8.0f}   "
                  f"2/1 = {med['2 workers'] / med['1 worker']:.2f}x")  # fmt: skip
        spread = collections.Counter(re.findall(r"connection opened .*\bpid=(\d+)", two.log_text()))
        print("connections per worker pid:", dict(spread))
        return 0
    finally:
        for proxy in proxies:
            proxy.stop()
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
