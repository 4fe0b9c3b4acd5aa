"""/metrics, /healthz and /readyz of a running pgseal, with real traffic."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path

import asyncpg

from proxy.embedded import free_port
from tests.conftest import PgServer
from tests.pgseal_process import start_pgseal
from tests.stacks import encrypted_database


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_metrics_count_plans_refusals_and_values(
    pg_server: PgServer, fresh_db: str, tmp_path: Path
) -> None:
    port = free_port()
    encrypted = await encrypted_database(
        pg_server, fresh_db, tmp_path, f"metrics_listen: 127.0.0.1:{port}\n"
    )
    proxy = encrypted.proxy
    try:
        conn = await asyncpg.connect(encrypted.dsn())
        await conn.execute("INSERT INTO t (business_id, secret) VALUES (1, 'metric-plaintext')")
        assert await conn.fetchval("SELECT secret FROM t") == "metric-plaintext"
        refused = False
        try:
            await conn.fetch("SELECT secret FROM t ORDER BY secret")
        except asyncpg.FeatureNotSupportedError:
            refused = True
        assert refused
        await conn.close()
        status, body = await asyncio.to_thread(_get, port, "/metrics")
        assert status == 200
        lines = dict(
            line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#")
        )
        assert float(lines['pgseal_refusals_total{operation="ORDER BY"}']) == 1
        assert float(lines["pgseal_values_sealed_total"]) == 1
        assert float(lines["pgseal_values_opened_total"]) == 1
        assert float(lines['pgseal_queries_total{plan="rewrite"}']) >= 1
        assert float(lines["pgseal_key_cache_loads_total"]) >= 1
        assert "metric-plaintext" not in body
        assert await asyncio.to_thread(_get, port, "/healthz") == (200, "ok\n")
        assert await asyncio.to_thread(_get, port, "/readyz") == (200, "ready\n")
        assert (await asyncio.to_thread(_get, port, "/nope"))[0] == 404
    finally:
        proxy.stop()


async def test_readyz_says_why_when_the_upstream_is_down(tmp_path: Path) -> None:
    port = free_port()
    proxy = await asyncio.to_thread(
        start_pgseal,
        tmp_path,
        f"postgresql://127.0.0.1:{free_port()}/nothing",
        f"metrics_listen: 127.0.0.1:{port}\n",
    )
    try:
        status, body = await asyncio.to_thread(_get, port, "/readyz")
        assert (status, body) == (503, "upstream unreachable\n")
        assert (await asyncio.to_thread(_get, port, "/healthz"))[0] == 200
    finally:
        proxy.stop()
