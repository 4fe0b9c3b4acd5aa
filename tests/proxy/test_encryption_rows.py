"""DataRow opening: the whole-row fast path agrees with the per-field path.

``SessionCrypto.data_row`` opens the plain case (bytea envelopes under cached
keys) a row at a time and hands every other row to the per-field path. These
tests replay rows of every shape through both and require the same bytes out,
or the same error: the fast path may only be faster, never different.
No sockets: the key is put straight into the cache, as a cache miss ends.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

import pytest

from crypto.blind_index import IndexKey
from crypto.cache import TenantKeyCache
from crypto.envelope import DataKey, seal
from crypto.field import FieldCrypto
from crypto.master import LocalMasterKey, MasterKeyRing
from crypto.store import KeyStore
from proxy import codec
from proxy.encryption import (
    Encryption,
    NeedKeys,
    PortalState,
    Refused,
    RowColumns,
    SessionCrypto,
    column_codec,
)
from rules.catalog import CatalogMap
from rules.model import ProtectedColumn, Rules

TENANT = "42"
NAME = ProtectedColumn("public", "people", "name", "text")
LIMIT = ProtectedColumn("public", "people", "credit", "integer")


@pytest.fixture
async def crypt() -> AsyncIterator[tuple[SessionCrypto, DataKey]]:
    store = KeyStore(object())  # type: ignore[arg-type]  # never reached on a cache hit
    ring = MasterKeyRing([LocalMasterKey(os.urandom(32), "test")])
    cache = TenantKeyCache(store, ring, ttl_seconds=3600, max_keys=10)
    key = DataKey(0x1122334455667788, TENANT, 1, os.urandom(32))
    cache._put_tenant(key, IndexKey(0x0102030405060708, TENANT, 1, os.urandom(32)))
    encryption = Encryption(Rules(), FieldCrypto(cache), CatalogMap(), service_dsn="")
    session = encryption.session({})
    session.session_tenant = TENANT
    yield session, key
    await cache.close()


def portal(
    columns: dict[int, ProtectedColumn], count: int, formats: tuple[int, ...]
) -> PortalState:
    shape = RowColumns(count, tuple((i, c, column_codec(c)) for i, c in sorted(columns.items())))
    return PortalState(columns=shape, result_formats=formats)


def outcome(call: Callable[[], bytes | None]) -> object:
    try:
        return call()
    except Refused as refused:
        return ("refused", refused.error)
    except NeedKeys as need:
        return ("need", need.key_ids, need.tenants)
    except codec.ProtocolViolation as exc:
        return ("violation", str(exc))


def both(crypt: SessionCrypto, body: bytes, state: PortalState) -> object:
    """The fast path's outcome, checked equal to the per-field path's."""
    assert state.columns is not None
    slow = outcome(lambda: crypt._data_row_by_field(body, state, state.columns))  # type: ignore[arg-type]
    fast = outcome(lambda: crypt.data_row(body, state))
    assert fast == slow
    return fast


def hexed(envelope: bytes) -> bytes:
    return b"\\x" + envelope.hex().encode()


async def test_binary_row_with_nulls_and_plain_fields(crypt: tuple[SessionCrypto, DataKey]) -> None:
    session, key = crypt
    values = [
        seal(key, NAME.qualified, b"Ada"),
        b"\x00\x00\x00\x07",
        None,
        seal(key, NAME.qualified, b""),
    ]
    state = portal({0: NAME, 2: NAME, 3: NAME}, 4, (1,))
    body = codec.encode_data_row(values)[5:]
    opened_before = session.enc.metrics.values_opened
    out = both(session, body, state)
    assert out == codec.encode_data_row([b"Ada", b"\x00\x00\x00\x07", None, b""])
    assert session.enc.metrics.values_opened - opened_before == 4  # two paths, two each
    assert state.row_plan is not None
    assert state.row_plan.fields is not None
    assert session._data_row_fast(body, state.row_plan.fields) == out  # taken, not fallen back


async def test_text_format_and_per_column_formats(crypt: tuple[SessionCrypto, DataKey]) -> None:
    session, key = crypt
    name, limit = seal(key, NAME.qualified, b"Grace"), seal(key, LIMIT.qualified, b"1200")
    text = both(
        session,
        codec.encode_data_row([hexed(name), hexed(limit)])[5:],
        portal({0: NAME, 1: LIMIT}, 2, ()),
    )
    assert text == codec.encode_data_row([b"Grace", b"1200"])
    mixed = portal({0: NAME, 1: LIMIT}, 2, (0, 1))
    out = both(session, codec.encode_data_row([hexed(name), limit])[5:], mixed)
    assert out == codec.encode_data_row([b"Grace", (1200).to_bytes(4, "big")])


@pytest.mark.parametrize(
    "case",
    ["other tenant", "tampered", "unknown key", "not an envelope", "not an integer", "bad hex"],
)
async def test_failures_report_as_the_per_field_path_does(
    crypt: tuple[SessionCrypto, DataKey], case: str
) -> None:
    session, key = crypt
    good = seal(key, NAME.qualified, b"Ada")
    fmt = 1
    bad = {
        "tampered": good[:-1] + bytes([good[-1] ^ 1]),
        "unknown key": good[:1] + (99).to_bytes(8, "big") + good[9:],
        "not an envelope": b"Ada Lovelace, in plaintext",
        "not an integer": seal(key, LIMIT.qualified, b"lots"),
    }.get(case, good)
    if case == "other tenant":
        session.session_tenant = "43"
    if case == "bad hex":
        fmt, bad = 0, b"\\x01zz" + good.hex().encode()[4:]
    columns = {0: NAME, 1: LIMIT if case == "not an integer" else NAME}
    body = codec.encode_data_row([hexed(good) if fmt == 0 else good, bad])[5:]
    out = both(session, body, portal(columns, 2, (fmt,)))
    assert isinstance(out, tuple)
    if case == "unknown key":
        assert out[0] == "need"
    else:
        assert out[0] == "refused"
        assert b"Ada" not in out[1]


@pytest.mark.parametrize("cut", ["truncated", "trailing", "count"])
async def test_malformed_rows_are_protocol_violations(
    crypt: tuple[SessionCrypto, DataKey], cut: str
) -> None:
    session, key = crypt
    body = codec.encode_data_row([seal(key, NAME.qualified, b"Ada"), None])[5:]
    body = {"truncated": body[:-3], "trailing": body + b"\x00", "count": b"\x00\x03" + body[2:]}[
        cut
    ]
    out = both(session, body, portal({0: NAME}, 2, (1,)))
    assert isinstance(out, tuple)
    assert out[0] == "violation"


async def test_rows_read_again_are_remembered_and_rechecked(
    crypt: tuple[SessionCrypto, DataKey],
) -> None:
    session, key = crypt
    enc = session.enc
    body = codec.encode_data_row([seal(key, NAME.qualified, b"Ada"), None])[5:]
    first = session.data_row(body, portal({0: NAME}, 2, (1,)))
    assert first == codec.encode_data_row([b"Ada", None])
    assert enc.opened_rows.size > 0
    state = portal({0: NAME}, 2, (1,))  # the next query's portal: same shape
    opened = enc.metrics.values_opened
    assert session.data_row(body, state) is first  # the remembered message itself
    assert enc.metrics.values_opened == opened + 1
    # Another tenant's session is refused exactly as when opening.
    session.session_tenant = "43"
    assert isinstance(both(session, body, state), tuple)
    session.session_tenant = TENANT
    # A shred (any invalidation of the key cache) forgets the key and every row.
    enc.crypto.cache.forget_tenant(TENANT)
    assert both(session, body, state) == ("need", frozenset({key.key_id}), frozenset())
    assert enc.opened_rows.size == 0


async def test_remembered_rows_stay_within_their_bound(
    crypt: tuple[SessionCrypto, DataKey],
) -> None:
    session, key = crypt
    session.enc.opened_rows.max_bytes = 4000
    state = portal({0: NAME}, 1, (1,))
    for i in range(100):
        body = codec.encode_data_row([seal(key, NAME.qualified, b"%d" % i)])[5:]
        assert session.data_row(body, state) == codec.encode_data_row([b"%d" % i])
        assert session.enc.opened_rows.size <= 4000
    remembered = sum(len(t) for t in session.enc.opened_rows.by_fields.values())
    assert 0 < remembered < 100


async def test_a_run_of_rows_stops_before_the_one_that_needs_the_per_field_path(
    crypt: tuple[SessionCrypto, DataKey],
) -> None:
    session, key = crypt
    good = [seal(key, NAME.qualified, b"%d" % i) for i in range(3)]
    unknown = good[1][:1] + (99).to_bytes(8, "big") + good[1][9:]
    rows = [codec.encode_data_row([e]) for e in (good[0], unknown, good[2])]
    buf = b"".join(rows) + codec.message(b"C", b"SELECT 3\x00")
    state = portal({0: NAME}, 1, (1,))
    parts, stop = session.data_rows(buf, 0, 1 << 20, state)
    assert parts == [codec.encode_data_row([b"0"])]
    assert stop == len(rows[0])  # the session frames the unknown key's row itself
    assert both(session, rows[1][5:], state) == ("need", frozenset({99}), frozenset())
    parts, stop = session.data_rows(buf, stop + len(rows[1]), 1 << 20, state)
    assert parts == [codec.encode_data_row([b"2"])]
    assert buf[stop : stop + 1] == b"C"
    # An incomplete or oversized row is left to the session's framing too.
    assert session.data_rows(buf[: len(rows[0]) - 1], 0, 1 << 20, state) == ([], 0)
    assert session.data_rows(buf, 0, 8, state) == ([], 0)


@pytest.mark.parametrize(
    "raw",
    [
        b"caf\xc3\xa9",  # raw non-ASCII: escape output would have written \303\251
        b"\\q",  # a backslash escape bytea's text format does not have
        b"\\x0g",  # not hex
    ],
)
def test_bytea_text_postgres_never_sends_is_no_envelope(raw: bytes) -> None:
    from proxy.encryption import _envelope_of

    assert _envelope_of(NAME, raw, 0) is None
