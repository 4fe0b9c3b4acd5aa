"""``pgseal serve --workers N``: N server processes on one port, and their supervisor.

One Python process runs one event loop on one core; a second core needs a
second process. pgseal's processes share nothing but the database: every
worker is a complete ``pgseal serve`` (``proxy.server.run``) with its own
catalog map, plan cache and key cache, and the key caches stay consistent
because each worker LISTENs for the key-change notices the key store sends on
rotate and shred (``crypto.cache``). So N workers behave like N pgseal
instances behind a TCP load balancer, and the kernel is the load balancer:
every worker binds the listen address with ``SO_REUSEPORT`` and Linux spreads
new connections over the listening sockets by a hash of the 4-tuple.

The parent (this module) does no proxying. It:

- binds the listen address once, without listening, so that the port is
  checked (in use → one clear error) and ``:0`` resolves to one port that every
  worker then binds; the socket stays bound so that no other program takes the
  port while a worker restarts, and, not listening, it is never given a
  connection;
- forks the workers before any event loop or thread exists (fork is then safe,
  and a worker costs no re-import), with the signals it handles blocked, so a
  SIGTERM that arrives while forking is not lost;
- gives the workers a private 0700 directory for the unix sockets on which
  they relay cancel requests to each other (a CancelRequest arrives on a new
  connection, which the kernel may hand to a worker that did not issue the
  key);
- forwards SIGTERM/SIGINT (graceful stop, each worker's shutdown grace) and
  SIGHUP (each worker reloads config.yaml; the parent reloads it too, for the
  workers it starts later);
- restarts a worker that dies while serving; a worker that fails within
  ``STARTUP_WINDOW`` seconds of its start (bad master key, database down at
  start) stops them all, because a restart would fail the same way.

It exits 0 when every worker stopped cleanly after SIGTERM, else 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from rules.config import ConfigError, HostPort

if TYPE_CHECKING:
    from rules.config import Config

__all__ = ["STARTUP_WINDOW", "reserve_listen_address", "run_workers"]

log = logging.getLogger("pgseal.workers")

#: A worker that exits within this many seconds of its start failed to start.
STARTUP_WINDOW: Final = 5.0

_HANDLED: Final = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD})


def reserve_listen_address(listen: HostPort) -> tuple[HostPort, list[socket.socket]]:
    """Bind (do not listen on) every address of ``listen`` with SO_REUSEPORT.

    Returns the address with port 0 replaced by the port chosen, and the bound
    sockets, which the caller keeps open for as long as workers may bind.
    """
    infos = socket.getaddrinfo(
        listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    port = listen.port
    held: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _canon, addr in infos:
            if (family, addr[0]) in seen:
                continue
            seen.add((family, addr[0]))
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((addr[0], port, *addr[2:]))
            except OSError as exc:
                raise ConfigError(
                    "listen", None, f"cannot listen on {addr[0]}:{port}: {exc.strerror}"
                ) from None
            port = sock.getsockname()[1]
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return HostPort(listen.host, port), held


@dataclass
class _Supervisor:
    config: Config
    count: int
    children: dict[int, tuple[int, float]] = field(default_factory=dict)  # pid -> (index, t0)
    stopping: bool = False
    failed: bool = False
    parent: int = field(default_factory=os.getpid)
    rundir: str = ""  # 0700 directory for the workers' cancel sockets

    def spawn(self, index: int, unblocked: set[int | signal.Signals]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with_parent(self.parent)
                signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
                from proxy.server import run

                code = run(self.config, workers=self.count, worker=index, rundir=self.rundir)
            except ConfigError as exc:
                print(exc, file=sys.stderr)
            except BaseException as exc:
                print(
                    f"pgseal: worker {index}: error: {exc or type(exc).__name__}", file=sys.stderr
                )
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = (index, time.monotonic())
        log.info("worker %d started", index, extra={"worker": index, "pid": pid})

    def forward(self, sig: signal.Signals) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def reap(self, unblocked: set[int | signal.Signals]) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid not in self.children:
                continue
            index, started = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                if code != 0:
                    self.failed = True
                    log.warning("worker %d (pid %d) exited with %d", index, pid, code)
                continue
            if time.monotonic() - started < STARTUP_WINDOW:
                log.error(
                    "worker %d (pid %d) failed to start (exit %d); stopping the other workers",
                    index, pid, code,
                )  # fmt: skip
                self.failed = True
                self.stop()
                continue
            log.error("worker %d (pid %d) died (exit %d); starting a new one", index, pid, code)
            self.spawn(index, unblocked)

    def stop(self) -> None:
        self.stopping = True
        self.forward(signal.SIGTERM)

    def reload(self) -> None:
        if self.config.source is not None:
            try:
                self.config = self.config.reload()
            except ConfigError as exc:
                log.error("reload failed; workers started later use the running config: %s", exc)
        self.forward(signal.SIGHUP)


def _die_with_parent(parent: int) -> None:
    """A worker whose supervisor was killed (SIGKILL, OOM) gets SIGTERM from the kernel."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def run_workers(config: Config, count: int) -> int:
    """Start ``count`` workers on ``config.listen`` and supervise them until stopped."""
    listen, held = reserve_listen_address(config.listen)
    config = config.with_overrides(listen=listen)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
    rundir = tempfile.mkdtemp(prefix="pgseal-workers-")
    supervisor = _Supervisor(config, count, rundir=rundir)
    try:
        log.info("starting %d workers on %s", count, listen, extra={"pid": os.getpid()})
        for index in range(count):
            supervisor.spawn(index, blocked)
        while supervisor.children:
            info = signal.sigtimedwait(_HANDLED, 0.5)
            if info is not None:
                sig = signal.Signals(info.si_signo)
                if sig in (signal.SIGTERM, signal.SIGINT):
                    if not supervisor.stopping:
                        log.info("stopping %d workers", len(supervisor.children))
                    supervisor.stop()
                elif sig is signal.SIGHUP:
                    supervisor.reload()
            supervisor.reap(blocked)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for sock in held:
            sock.close()
        shutil.rmtree(rundir, ignore_errors=True)
    log.info("all workers stopped")
    return 1 if supervisor.failed else 0
