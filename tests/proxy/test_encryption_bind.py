"""Bind sealing: the per-statement fast path agrees with the per-parameter path.

``SessionCrypto._bind_rewrite`` seals a row's parameters in one call per
tenant, with what each parameter needs worked out once per statement
(``BindSealer``). These tests replay Binds of many shapes through it and
through ``reference`` (the per-parameter algorithm it replaced, built from
``_tenant``, ``_seal_param`` and ``_slot_value``) and require the same result:
the same refusal or NeedKeys, or a Bind whose formats and plain values are the
same bytes and whose sealed values open to the same plaintexts (envelopes are
random, so they are compared opened). An envelope the client sends back must
come out as the very same bytes, sealed once.
No sockets: the keys are put straight into the cache, as a cache miss ends.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence

import pytest

from crypto.blind_index import IndexKey
from crypto.cache import TenantKeyCache
from crypto.envelope import DataKey, armor, dearmor, is_armored, open_envelope, seal
from crypto.field import FieldCrypto
from crypto.master import LocalMasterKey, MasterKeyRing
from crypto.store import KeyStore
from proxy import codec
from proxy.encryption import Encryption, NeedKeys, Refused, SessionCrypto, StatementCrypto
from rules.catalog import CatalogMap
from rules.model import ProtectedColumn, ProtectedTable, Rules
from rules.plan_types import BindAction, Rewrite

TENANT = "42"
OTHER = "43"  # its key is cached too
UNCACHED = "44"  # no key cached: sealing for it needs keys

NAME = ProtectedColumn("public", "people", "name", "text")
CODE = ProtectedColumn("public", "people", "code", "varchar", type_modifier=4)
NOTE = ProtectedColumn("public", "people", "note", "text", storage="text")
LIMIT = ProtectedColumn("public", "people", "credit", "integer")
EMAIL = ProtectedColumn("public", "people", "email", "text", searchable="email_bidx")
RULES = Rules(
    {
        "public.people": ProtectedTable(
            "public",
            "people",
            "business_id",
            {c.name: c for c in (NAME, CODE, NOTE, LIMIT, EMAIL)},
        )
    }
)
INSERT = "INSERT INTO people (business_id, name, code, note, credit) VALUES ($1, $2, $3, $4, $5)"
KEYS: dict[int, DataKey] = {}


@pytest.fixture
async def crypt() -> AsyncIterator[SessionCrypto]:
    store = KeyStore(object())  # type: ignore[arg-type]  # never reached on a cache hit
    ring = MasterKeyRing([LocalMasterKey(os.urandom(32), "test")])
    cache = TenantKeyCache(store, ring, ttl_seconds=3600, max_keys=10)
    for n, tenant in enumerate((TENANT, OTHER), start=1):
        key = DataKey(0x1122334455667700 + n, tenant, 1, os.urandom(32))
        KEYS[key.key_id] = key
        cache._put_tenant(key, IndexKey(0x0102030405060700 + n, tenant, 1, os.urandom(32)))
    encryption = Encryption(RULES, FieldCrypto(cache), CatalogMap(), service_dsn="")
    session = encryption.session({})
    yield session
    await cache.close()


def reference(session: SessionCrypto, body: bytes) -> bytes:
    """The per-parameter Bind rewrite the fast path replaced, step for step."""
    bind = codec.decode_bind(body)
    stmt = session.statements[bind.statement]
    plan = stmt.plan
    assert isinstance(plan, Rewrite)
    if len(bind.params) != plan.client_param_count:
        raise AssertionError("count mismatch: compared separately")
    need_tenants: set[str] = set()
    need_keys: set[int] = set()
    values: list[bytes | None] = list(bind.params)
    formats = [bind.param_format(i) for i in range(len(values))]
    tenants: dict[int, str] = {}
    for p in plan.params:
        i = p.index - 1
        if p.action is BindAction.REPLACE_WITH_NULL:
            values[i] = None
        elif p.action is BindAction.SEAL and bind.params[i] is not None:
            assert p.column is not None
            assert p.tenant is not None
            tenant = tenants.get(id(p.tenant)) or session._tenant(p.tenant, bind, stmt, p.column)
            tenants[id(p.tenant)] = tenant
            try:
                values[i] = session._seal_param(
                    p.column, tenant, bind.params[i] or b"", formats[i], stmt, i
                )
            except NeedKeys as exc:
                need_tenants |= exc.tenants
                need_keys |= exc.key_ids
                continue
            formats[i] = 1
    added: list[bytes | None] = []
    for slot in plan.slots:
        try:
            added.append(session._slot_value(slot, bind, stmt))
        except NeedKeys as exc:
            need_tenants |= exc.tenants
            need_keys |= exc.key_ids
    if need_tenants or need_keys:
        raise NeedKeys(frozenset(need_tenants), frozenset(need_keys))
    return codec.encode_bind(
        bind.portal,
        bind.statement,
        [*formats, *plan.formats_added],
        [*values, *added],
        bind.result_formats,
    )


def opened(session: SessionCrypto, message: bytes) -> object:
    """A rewritten Bind with each sealed value replaced by its column and plaintext."""
    bind = codec.decode_bind(message[5:])
    stmt = session.statements[bind.statement]
    assert isinstance(stmt.plan, Rewrite)
    columns: dict[int, ProtectedColumn | None] = {
        p.index - 1: p.column for p in stmt.plan.params if p.action is BindAction.SEAL
    }
    shown: list[object] = []
    for i, value in enumerate(bind.params):
        column = columns.get(i)
        if value is None or column is None:
            shown.append(value)
            continue
        envelope = dearmor(value) if is_armored(value) else value
        shown.append(("sealed", open_envelope(KEYS, column.qualified, envelope)))
    return bind.portal, bind.statement, bind.param_formats, shown, bind.result_formats


def outcome(session: SessionCrypto, call: str, body: bytes) -> object:
    try:
        if call == "fast":
            message, _ = session.bind(body)
            assert message is not None
        else:
            message = reference(session, body)
    except Refused as refused:
        return ("refused", refused.error)
    except NeedKeys as need:
        return ("need", need.tenants, need.key_ids)
    return opened(session, message)


def prepare(session: SessionCrypto, name: str, sql: str, types: tuple[int, ...] = ()) -> None:
    session.parse(codec.Parse(name, sql, types))
    stmt = session.statements[name]
    assert isinstance(stmt.plan, Rewrite)


def same(session: SessionCrypto, body: bytes) -> object:
    fast = outcome(session, "fast", body)
    slow = outcome(session, "slow", body)
    assert fast == slow
    return fast


def bind_body(
    statement: str, params: list[bytes | None], formats: list[int], results: Sequence[int] = ()
) -> bytes:
    return codec.encode_bind("p", statement, formats, params, list(results))[5:]


def tenant_int(tenant: str) -> bytes:
    return int(tenant).to_bytes(4, "big")


async def test_text_and_binary_values_seal_like_the_reference(crypt: SessionCrypto) -> None:
    prepare(crypt, "w", INSERT, (23,))
    values: list[bytes | None] = [
        tenant_int(TENANT),
        b"Ada",
        b"ab    ",
        b"note",
        b"\x00\x00\x00\x07",
    ]
    out = same(crypt, bind_body("w", values, [1, 0, 0, 0, 1], [1]))
    assert out == (
        "p",
        "w",
        [1, 1, 1, 1, 1],
        [
            tenant_int(TENANT),
            ("sealed", b"Ada"),
            ("sealed", b"ab  "),  # varchar(4): excess trailing blanks dropped
            ("sealed", b"note"),
            ("sealed", b"7"),
        ],
        [1],
    )
    # One format code for all, text: the tenant as text, credit as text.
    text = same(crypt, bind_body("w", [TENANT.encode(), "Zoë".encode(), None, b"x", b"12"], [0]))
    assert text == (
        "p",
        "w",
        [0, 1, 0, 1, 1],  # a NULL keeps its format and is not sealed
        [
            TENANT.encode(),
            ("sealed", "Zoë".encode()),
            None,
            ("sealed", b"x"),
            ("sealed", b"12"),
        ],
        [],
    )


async def test_text_column_gets_an_armoured_envelope(crypt: SessionCrypto) -> None:
    prepare(crypt, "w", INSERT)
    message, _ = crypt.bind(bind_body("w", [b"42", b"a", b"b", b"c", b"1"], [0]))
    assert message is not None
    note = codec.decode_bind(message[5:]).params[3]
    assert note is not None
    assert is_armored(note)
    assert open_envelope(KEYS, NOTE.qualified, dearmor(note)) == b"c"


@pytest.mark.parametrize(
    ("index", "value", "fmt"),
    [
        (1, b"\xff\xfe", 0),  # invalid UTF-8
        (1, b"a\x00b", 0),  # NUL
        (2, b"abcde", 0),  # too long for varchar(4)
        (4, b"12x", 0),  # not an integer
        (4, b"\x00\x07", 1),  # binary integer of the wrong length
    ],
)
async def test_invalid_values_are_refused_alike(
    crypt: SessionCrypto, index: int, value: bytes, fmt: int
) -> None:
    prepare(crypt, "w", INSERT)
    values: list[bytes | None] = [b"42", b"a", b"b", b"c", b"1"]
    formats = [0] * 5
    values[index], formats[index] = value, fmt
    out = same(crypt, bind_body("w", values, formats))
    assert isinstance(out, tuple)
    assert out[0] == "refused"
    assert b"invalid value for encrypted column" in out[1]


async def test_existing_envelopes_are_reused_once_and_only_if_they_open(
    crypt: SessionCrypto,
) -> None:
    prepare(crypt, "w", INSERT)
    mine = next(k for k in KEYS.values() if k.tenant == TENANT)
    other = next(k for k in KEYS.values() if k.tenant == OTHER)
    env = seal(mine, NAME.qualified, b"kept")
    hexed = b"\\x" + env.hex().encode()
    wrong_column = seal(mine, LIMIT.qualified, b"Ada")
    wrong_tenant = seal(other, NAME.qualified, b"Ada")
    for value, fmt in [
        (env, 1),
        (hexed, 0),
        (armor(env).encode(), 0),
        # Envelopes that do not open as this column's, for this tenant: values
        # like any other (as hex text: their binary form is not UTF-8 text).
        (b"\\x" + wrong_column.hex().encode(), 0),
        (b"\\x" + wrong_tenant.hex().encode(), 0),
        (b"pizza", 0),  # starts like an armoured envelope, is not one
        (b"\\x01zz", 0),  # starts like hex, is not
    ]:
        body = bind_body("w", [b"42", value, b"b", b"c", b"1"], [0, fmt, 0, 0, 0])
        out = same(crypt, body)
        assert isinstance(out, tuple)
        assert out[0] == "p"
        message, _ = crypt.bind(body)
        assert message is not None
        name = codec.decode_bind(message[5:]).params[1]
        if value in (env, hexed, armor(env).encode()):
            assert name == env  # the client's envelope, not sealed again
        else:
            assert name != value
            assert name is not None
            assert open_envelope(KEYS, NAME.qualified, name) == value


async def test_envelope_of_an_uncached_key_needs_keys(crypt: SessionCrypto) -> None:
    prepare(crypt, "w", INSERT)
    stranger = DataKey(0x0AAA, TENANT, 1, os.urandom(32))
    env = seal(stranger, NAME.qualified, b"x")
    out = same(crypt, bind_body("w", [b"42", env, b"b", b"c", b"1"], [0, 1, 0, 0, 0]))
    assert out == ("need", frozenset(), frozenset({0x0AAA}))


async def test_tenants_resolved_and_checked_alike(crypt: SessionCrypto) -> None:
    prepare(crypt, "w", INSERT, (23,))
    crypt.session_tenant = TENANT
    refused = same(
        crypt, bind_body("w", [tenant_int(OTHER), b"a", b"b", b"c", b"1"], [1, 0, 0, 0, 0])
    )
    assert isinstance(refused, tuple)
    assert refused[0] == "refused"
    assert b"another business" in refused[1]
    null = same(crypt, bind_body("w", [None, b"a", b"b", b"c", b"1"], [1, 0, 0, 0, 0]))
    assert isinstance(null, tuple)
    assert null[0] == "refused"
    assert b"is NULL" in null[1]
    crypt.session_tenant = None
    need = same(
        crypt, bind_body("w", [tenant_int(UNCACHED), b"a", b"b", b"c", b"1"], [1, 0, 0, 0, 0])
    )
    assert need == ("need", frozenset({UNCACHED}), frozenset())
    # All parameters NULL but the tenant: nothing to seal, no key needed.
    empty = same(
        crypt, bind_body("w", [tenant_int(UNCACHED), None, None, None, None], [1, 0, 0, 0, 0])
    )
    assert isinstance(empty, tuple)
    assert empty[0] == "p"


async def test_rows_of_two_tenants_in_one_bind(crypt: SessionCrypto) -> None:
    prepare(
        crypt,
        "two",
        "INSERT INTO people (business_id, name, credit) VALUES ($1, $2, $3), ($4, $5, $6)",
        (23, 0, 0, 23),
    )
    crypt.session_tenant = None
    values: list[bytes | None] = [
        tenant_int(TENANT),
        b"first",
        b"1",
        tenant_int(OTHER),
        b"second",
        b"2",
    ]
    body = bind_body("two", values, [1, 0, 0, 1, 0, 0])
    out = same(crypt, body)
    assert isinstance(out, tuple)
    assert out[3][1] == ("sealed", b"first")
    assert out[3][4] == ("sealed", b"second")
    message, _ = crypt.bind(body)
    assert message is not None
    params = codec.decode_bind(message[5:]).params
    owners = {KEYS[int.from_bytes(p[1:9], "big")].tenant for p in (params[1], params[4]) if p}
    assert owners == {TENANT, OTHER}  # each row under its own tenant's key
    values[3] = tenant_int(UNCACHED)
    need = same(crypt, bind_body("two", values, [1, 0, 0, 1, 0, 0]))
    assert need == ("need", frozenset({UNCACHED}), frozenset())


async def test_blind_index_slots_and_count_check(crypt: SessionCrypto) -> None:
    prepare(crypt, "s", "INSERT INTO people (business_id, email) VALUES ($1, $2)")
    stmt: StatementCrypto = crypt.statements["s"]
    assert isinstance(stmt.plan, Rewrite)
    assert stmt.plan.slots
    crypt.session_tenant = TENANT
    out = same(crypt, bind_body("s", [b"42", b"a@example.com"], [0]))
    assert isinstance(out, tuple)
    assert out[2] == [0, 1, 1]
    assert out[3][2] is not None
    assert len(out[3][2]) > 0
    with pytest.raises(Refused) as refused:
        crypt.bind(bind_body("s", [b"42"], [0]))
    assert b"bind message supplies 1 parameters" in refused.value.error
