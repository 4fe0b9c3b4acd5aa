"""Throughput of the DBA tools on one table: ``bench/dba_100k.py [--rows N]``.

Starts an embedded PostgreSQL in a temporary directory, fills ``customers``
with N rows (generate_series) holding three configured columns, then runs the
real CLI, timing each command and printing its output as a DBA sees it:

    pgseal rules check --apply   (text -> bytea, blind-index column)
    pgseal migrate               (seal 3 columns + blind index)
    pgseal audit                 (structure and key ids only)
    pgseal audit --master-key    (also authenticates every envelope)
    pgseal keys rotate --all; pgseal keys list --tenant 1; pgseal keys destroy (refused)
    pgseal reencrypt
    pgseal keys list             (values per key version, counted in Postgres)
    pgseal keys destroy --tenant 1 --version 1

rows/s is the number of table rows divided by the wall time of the command,
Python start-up included. The output of this script is what docs/DBA.md and
docs/AUDIT.md quote.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from proxy.embedded import EmbeddedPostgres  # noqa: E402

TABLES = """
tables:
  customers:
    tenant_column: business_id
    columns:
      phone: {type: text, migrating: true}
      tax_id: {type: text, searchable: tax_id_bidx, normalize: [trim, casefold], migrating: true}
      note: {type: text, storage: text, migrating: true}
"""


def schema(rows: int) -> str:
    return f"""
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    business_id bigint NOT NULL,
    name text,
    email text,
    phone text,
    tax_id text,
    note text
);
INSERT INTO customers (business_id, name, email, phone, tax_id, note)
SELECT 1 + i % 7, 'name ' || i, 'user' || i || '@example.net',
       '+1-555-' || lpad(i::text, 7, '0'), 'TX-' || i,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'note ' || i END
FROM generate_series(1, {rows}) AS i;
ANALYZE customers;
"""


def run(label: str, args: list[str], env: dict[str, str], rows: int) -> float:
    print(f"$ pgseal {' '.join(args)}", flush=True)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    sys.stdout.write(done.stdout)
    sys.stdout.write(done.stderr)
    print(
        f"[exit {done.returncode}; {label}: {seconds:.1f} s wall, {rows / seconds:,.0f} rows/s]\n"
    )
    return rows / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgseal-bench-dba-") as tmp:
        base = Path(tmp)
        cluster = EmbeddedPostgres(datadir=base / "data")
        cluster.start()
        try:
            dsn = cluster.dsn()

            async def fill() -> None:
                con = await asyncpg.connect(dsn)
                try:
                    await con.execute(schema(args.rows))
                finally:
                    await con.close()

            asyncio.run(fill())
            env = {**os.environ, "PGSEAL_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
            config = base / "config.yaml"
            where = urlsplit(dsn)
            config.write_text(
                f"upstream: postgresql://{where.hostname}:{where.port}{where.path}\n"
                f"service_dsn: {dsn}\nmaster_key: env:PGSEAL_MASTER_KEY\n{TABLES}"
            )
            c = ["--config", str(config)]
            subprocess.run([sys.executable, "-m", "proxy", "keys", "init", "--dsn", dsn],
                           cwd=ROOT, env=env, check=True, capture_output=True)  # fmt: skip
            rows = args.rows
            run("rules check", ["rules", "check", *c, "--apply"], env, rows)
            rates = {
                "migrate": run("migrate", ["migrate", *c, "--batch-size", "2000"], env, rows),
                "audit": run("audit", ["audit", *c], env, rows),
                "audit --master-key": run(
                    "audit --master-key",
                    ["audit", *c, "--master-key", "env:PGSEAL_MASTER_KEY"],
                    env,
                    rows,
                ),
            }
            run("keys rotate", ["keys", "rotate", "--all", *c], env, rows)
            run("keys list", ["keys", "list", "--tenant", "1", *c], env, rows)
            destroy = ["keys", "destroy", "--tenant", "1", "--version", "1", *c]
            run("keys destroy (refused)", destroy, env, rows)
            rates["reencrypt"] = run(
                "reencrypt", ["reencrypt", *c, "--batch-size", "2000"], env, rows
            )
            rates["keys list (counts)"] = run("keys list", ["keys", "list", *c], env, rows)
            run("keys destroy", destroy, env, rows)
            print(f"summary ({rows} rows, 3 configured columns, wall time incl. start-up):")
            for name, rate in rates.items():
                print(f"  {name:20s} {rate:10,.0f} rows/s")
        finally:
            cluster.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
