"""Operations endpoint: Prometheus metrics, liveness and readiness over plain HTTP.

``metrics_listen: 127.0.0.1:9187`` in config.yaml starts it. Three paths:

``/metrics``  Prometheus text format: connections, queries by plan kind, refusals
              by operation, values sealed/opened and failures, key-cache and
              plan-cache counters, upstream errors, bytes relayed.
``/healthz``  200 while the process serves (liveness).
``/readyz``   200 when the upstream accepts TCP connections and, with encrypted
              tables, the key store answers; 503 with the reason otherwise.

No value, query text, key or tenant name is ever part of a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.server import Proxy

__all__ = ["Metrics", "render", "start_metrics_server"]

log = logging.getLogger("pgseal.metrics")


@dataclass
class Metrics:
    """Process-wide counters the proxy increments (plain ints: no locking in asyncio)."""

    queries: Counter[str] = field(default_factory=Counter)  # plan kind -> count
    refusals: Counter[str] = field(default_factory=Counter)  # operation -> count
    values_sealed: int = 0
    values_opened: int = 0
    open_failures: int = 0
    upstream_errors: int = 0
    bytes_from_clients: int = 0
    bytes_to_clients: int = 0


def _line(out: list[str], name: str, kind: str, help_text: str, samples: dict[str, float]) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in samples.items():
        out.append(f"{name}{labels} {value:g}")


def render(proxy: Proxy) -> str:
    """The Prometheus exposition of ``proxy``'s counters."""
    m = proxy.metrics
    out: list[str] = []
    _line(out, "pgseal_connections", "gauge", "Client connections open now.",
          {"": len(proxy.connections)})  # fmt: skip
    _line(out, "pgseal_client_sockets", "gauge",
          "Accepted client sockets holding a max_client_connections slot, handshakes included.",
          {"": proxy.open_sockets})  # fmt: skip
    _line(out, "pgseal_connections_total", "counter", "Client connections accepted.",
          {"": proxy.accepted})  # fmt: skip
    plans_by_kind = {f'{{plan="{k}"}}': float(v) for k, v in sorted(m.queries.items())}
    _line(out, "pgseal_queries_total", "counter", "Statements planned, by plan kind.",
          plans_by_kind or {'{plan="none"}': 0})  # fmt: skip
    _line(out, "pgseal_refusals_total", "counter", "Statements refused, by operation.",
          {f'{{operation="{_label(k)}"}}': v for k, v in sorted(m.refusals.items())}
          or {'{operation="none"}': 0})  # fmt: skip
    _line(out, "pgseal_values_sealed_total", "counter", "Protected values sealed.",
          {"": m.values_sealed})  # fmt: skip
    _line(out, "pgseal_values_opened_total", "counter", "Protected values opened.",
          {"": m.values_opened})  # fmt: skip
    _line(out, "pgseal_open_failures_total", "counter",
          "Values that failed to open (tamper, destroyed key, other tenant).",
          {"": m.open_failures})  # fmt: skip
    _line(out, "pgseal_upstream_errors_total", "counter",
          "Upstream connections that failed or were lost.", {"": m.upstream_errors})  # fmt: skip
    _line(out, "pgseal_bytes_total", "counter", "Bytes relayed.",
          {'{direction="from_clients"}': m.bytes_from_clients,
           '{direction="to_clients"}': m.bytes_to_clients})  # fmt: skip
    encryption = proxy.encryption
    if encryption is not None:
        keys = encryption.crypto.stats()
        _line(out, "pgseal_key_cache_hits_total", "counter", "Key cache hits.",
              {"": keys.hits})  # fmt: skip
        _line(out, "pgseal_key_cache_misses_total", "counter", "Key cache misses.",
              {"": keys.misses})  # fmt: skip
        _line(out, "pgseal_key_cache_loads_total", "counter", "Key store round trips.",
              {"": keys.loads})  # fmt: skip
        _line(out, "pgseal_key_cache_load_errors_total", "counter", "Failed key loads.",
              {"": keys.load_errors})  # fmt: skip
        _line(out, "pgseal_key_cache_keys", "gauge", "Decrypted keys held now.",
              {"": keys.cached_keys})  # fmt: skip
        plans = encryption.planner.cache.stats
        _line(out, "pgseal_plan_cache_hits_total", "counter", "Plan cache hits.",
              {"": plans.hits})  # fmt: skip
        _line(out, "pgseal_plan_cache_misses_total", "counter", "Plan cache misses.",
              {"": plans.misses})  # fmt: skip
        _line(out, "pgseal_plan_cache_entries", "gauge", "Plans cached now.",
              {"": plans.size})  # fmt: skip
        _line(out, "pgseal_prefilter_passes_total", "counter",
              "Statements passed through without parsing.",
              {"": encryption.planner.prefilter_passes})  # fmt: skip
    return "\n".join(out) + "\n"


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


async def readiness(proxy: Proxy) -> str | None:
    """None when ready, else why not."""
    s = proxy.settings
    try:
        if s.upstream_socket_dir:
            path = f"{s.upstream_socket_dir}/.s.PGSQL.{s.upstream_port}"
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 3)
        else:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(s.upstream_host, s.upstream_port), 3
            )
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        return "upstream unreachable"
    if proxy.encryption is not None:
        try:
            if not await asyncio.wait_for(proxy.encryption.crypto.store.schema_exists(), 3):
                return "key store schema missing"
        except Exception:
            return "key store unreachable"
    return None


async def _handle(proxy: Proxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        parts = request.split(b" ", 2)
        path = parts[1].decode("ascii", "replace") if len(parts) > 1 else "/"
        path = path.split("?", 1)[0]
        if path == "/metrics":
            status, body, ctype = "200 OK", render(proxy), "text/plain; version=0.0.4"
        elif path == "/healthz":
            status, body, ctype = "200 OK", "ok\n", "text/plain"
        elif path == "/readyz":
            problem = await readiness(proxy)
            if problem is None:
                status, body, ctype = "200 OK", "ready\n", "text/plain"
            else:
                status, body, ctype = "503 Service Unavailable", problem + "\n", "text/plain"
        else:
            status, body, ctype = "404 Not Found", "not found\n", "text/plain"
        data = body.encode()
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def start_metrics_server(proxy: Proxy, host: str, port: int) -> asyncio.Server:
    server = await asyncio.start_server(lambda r, w: _handle(proxy, r, w), host, port, limit=16384)
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server
