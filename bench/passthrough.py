"""Pass-through throughput: pgbench against Postgres, PgBouncer and pgseal in one run.

    bench/passthrough [--duration 10] [--rounds 3] [--clients 8] [--threads 2] [--with-relay]
                      [--workers 2] [--unix-upstream]

Starts an embedded PostgreSQL (or uses ``--dsn``), PgBouncer in session pooling
(Debian package ``pgbouncer``, installed with apt-get when missing) and pgseal
with no encrypted tables, initialises pgbench, then runs ``pgbench -S`` in
``prepared`` and ``simple`` mode against each target for the same duration,
alternating the order every round. Prints TPS and average latency (median of
the rounds), the ratios pgseal/direct and pgseal/PgBouncer and the CPU each
proxy spent per transaction (from /proc: unlike TPS it hardly depends on what
else the machine runs); then the RSS that 500 idle client connections cost
pgseal, in total and per connection. ``--with-relay`` adds a bare uvloop byte
relay (bench/passthrough_relay.py) as a fourth target: the floor for any
Python proxy, so what pgseal's own work costs can be read off. ``--workers N``
adds ``pgseal serve --workers N`` and, to compare like with like, N PgBouncer
processes sharing one port (``so_reuseport``, as PgBouncer's docs suggest for
using more than one core); their CPU is the sum over the processes.
``--unix-upstream`` has every proxy reach Postgres through its unix socket (as
when the proxy runs on the database host) while pgbench still connects over
TCP; direct Postgres stays TCP.

Each proxy's line also says how it spent the run (``/proc/PID/schedstat``):
the share of the wall time it ran on a CPU and the share it was runnable but
waiting in the kernel's run queue behind pgbench and the Postgres backends. A
proxy that runs or waits nearly all the time is the serial point of the
transaction; its TPS is then the CPU share it gets divided by its CPU per
transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.embedded import EmbeddedPostgres, find_binaries, free_port  # noqa: E402
from tests.pgseal_process import PgsealProcess, start_pgseal  # noqa: E402


@dataclass
class Target:
    name: str
    host: str
    port: int
    pids: tuple[int, ...] = ()  # the proxy's processes, to count the CPU they spend
    children: bool = False  # the work is done by their child processes too


def cpu_split(target: Target) -> tuple[float, float]:
    """User and system CPU time of a target's processes so far (0 for direct).

    On this kind of machine most of a proxy's time is the kernel's (loopback
    TCP sends); the user part is what the proxy's own code can change.
    """
    user = system = 0
    for pid in _target_pids(target):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])
        system += int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def _target_pids(target: Target) -> list[int]:
    pids = list(target.pids)
    if target.children:
        for parent in target.pids:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text()
            pids += [int(pid) for pid in children.split()]
    return pids


def sched_split(target: Target) -> tuple[float, float]:
    """Seconds a target's processes ran on a CPU and waited in a run queue so far.

    From /proc/PID/schedstat (main threads: every proxy here serves on one
    thread per process). Both are 0 for direct.
    """
    ran = waited = 0
    for pid in _target_pids(target):
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
        ran += int(fields[0])
        waited += int(fields[1])
    return ran / 1e9, waited / 1e9


def ensure_pgbouncer() -> str:
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit("pgbouncer is missing; install the Debian package pgbouncer")
    print("installing pgbouncer (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "pgbouncer"], check=True, env=env)
    return "/usr/sbin/pgbouncer"


def start_pgbouncer(
    workdir: Path, host: str, port: int, user: str, listen: int = 0, reuseport: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    binary = ensure_pgbouncer()
    listen = listen or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "userlist.txt").write_text(f'"{user}" ""\n')
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host={host} port={port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen}\n"
        "auth_type = trust\n"
        f"auth_file = {workdir / 'userlist.txt'}\n"
        "pool_mode = session\nmax_client_conn = 1000\ndefault_pool_size = 100\n"
        f"logfile = {workdir / 'pgbouncer.log'}\npidfile = {workdir / 'pgbouncer.pid'}\n"
        f"unix_socket_dir = {workdir}\n" + ("so_reuseport = 1\n" if reuseport else "")
    )
    args = [binary, str(ini)]
    if os.geteuid() == 0:
        shutil.chown(workdir, "pgserver", "pgserver")
        for path in workdir.iterdir():
            shutil.chown(path, "pgserver", "pgserver")
        args = [binary, "-u", "pgserver", str(ini)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket

    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", listen), timeout=0.2):
                return process, listen
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit("pgbouncer did not start: " + (workdir / "pgbouncer.log").read_text()[-1000:])


def wait_listening(port: int) -> None:
    import socket

    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listens on port {port}")


def pgbench(target: Target, user: str, database: str, args: list[str]) -> tuple[float, float]:
    env = {**os.environ, "PGHOST": target.host, "PGPORT": str(target.port), "PGUSER": user}
    result = subprocess.run(
        [str(find_binaries().bin_dir / "pgbench"), *args, database],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        sys.exit(f"pgbench against {target.name} failed: {result.stderr[-1000:]}")
    tps = re.search(r"tps = ([\d.]+)", result.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", result.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", result.stdout)
    if tps is None or latency is None:
        sys.exit(f"could not read pgbench output: {result.stdout[-500:]}")
    if failed is not None and failed.group(1) != "0":
        sys.exit(f"pgbench against {target.name}: {failed.group(1)} failed transactions")
    return float(tps.group(1)), float(latency.group(1))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def idle_connections_rss(
    proxy: PgsealProcess, user: str, database: str, count: int
) -> tuple[int, int]:
    import asyncpg

    assert proxy.process is not None
    before = rss_kb(proxy.process.pid)
    conns = []
    for _ in range(count):
        conns.append(await asyncpg.connect(proxy.dsn(user=user, database=database)))
    await asyncio.sleep(1)
    after = rss_kb(proxy.process.pid)
    for conn in conns:
        await conn.close()
    return before, after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per pgbench run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--idle", type=int, default=500, help="idle connections for the RSS test")
    parser.add_argument(
        "--dsn", help="an existing server (superuser DSN) instead of an embedded one"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="also measure pgseal --workers N against N PgBouncer processes (so_reuseport)",
    )
    parser.add_argument(
        "--unix-upstream",
        action="store_true",
        help="proxies reach Postgres through its unix socket (embedded Postgres only)",
    )
    parser.add_argument(
        "--with-relay",
        action="store_true",
        help="also measure a bare uvloop byte relay (bench/passthrough_relay.py): the floor",
    )
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="pgseal-bench-"))
    cluster = None
    if args.dsn:
        dsn = args.dsn
    else:
        cluster = EmbeddedPostgres(datadir=base / "data", settings={"max_connections": "700"})
        cluster.start()
        dsn = cluster.dsn()
    url = urlsplit(dsn)
    host, port = url.hostname or "127.0.0.1", url.port or 5432
    user, database = url.username or "postgres", (url.path.lstrip("/") or "postgres")
    bouncer = None
    proxy = None
    relay: subprocess.Popen[bytes] | None = None
    bouncers: list[subprocess.Popen[bytes]] = []
    workers: PgsealProcess | None = None
    try:
        direct = Target("direct", host, port)
        print(f"pgbench -i -s {args.scale} ...", flush=True)
        env = {**os.environ, "PGHOST": host, "PGPORT": str(port), "PGUSER": user}
        subprocess.run(
            [str(find_binaries().bin_dir / "pgbench"), "-i", "-q", "-s", str(args.scale), database],
            env=env,
            check=True,
            capture_output=True,
        )
        up_host, upstream = host, f"postgresql://{host}:{port}/{database}"
        if args.unix_upstream:
            if cluster is None:
                sys.exit("--unix-upstream needs the embedded Postgres (no --dsn)")
            up_host = str(cluster.socket_dir)
            upstream = f"postgresql:///{database}?host={up_host}&port={port}"
        bouncer, bouncer_port = start_pgbouncer(base / "pgbouncer", up_host, port, user)
        proxy = start_pgseal(base / "pgseal", upstream, "")
        assert proxy.process is not None
        targets = [
            direct,
            Target("pgbouncer", "127.0.0.1", bouncer_port, (bouncer.pid,)),
            Target("pgseal", "127.0.0.1", proxy.port, (proxy.process.pid,)),
        ]
        if args.with_relay:
            relay_port = free_port()
            relay = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "passthrough_relay.py"),
                 str(relay_port), up_host, str(port)]
            )  # fmt: skip
            wait_listening(relay_port)
            targets.append(Target("relay", "127.0.0.1", relay_port, (relay.pid,)))
        if args.workers > 1:
            n = args.workers
            workers = start_pgseal(
                base / "pgseal-workers",
                upstream,
                "",
                args=("--workers", str(n)),
            )
            assert workers.process is not None
            targets.append(
                Target(f"pgseal*{n}", "127.0.0.1", workers.port, (workers.process.pid,), True)
            )
            shared_port = free_port()
            for i in range(n):
                process, _ = start_pgbouncer(
                    base / f"pgbouncer-{i}", up_host, port, user, shared_port, reuseport=True
                )
                bouncers.append(process)
            pids = tuple(process.pid for process in bouncers)
            targets.append(Target(f"pgbouncer*{n}", "127.0.0.1", shared_port, pids))
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        user_cpu: dict[tuple[str, str], list[float]] = {}
        ran_share: dict[tuple[str, str], list[float]] = {}
        wait_share: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            shift = round_ % len(targets)
            order = targets[shift:] + targets[:shift]
            for mode in ("prepared", "simple"):
                for target in order:
                    cpu_before, sched_before = cpu_split(target), sched_split(target)
                    started = time.perf_counter()
                    tps, lat = pgbench(
                        target,
                        user,
                        database,
                        ["-S", "-M", mode, "-c", str(args.clients), "-j", str(args.threads),
                         "-T", str(args.duration), "-n"],
                    )  # fmt: skip
                    cpu_after, sched_after = cpu_split(target), sched_split(target)
                    wall = time.perf_counter() - started
                    user_used = cpu_after[0] - cpu_before[0]
                    used = user_used + cpu_after[1] - cpu_before[1]
                    results.setdefault((mode, target.name), []).append((tps, lat))
                    line = f"round {round_ + 1} {mode:8} {target.name:9} {tps:10.0f} tps"
                    line += f" {lat:7.3f} ms"
                    if target.pids:
                        # CPU per transaction barely depends on the machine's
                        # load, unlike TPS: the fairer comparison of proxies.
                        per_txn = used / (tps * args.duration) * 1e6
                        user_txn = user_used / (tps * args.duration) * 1e6
                        cpu.setdefault((mode, target.name), []).append(per_txn)
                        user_cpu.setdefault((mode, target.name), []).append(user_txn)
                        line += f" {per_txn:6.1f} us CPU/txn ({user_txn:4.1f} user)"
                        ran = (sched_after[0] - sched_before[0]) / wall
                        waited = (sched_after[1] - sched_before[1]) / wall
                        ran_share.setdefault((mode, target.name), []).append(ran)
                        wait_share.setdefault((mode, target.name), []).append(waited)
                        line += f"   ran {ran:4.0%}, waited for a CPU {waited:4.0%}"
                    print(line, flush=True)
        print()
        print(f"pgbench -S -c {args.clients} -j {args.threads} -T {args.duration}, "
              f"{args.rounds} alternating rounds, medians")  # fmt: skip
        print(f"{'mode':9} {'target':10} {'TPS':>10} {'latency ms':>11}")
        for mode in ("prepared", "simple"):
            medians = {}
            for target in targets:
                runs = results[(mode, target.name)]
                medians[target.name] = (
                    statistics.median(r[0] for r in runs),
                    statistics.median(r[1] for r in runs),
                )
                tps, lat = medians[target.name]
                print(f"{mode:9} {target.name:10} {tps:10.0f} {lat:11.3f}")
            seal = medians["pgseal"][0]
            print(f"{mode:9} pgseal/direct = {seal / medians['direct'][0]:.2f}x   "
                  f"pgseal/pgbouncer = {seal / medians['pgbouncer'][0]:.2f}x")  # fmt: skip
            seal_cpu = statistics.median(cpu[(mode, "pgseal")])
            bouncer_cpu = statistics.median(cpu[(mode, "pgbouncer")])
            print(f"{mode:9} proxy CPU per transaction: pgseal {seal_cpu:.1f} us, "
                  f"pgbouncer {bouncer_cpu:.1f} us ({seal_cpu / bouncer_cpu:.2f}x)")  # fmt: skip
            users = ", ".join(
                f"{target.name} {statistics.median(user_cpu[(mode, target.name)]):.1f} us"
                for target in targets
                if target.pids
            )
            print(f"{mode:9} of which user (the rest is the kernel's): {users}")
            shares = ", ".join(
                f"{target.name} {statistics.median(ran_share[(mode, target.name)]):.0%}"
                f" + {statistics.median(wait_share[(mode, target.name)]):.0%}"
                for target in targets
                if target.pids
            )
            print(f"{mode:9} of the wall time, ran + waited for a CPU: {shares}")
            if args.workers > 1:
                n = args.workers
                many, bouncers_tps = medians[f"pgseal*{n}"][0], medians[f"pgbouncer*{n}"][0]
                many_cpu = statistics.median(cpu[(mode, f"pgseal*{n}")])
                bouncers_cpu = statistics.median(cpu[(mode, f"pgbouncer*{n}")])
                print(f"{mode:9} {n} processes: pgseal*{n}/pgbouncer = "
                      f"{many / medians['pgbouncer'][0]:.2f}x, pgseal*{n}/pgbouncer*{n} = "
                      f"{many / bouncers_tps:.2f}x, pgseal*{n}/pgseal = {many / seal:.2f}x; "
                      f"CPU/txn pgseal*{n} {many_cpu:.1f} us, "
                      f"pgbouncer*{n} {bouncers_cpu:.1f} us")  # fmt: skip
            if args.with_relay:
                relay_tps = medians["relay"][0]
                relay_cpu = statistics.median(cpu[(mode, "relay")])
                print(f"{mode:9} bare relay: relay/pgbouncer = "
                      f"{relay_tps / medians['pgbouncer'][0]:.2f}x, "
                      f"pgseal/relay = {seal / relay_tps:.2f}x, "
                      f"{relay_cpu:.1f} us CPU/txn")  # fmt: skip
        if args.idle > 0:  # --idle 0 skips the RSS test
            before, after = asyncio.run(idle_connections_rss(proxy, user, database, args.idle))
            print(f"\npgseal RSS: {before / 1024:.1f} MB idle, {after / 1024:.1f} MB with "
                  f"{args.idle} idle client connections: +{(after - before) / 1024:.1f} MB "
                  f"({(after - before) / args.idle:.0f} KB per connection)")  # fmt: skip
        return 0
    finally:
        for process in bouncers:
            process.terminate()
            process.wait(10)
        if workers is not None:
            workers.stop()
        if relay is not None:
            relay.terminate()
            relay.wait(10)
        if proxy is not None:
            proxy.stop()
        if bouncer is not None:
            bouncer.terminate()
            bouncer.wait(10)
        if cluster is not None:
            cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
