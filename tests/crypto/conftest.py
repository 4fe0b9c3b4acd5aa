"""Fixtures for the crypto tests, and the leak watch.

The leak watch collects, for the whole tests/crypto package, every text a secret could
escape into: the message and repr of every ``CryptoError`` constructed, every
log record, the reprs of key objects, CLI output and subprocess output. Tests
register the secrets they create (plaintexts, data keys, master keys) with
:func:`watch_secret`. ``test_zz_leak_scan.py`` (collected last) scans all texts
for every secret in raw, hex and base64 form.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from crypto.errors import CryptoError
from crypto.field import FieldCrypto
from crypto.master import LocalMasterKey, MasterKeyRing
from crypto.store import KeyStore


@dataclass
class LeakWatch:
    secrets: set[bytes] = field(default_factory=set)
    texts: list[str] = field(default_factory=list)


LEAKS = LeakWatch()


def watch_secret(value: bytes | bytearray | str) -> None:
    """Register a value that must never appear in any error, log or output."""
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) >= 6:  # shorter values match by chance
        LEAKS.secrets.add(raw)


def watch_text(text: str) -> None:
    LEAKS.texts.append(text)


class _Recorder(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LEAKS.texts.append(self.format(record))


@pytest.fixture(scope="package", autouse=True)
def leak_watch() -> Iterator[LeakWatch]:
    original = CryptoError.__init__

    def init_and_record(self: CryptoError, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        LEAKS.texts.append(str(self))
        LEAKS.texts.append(repr(self))

    handler = _Recorder(level=logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    CryptoError.__init__ = init_and_record  # type: ignore[method-assign]
    try:
        yield LEAKS
    finally:
        CryptoError.__init__ = original  # type: ignore[method-assign]
        root.removeHandler(handler)
        root.setLevel(old_level)


def new_master() -> LocalMasterKey:
    material = os.urandom(32)
    watch_secret(material)
    return LocalMasterKey(material, "test")


@pytest.fixture
def ring() -> MasterKeyRing:
    return MasterKeyRing([new_master()])


@pytest.fixture
async def keys_db(fresh_db: str) -> str:
    """A fresh database with the key store initialised; returns its DSN."""
    con = await asyncpg.connect(fresh_db)
    try:
        await KeyStore(con).init_schema()
    finally:
        await con.close()
    return fresh_db


@pytest.fixture
async def store(keys_db: str) -> AsyncIterator[KeyStore]:
    pool = await asyncpg.create_pool(keys_db, min_size=1, max_size=4)
    try:
        yield KeyStore(pool)
    finally:
        await pool.close()


@pytest.fixture
async def facade(keys_db: str, ring: MasterKeyRing) -> AsyncIterator[FieldCrypto]:
    fc = await FieldCrypto.connect(keys_db, ring)
    try:
        yield fc
    finally:
        watch_text(repr(fc))
        await fc.close()
        await unwrap_all(keys_db, ring)  # the test's data keys join the leak watch


async def unwrap_all(dsn: str, ring: MasterKeyRing) -> list[bytes]:
    """Test-only: every live key's bytes, so the leak scan can look for them."""
    con = await asyncpg.connect(dsn)
    try:
        rows = await con.fetch(
            "SELECT key_id, tenant, kind, version, master_key_id, wrapped_key"
            " FROM pgseal.keys WHERE state <> 'destroyed'"
        )
    finally:
        await con.close()
    out = []
    for r in rows:
        material = ring.unwrap(
            r["master_key_id"],
            r["wrapped_key"],
            key_id=r["key_id"],
            tenant=r["tenant"],
            kind=r["kind"],
            version=r["version"],
        )
        out.append(bytes(material))
        watch_secret(material)
    return out
