"""Login rate over TLS + SCRAM: Postgres directly, pgseal pass-through, pgseal terminate.

    bench/auth_logins [--duration 5] [--clients 4]

Starts Debian's PostgreSQL (with OpenSSL) with ``ssl=on`` and scram-sha-256,
and two pgseals in front of it, both with TLS on the client and the upstream
leg: one relaying authentication (clients must use ``channel_binding=disable``
there, see docs/AUTH.md) and one terminating it with the default auth_query
(clients bind with SCRAM-SHA-256-PLUS; pgseal logs in with the recovered
ClientKey). ``pgbench -C`` opens a new connection for every transaction
(``SELECT 1``), so its TPS is logins per second.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import trustme

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.embedded import EmbeddedPostgres, find_binaries  # noqa: E402
from tests.pgseal_process import start_pgseal  # noqa: E402

PASSWORD = "bench-pw"


def pgbench(bin_dir: Path, dsn: str, script: Path, duration: int, clients: int) -> float:
    result = subprocess.run(
        [
            str(bin_dir / "pgbench"),
            "-n",
            "-C",
            "-f",
            str(script),
            "-T",
            str(duration),
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            dsn,
        ],
        env={**os.environ, "PGPASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    failed = re.search(r"number of failed transactions: ([1-9][0-9]*)", result.stdout)
    if result.returncode != 0 or match is None or failed:
        raise SystemExit(f"pgbench failed: {result.stderr.strip()[-500:]}")
    return float(match[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per target")
    parser.add_argument("--clients", type=int, default=4, help="pgbench -c")
    args = parser.parse_args()

    binaries = find_binaries(need_ssl=True)
    base = Path(tempfile.mkdtemp(prefix="pgseal-bench-auth-"))
    ca = trustme.CA()
    files = {}
    for name, cert in (("pg", ca.issue_cert("127.0.0.1")), ("pgseal", ca.issue_cert("127.0.0.1"))):
        files[f"{name}.crt"] = base / f"{name}.crt"
        files[f"{name}.key"] = base / f"{name}.key"
        files[f"{name}.crt"].write_bytes(cert.cert_chain_pems[0].bytes())
        files[f"{name}.key"].write_bytes(cert.private_key_pem.bytes())
    cluster = EmbeddedPostgres(
        datadir=base / "data",
        binaries=binaries,
        ssl_cert=files["pg.crt"],
        ssl_key=files["pg.key"],
        hba=["local all all trust", "host all all 127.0.0.1/32 scram-sha-256"],
    )
    cluster.start()
    procs = []
    try:
        cluster.psql(f"CREATE ROLE bench LOGIN PASSWORD '{PASSWORD}'")
        tls = (
            f"tls:\n  cert: {files['pgseal.crt']}\n  key: {files['pgseal.key']}\n"
            "  client: require\n  upstream: require\n"
        )
        upstream = f"postgresql://127.0.0.1:{cluster.port}/postgres"
        service = f"postgresql://postgres@/postgres?host={cluster.socket_dir}&port={cluster.port}"
        relay = start_pgseal(base / "relay", upstream, tls)
        procs.append(relay)
        terminate = start_pgseal(
            base / "terminate",
            upstream,
            tls + f"service_dsn: {service}\nauth:\n  mode: terminate\n",
        )
        procs.append(terminate)
        script = base / "select1.sql"
        script.write_text("SELECT 1;\n")
        targets = [
            ("postgres direct (TLS, scram, cb prefer)", cluster.dsn(user="bench", password="")),
            ("pgseal passthrough (TLS both legs, cb disable)", relay.dsn(user="bench")),
            ("pgseal terminate (TLS both legs, SCRAM-PLUS)", terminate.dsn(user="bench")),
        ]
        print(f"pgbench -n -C -f select1.sql -T {args.duration} -c {args.clients}")
        results = {}
        for name, dsn in targets:
            sep = "&" if "?" in dsn else "?"
            extra = "sslmode=require" + (
                "&channel_binding=disable" if "passthrough" in name else ""
            )
            dsn = dsn.replace(":@", "@") + sep + extra
            results[name] = pgbench(binaries.bin_dir, dsn, script, args.duration, args.clients)
            print(f"{name:50s} {results[name]:8.1f} logins/s")
        direct = results[targets[0][0]]
        for name, _ in targets[1:]:
            print(f"{name:50s} {results[name] / direct:8.2f}x direct")
    finally:
        for proc in procs:
            proc.stop()
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
