"""The invoicing app's workload through pgseal vs the same app straight on Postgres.

    bench/app [--businesses 8] [--ops 60] [--rounds 2] [--dsn SUPERUSER_DSN]

One PostgreSQL (embedded, or ``--dsn``) holds two copies of the app's schema:
``bench_plain`` (the plaintext baseline, used directly) and ``bench_sealed`` (the
bytea schema, with pgseal in front of it, the root config.yaml's rules, a fresh
master key). Both are seeded the same way (``app.seed``, through pgseal for the
sealed copy). Then N simulated businesses work concurrently, one asyncio task
each on a shared pool of N connections, through the app's own service layer:

    40%  list invoices with customer names and totals   (billing.list_invoices)
    20%  create an invoice with 5 line items            (billing.issue_invoice)
    20%  record a payment on one of those invoices      (billing.record_payment)
    20%  search a customer by email                     (contacts.find_contacts)

Each business does the same ``--ops`` operations, in the same (seeded) order, on
each target, so both databases grow alike. Rounds alternate which target goes
first. Prints per target and per operation the throughput (operations/s over the
whole run) and p50/p95 latency over every round, and the pgseal/direct ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import yaml  # noqa: E402

from app.access import Actor  # noqa: E402
from app.accounts import owner_actor  # noqa: E402
from app.billing import LineInput, issue_invoice, list_invoices, record_payment  # noqa: E402
from app.contacts import ContactKind, find_contacts, list_contacts  # noqa: E402
from app.schema import EncryptedStorage, migrate  # noqa: E402
from app.seed import seed_businesses  # noqa: E402
from proxy.embedded import EmbeddedPostgres  # noqa: E402
from tests.pgseal_process import PgsealProcess, start_pgseal  # noqa: E402

OPERATIONS = (
    ("list invoices", 40),
    ("create invoice (5 lines)", 20),
    ("record payment", 20),
    ("search by email", 20),
)


@dataclass
class Target:
    name: str
    dsn: str  # the app's
    latencies: dict[str, list[float]] = field(default_factory=dict)
    elapsed: float = 0.0  # summed over rounds
    count: int = 0


@dataclass
class Business:
    owner: Actor
    customers: list[tuple[int, str]]  # (id, email)
    invoices: list[int] = field(default_factory=list)


def _database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


async def _create_database(admin_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _database(admin_dsn, name)


async def _businesses(pool: asyncpg.Pool[asyncpg.Record]) -> list[Business]:
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM businesses ORDER BY id")]
    found = []
    for business_id in ids:
        owner = await owner_actor(pool, business_id)
        contacts = await list_contacts(pool, owner, ContactKind.CUSTOMER)
        found.append(Business(owner, [(c.id, c.email) for c in contacts if c.email is not None]))
    return found


async def _work(
    pool: asyncpg.Pool[asyncpg.Record], business: Business, ops: int, seed: int, target: Target
) -> None:
    rng = random.Random(seed)
    names = [name for name, _ in OPERATIONS]
    weights = [weight for _, weight in OPERATIONS]
    today = dt.date.today()
    for i in range(ops):
        name = rng.choices(names, weights)[0]
        if name == "record payment" and not business.invoices:
            name = "create invoice (5 lines)"
        customer_id, email = rng.choice(business.customers)
        lines = [
            LineInput(f"Work package {i}.{n}", Decimal(n + 1), Decimal("85.00"), Decimal(20))
            for n in range(5)
        ]
        invoice_id = rng.choice(business.invoices) if business.invoices else 0
        typed = "  " + email.upper()  # as a user types it: the app canonicalises
        start = time.perf_counter()
        if name == "list invoices":
            await list_invoices(pool, business.owner)
        elif name == "create invoice (5 lines)":
            invoice = await issue_invoice(
                pool, business.owner, customer_id, lines, notes=f"Bench invoice {i}"
            )
            business.invoices.append(invoice.id)
        elif name == "record payment":
            await record_payment(
                pool, business.owner, invoice_id, Decimal("1.00"),
                method="card", paid_on=today, reference=f"bench {i}",
            )  # fmt: skip
        else:
            await find_contacts(pool, business.owner, ContactKind.CUSTOMER, email=typed)
        target.latencies.setdefault(name, []).append(time.perf_counter() - start)
        target.count += 1


async def _round(target: Target, ops: int, seed: int, connections: int) -> None:
    pool = await asyncpg.create_pool(target.dsn, min_size=connections, max_size=connections)
    try:
        businesses = await _businesses(pool)
        # Warm: plans, the key cache, the pool's statement caches.
        await asyncio.gather(*(_work(pool, b, 2, seed - 1, Target("warm", "")) for b in businesses))
        start = time.perf_counter()
        await asyncio.gather(
            *(_work(pool, b, ops, seed + k, target) for k, b in enumerate(businesses))
        )
        target.elapsed += time.perf_counter() - start
    finally:
        await pool.close()


async def _check_sealed(direct_dsn: str) -> None:
    """The sealed copy really holds envelopes (a benchmark of nothing would be fast too)."""
    conn = await asyncpg.connect(direct_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE get_byte(description, 0) = 1) FROM line_items"
        )
    finally:
        await conn.close()
    assert row is not None
    total, sealed = row
    print(f"\nsealed copy, read directly: {sealed} of {total} line item descriptions are envelopes")
    if sealed != total or total == 0:
        raise SystemExit("the sealed copy holds something other than envelopes")


def _ms(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


def _report(plain: Target, sealed: Target, args: argparse.Namespace) -> None:
    print()
    print(
        f"{args.businesses} concurrent businesses x {args.ops} operations x {args.rounds} rounds"
        f" (alternating), pool of {args.businesses} connections, asyncpg"
    )
    header = f"{'operation':26} {'target':8} {'ops/s':>8} {'p50 ms':>8} {'p95 ms':>8}"
    print(header)
    print("-" * len(header))
    rows: list[tuple[str, list[float], list[float]]] = [
        (name, plain.latencies.get(name, []), sealed.latencies.get(name, []))
        for name, _ in OPERATIONS
    ]
    every_plain = [v for _, p, _ in rows for v in p]
    every_sealed = [v for _, _, s in rows for v in s]
    rows.append(("all (the mix)", every_plain, every_sealed))
    for name, p, s in rows:
        for target, values in ((plain, p), (sealed, s)):
            if values:
                rate = f"{len(values) / target.elapsed:8.0f}" if name.startswith("all") else ""
                p50, p95 = _ms(values, 50), _ms(values, 95)
                print(f"{name:26} {target.name:8} {rate:>8} {p50:8.2f} {p95:8.2f}")
        if p and s:
            throughput = ""
            if name.startswith("all"):
                throughput = f"{len(s) / sealed.elapsed / (len(p) / plain.elapsed):7.2f}x"
            print(
                f"{'':26} {'ratio':8} {throughput:>8} {_ms(s, 50) / _ms(p, 50):7.2f}x"
                f" {_ms(s, 95) / _ms(p, 95):7.2f}x   (pgseal / direct)"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--businesses", type=int, default=8, help="concurrent businesses (N)")
    parser.add_argument("--ops", type=int, default=60, help="operations per business per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dsn", help="an existing server (superuser DSN) instead of an embedded one"
    )
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="pgseal-bench-app-"))
    cluster: EmbeddedPostgres | None = None
    proxy: PgsealProcess | None = None
    try:
        if args.dsn:
            admin = args.dsn
        else:
            cluster = EmbeddedPostgres(datadir=base / "data")
            cluster.start()
            admin = cluster.dsn()
        plain_dsn = asyncio.run(_create_database(admin, "bench_plain"))
        sealed_direct = asyncio.run(_create_database(admin, "bench_sealed"))
        asyncio.run(migrate(plain_dsn, storage=EncryptedStorage.PLAINTEXT))
        asyncio.run(migrate(sealed_direct, storage=EncryptedStorage.BYTEA))
        subprocess.run(
            [sys.executable, "-m", "proxy", "keys", "init", "--dsn", sealed_direct],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        tables = yaml.safe_load((ROOT / "config.yaml").read_text())["tables"]
        url = urlsplit(sealed_direct)
        os.environ.setdefault("PGSEAL_TEST_LOG_LEVEL", "warning")
        proxy = start_pgseal(
            base / "pgseal",
            f"postgresql://{url.hostname}:{url.port}/bench_sealed",
            f"service_dsn: {sealed_direct}\nmaster_key: env:PGSEAL_BENCH_MK\n"
            + yaml.safe_dump({"tables": tables}),
            env={"PGSEAL_BENCH_MK": base64.b64encode(os.urandom(32)).decode()},
        )
        sealed_dsn = proxy.dsn(user=url.username or "postgres", database="bench_sealed")
        plain = Target("direct", plain_dsn)
        sealed = Target("pgseal", sealed_dsn)
        for target in (plain, sealed):
            print(f"seeding {args.businesses} businesses ({target.name}) ...", flush=True)

            async def seed(dsn: str) -> None:
                pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
                try:
                    await seed_businesses(pool, args.businesses, seed=args.seed, rounds=4)
                finally:
                    await pool.close()

            asyncio.run(seed(target.dsn))
        for round_ in range(args.rounds):
            order = (plain, sealed) if round_ % 2 == 0 else (sealed, plain)
            for target in order:
                before, elapsed = target.count, target.elapsed
                asyncio.run(_round(target, args.ops, args.seed * 1000 + round_, args.businesses))
                ops = target.count - before
                print(
                    f"round {round_ + 1} {target.name:7} {ops} ops in"
                    f" {target.elapsed - elapsed:.2f} s", flush=True,
                )  # fmt: skip
        _report(plain, sealed, args)
        asyncio.run(_check_sealed(sealed_direct))
        return 0
    finally:
        if proxy is not None:
            proxy.stop()
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
