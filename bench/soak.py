"""Soak pgseal under faults: ``bench/soak --clients 50 --minutes N``.

Runs ``tests/ops/soak.py`` (an embedded PostgreSQL restarted once, a fault
hop between pgseal and it, clients doing encrypted reads and writes while
connections are killed, queries cancelled, links reset, delayed and stalled),
then checks every committed write, every envelope, pgseal's RSS and file
descriptors, and prints the figures. Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ops.soak import SoakOptions, run_soak  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (50)")
    parser.add_argument("--minutes", type=float, default=1.0, help="duration (1)")
    parser.add_argument("--seed", type=int, help="random seed, to replay a run")
    parser.add_argument(
        "--rss-bound-mib", type=float, default=16.0, help="allowed RSS growth after warm-up (16)"
    )
    parser.add_argument(
        "--log-level", default="info", help="pgseal's log level (info; debug logs every query)"
    )
    args = parser.parse_args()
    os.environ["PGSEAL_TEST_LOG_LEVEL"] = args.log_level
    options = SoakOptions(
        clients=args.clients,
        seconds=args.minutes * 60,
        seed=args.seed,
        rss_bound_mib=args.rss_bound_mib,
    )
    report = asyncio.run(run_soak(options))
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
