"""Run ``pgseal serve`` as a real child process for integration tests.

The proxy runs exactly as in production (``python -m proxy serve``, uvloop,
signal handlers), listening on a free loopback port. Its log goes to a file
that tests can read (``log_text``) to check what pgseal wrote, and never
wrote (parameters, plaintext, keys).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from proxy.embedded import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Every pgseal started by the test run: its log and the secrets it was given
#: (environment values), for the secrets scan at the end (tests/test_zz_secrets.py).
LAUNCHED: list[tuple[Path, tuple[str, ...]]] = []


@dataclass
class PgsealProcess:
    """A running ``pgseal serve``; ``dsn()`` gives a client DSN through it."""

    config_path: Path
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()  # more ``pgseal serve`` options (``--workers 2``)

    def start(self, timeout: float = 30.0) -> PgsealProcess:
        log = self.log_path.open("ab")
        env = {**os.environ, **self.env}
        LAUNCHED.append((self.log_path, tuple(self.env.values())))
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy",
                "serve",
                "--config",
                str(self.config_path),
                "--listen",
                f"{self.host}:{self.port}",
                *self.args,
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"pgseal exited with {self.process.returncode}: {self.log_text()[-2000:]}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgseal did not start listening: {self.log_text()[-2000:]}")

    def dsn(
        self,
        user: str = "postgres",
        database: str = "postgres",
        password: str | None = None,
        **params: str,
    ) -> str:
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}" + (
            "?" + query if query else ""
        )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(timeout)


def write_config(directory: Path, text: str, name: str = "config.yaml") -> Path:
    """Write a config file (``text`` is YAML) and return its path."""
    path = directory / name
    path.write_text(text)
    return path


def start_pgseal(
    directory: Path,
    upstream: str,
    extra_yaml: str = "",
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> PgsealProcess:
    """Start pgseal in front of ``upstream`` (postgresql://HOST:PORT/DB).

    ``extra_yaml`` is appended to the config (top-level keys: tls, auth,
    limits, tables, service_dsn, master_key ...).
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = write_config(
        directory,
        f"upstream: {upstream}\nlisten: 127.0.0.1:0\n"
        f"log_level: {os.environ.get('PGSEAL_TEST_LOG_LEVEL', 'info')}\n{extra_yaml}",
    )
    return PgsealProcess(
        config_path=config,
        port=free_port(),
        log_path=directory / "pgseal.log",
        env=env or {},
        args=args,
    ).start()
