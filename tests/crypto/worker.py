"""A second OS process for the cross-process tests (run with ``python -m``).

The master key comes in ``PGSEAL_TEST_MASTER`` (base64), never on the command
line. Modes:

``first-key DSN TENANT START_AT``
    sleep until wall-clock ``START_AT``, create/find the tenant's first keys,
    print ``KEYS <data key id> <index key id>``.
``watch DSN COLUMN ENVELOPE_HEX``
    open the envelope (caching its key), print ``READY``, then poll the
    synchronous cache path every millisecond; when the key leaves the cache
    print ``DROPPED``, then try a full open and print ``DESTROYED`` if it
    raises KeyDestroyed. Gives up after 20 s with ``TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import sys
import time

import asyncpg

from crypto.errors import KeyDestroyed
from crypto.field import FieldCrypto
from crypto.master import load_master_keys
from crypto.store import KeyStore


def say(line: str) -> None:
    print(line, flush=True)


async def first_key(dsn: str, tenant: str, start_at: float) -> None:
    ring = load_master_keys(["env:PGSEAL_TEST_MASTER"])
    con = await asyncpg.connect(dsn)
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        data, index = await KeyStore(con).ensure_tenant_keys(tenant, ring)
        say(f"KEYS {data.key_id} {index.key_id}")
    finally:
        await con.close()


async def watch(dsn: str, column: str, envelope: bytes) -> None:
    ring = load_master_keys(["env:PGSEAL_TEST_MASTER"])
    fc = await FieldCrypto.connect(dsn, ring)
    try:
        await fc.open_for(column, envelope)
        assert fc.try_open_cached(column, envelope) is not None
        say("READY")
        deadline = time.monotonic() + 20
        while fc.try_open_cached(column, envelope) is not None:
            if time.monotonic() > deadline:
                say("TIMEOUT")
                return
            await asyncio.sleep(0.001)
        say("DROPPED")
        try:
            await fc.open_for(column, envelope)
        except KeyDestroyed as exc:
            say(f"DESTROYED {exc}")
        else:
            say("STILL-OPENS")
    finally:
        await fc.close()


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "first-key":
        asyncio.run(first_key(argv[1], argv[2], float(argv[3])))
    elif mode == "watch":
        asyncio.run(watch(argv[1], argv[2], bytes.fromhex(argv[3])))
    else:
        say(f"unknown mode {mode}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
