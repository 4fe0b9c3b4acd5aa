"""``key_cache.opened_rows``: how much plaintext of opened rows a process remembers.

The config option parses like the other sizes (``16MiB``, a number of bytes,
``0``) and reports a bad value on its line; ``0`` turns ``OpenedRows`` off, so a
row read again is opened again and no plaintext stays behind; and
``Encryption.start`` (against the real embedded Postgres) takes the value from
the configuration.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from crypto.blind_index import IndexKey
from crypto.cache import TenantKeyCache
from crypto.envelope import DataKey, seal
from crypto.field import FieldCrypto
from crypto.master import LocalMasterKey, MasterKeyRing
from crypto.store import KeyStore
from proxy import codec
from proxy.encryption import OPENED_ROWS_BYTES, Encryption, PortalState, RowColumns, column_codec
from rules.catalog import CatalogMap
from rules.config import ConfigError, KeyCacheConfig, parse_config
from rules.model import ProtectedColumn, Rules
from tests.pgseal_process import REPO_ROOT

HEAD = "upstream: postgresql://127.0.0.1:5432/app\n"
TENANT = "42"
NAME = ProtectedColumn("public", "people", "name", "text")


# -- the option --------------------------------------------------------------------


def test_the_default_is_16_mib_and_the_proxy_uses_it() -> None:
    assert parse_config(HEAD).key_cache.opened_rows == 16 << 20
    assert OPENED_ROWS_BYTES == KeyCacheConfig().opened_rows == 16 << 20


@pytest.mark.parametrize(
    ("value", "size"), [("0", 0), ("64MiB", 64 << 20), ("1000", 1000), ("'512 KiB'", 512 << 10)]
)
def test_sizes_are_accepted(value: str, size: int) -> None:
    config = parse_config(f"{HEAD}key_cache:\n  ttl_seconds: 5\n  opened_rows: {value}\n")
    assert config.key_cache == KeyCacheConfig(ttl_seconds=5, opened_rows=size)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("-1", "key_cache.opened_rows must be from 0 bytes to 64GiB, got -1 bytes"),
        ("16MB", "key_cache.opened_rows must be a number of bytes or a size like 64MiB"),
        ("1.5", "key_cache.opened_rows must be a number of bytes or a size like 64MiB"),
        ("[1]", "key_cache.opened_rows must be a number of bytes or a size like 64MiB"),
        ("65GiB", "must be from 0 bytes to 64GiB"),
        ("true", "key_cache.opened_rows must be a number of bytes"),
    ],
)
def test_a_bad_value_is_a_config_error_on_its_line(value: str, fragment: str) -> None:
    text = f"{HEAD}key_cache:\n  max_keys: 10\n  opened_rows: {value}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert str(caught.value).startswith("config.yaml:4: "), str(caught.value)
    assert fragment in str(caught.value)
    assert caught.value.line == 4


def test_a_misspelt_key_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"{HEAD}key_cache:\n  opened_row: 0\n")
    assert "opened_rows" in str(caught.value)  # did you mean


# -- 0 keeps no plaintext ----------------------------------------------------------


@pytest.fixture
async def key_cache() -> AsyncIterator[tuple[FieldCrypto, DataKey]]:
    store = KeyStore(object())  # type: ignore[arg-type]  # never reached on a cache hit
    ring = MasterKeyRing([LocalMasterKey(os.urandom(32), "test")])
    cache = TenantKeyCache(store, ring, ttl_seconds=3600, max_keys=10)
    key = DataKey(0x1122334455667788, TENANT, 1, os.urandom(32))
    cache._put_tenant(key, IndexKey(0x0102030405060708, TENANT, 1, os.urandom(32)))
    yield FieldCrypto(cache), key
    await cache.close()


def portal(count: int, formats: tuple[int, ...]) -> PortalState:
    shape = RowColumns(count, ((0, NAME, column_codec(NAME)),))
    return PortalState(columns=shape, result_formats=formats)


@pytest.mark.parametrize("size", [0, OPENED_ROWS_BYTES])
async def test_zero_opens_every_row_again_and_remembers_no_plaintext(
    key_cache: tuple[FieldCrypto, DataKey], size: int
) -> None:
    crypto, key = key_cache
    enc = Encryption(Rules(), crypto, CatalogMap(), service_dsn="", opened_rows_bytes=size)
    session = enc.session({})
    session.session_tenant = TENANT
    plaintext = b"Ada Lovelace, 10 Downing St"
    envelope = seal(key, NAME.qualified, plaintext)
    row = codec.encode_data_row([envelope, b"\x00\x00\x00\x07"])
    text_row = codec.encode_data_row([b"\\x" + envelope.hex().encode(), b"7"])
    buf = row * 3 + codec.message(b"C", b"SELECT 3\x00")
    expected = codec.encode_data_row([plaintext, b"\x00\x00\x00\x07"])
    first = session.data_row(row[5:], portal(2, (1,)))
    assert first == expected
    parts, stop = session.data_rows(buf, 0, 1 << 20, portal(2, (1,)))
    assert parts == [expected] * 3
    assert buf[stop : stop + 1] == b"C"
    text = codec.encode_data_row([plaintext, b"7"])
    assert session.data_row(text_row[5:], portal(2, (0,))) == text  # text results alike
    assert enc.metrics.values_opened == 5
    remembered = [m for table in enc.opened_rows.by_fields.values() for m, _, _ in table.values()]
    if size == 0:
        assert remembered == []
        assert enc.opened_rows.size == 0
        assert all(p is not first for p in parts)  # each one opened afresh
    else:
        assert remembered
        assert all(plaintext in m for m in remembered)
        assert all(p is first for p in parts)  # served from memory


# -- Encryption.start takes it from config.yaml ------------------------------------


async def test_encryption_start_takes_the_configured_size(
    fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await asyncpg.connect(fresh_db)
    try:
        await db.execute("CREATE TABLE people (id int, business_id int, name bytea)")
    finally:
        await db.close()
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "proxy", "keys", "init", "--dsn", fresh_db],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("PGSEAL_TEST_MK", base64.b64encode(os.urandom(32)).decode())
    tables = (
        "tables:\n  people:\n    tenant_column: business_id\n"
        "    columns:\n      name: {type: text}\n"
    )
    for setting, size in (("key_cache: {opened_rows: 0}\n", 0), ("", 16 << 20)):
        config = parse_config(
            f"{HEAD}service_dsn: {fresh_db}\nmaster_key: env:PGSEAL_TEST_MK\n{setting}{tables}"
        )
        encryption = await Encryption.start(config)
        try:
            assert encryption.opened_rows.max_bytes == size
            assert (encryption.opened_rows.table((None,)) is None) == (size == 0)
        finally:
            await encryption.close()
