"""The one-tenant Bind path agrees with the exact path on every input.

``SessionCrypto._bind_one_tenant`` rewrites the Bind of a one-row write in
one pass over its bytes and gives up (None) on anything but the plain case,
leaving it to ``_bind_rewrite``. These tests generate Binds of many shapes
(format codes none/one/each, NULLs, text and binary values valid or not,
values that look like envelopes or are ones, tenants given, refused, NULL or
uncached, result formats) and malformed ones, and require: when the fast
path answers, the exact path answers the same (same plain bytes, same
formats, sealed values opening to the same plaintexts, the same portal, the
same counters); when the exact path rejects a Bind, the fast path never
answers; and the fast path does answer the plain cases.
"""

from __future__ import annotations

import random

from crypto.envelope import armor, seal
from proxy import codec
from proxy.encryption import BindSealer, NeedKeys, Refused, SessionCrypto
from rules.plan_types import Rewrite
from tests.proxy.test_encryption_bind import (
    INSERT,
    KEYS,
    NAME,
    OTHER,
    TENANT,
    UNCACHED,
    bind_body,
    crypt,
    opened,
    prepare,
)

__all__ = ["crypt"]  # the fixture, shared with test_encryption_bind

DECLINED: list[bytes] = []
UPDATE = "UPDATE people SET name = $1, credit = $2 WHERE business_id = $3"


def exact(session: SessionCrypto, body: bytes) -> object:
    """What the exact path makes of a Bind: its message opened, or its error."""
    try:
        bind = codec.decode_bind(body)
        stmt = session.statements[bind.statement]
        assert isinstance(stmt.plan, Rewrite)
        message = session._bind_rewrite(bind, stmt, stmt.plan)
    except codec.ProtocolViolation as exc:
        return ("violation", str(exc))
    except Refused as refused:
        return ("refused", refused.error)
    except NeedKeys as need:
        return ("need", need.tenants, need.key_ids)
    assert int.from_bytes(message[1:5], "big") == len(message) - 1
    portal = (bind.portal, bind.statement, tuple(bind.result_formats), stmt.columns)
    return opened(session, message), portal


def fast(session: SessionCrypto, body: bytes) -> object:
    """What the one-tenant path makes of it: None, or as ``exact``."""
    first = body.find(b"\x00")
    second = body.find(b"\x00", first + 1)
    if first < 0 or second < 0:
        return None
    stmt = session.statements.get(body[first + 1 : second].decode(errors="replace"))
    if stmt is None:
        return None
    if stmt.sealer is None:  # made on the first Bind, as bind() does
        assert isinstance(stmt.plan, Rewrite)
        stmt.sealer = BindSealer.of(stmt.plan, stmt.client_types)
    sealer = stmt.sealer
    assert sealer is not None
    assert sealer.by_index is not None
    done = session._bind_one_tenant(body, first, second, stmt, sealer, sealer.by_index)
    if done is None:
        return None
    message, state = done
    assert int.from_bytes(message[1:5], "big") == len(message) - 1
    assert message[:1] == b"B"
    portal = (state.portal, state.statement, state.result_formats, state.columns)
    return opened(session, message), portal


def agree(session: SessionCrypto, body: bytes) -> bool:
    """Both paths on ``body``; True when the fast one answered."""
    metrics = session.enc.metrics
    before = metrics.values_sealed, session.enc.crypto.hits
    quick = fast(session, body)
    quick_counts = metrics.values_sealed - before[0], session.enc.crypto.hits - before[1]
    if quick is None:
        assert (metrics.values_sealed, session.enc.crypto.hits) == before  # nothing counted
    middle = metrics.values_sealed, session.enc.crypto.hits
    slow = exact(session, body)
    slow_counts = metrics.values_sealed - middle[0], session.enc.crypto.hits - middle[1]
    if quick is None:
        if isinstance(slow, tuple) and isinstance(slow[1], tuple):
            DECLINED.append(body)  # the exact path sealed it
        return False
    assert quick == slow
    assert quick_counts == slow_counts
    return True


def _value(rng: random.Random, kind: str) -> tuple[bytes | None, int]:
    """A parameter value and its format code for a column of ``kind``."""
    mine = next(k for k in KEYS.values() if k.tenant == TENANT)
    other = next(k for k in KEYS.values() if k.tenant == OTHER)
    if rng.random() < 0.12:
        return None, rng.choice((0, 1))
    if kind == "tenant":
        tenant = rng.choice((TENANT, TENANT, TENANT, OTHER, UNCACHED, "x1", ""))
        if rng.random() < 0.5:
            tenant = TENANT  # mostly the plain case
        if rng.random() < 0.5 and tenant.isdigit():
            return int(tenant).to_bytes(4, "big"), 1
        if rng.random() < 0.1:
            return b"\x00\x2a", 1  # a binary integer of the wrong length
        return tenant.encode(), 0
    if kind == "credit":
        number = rng.choice((0, 7, -12, 1 << 20, 2_000_000_000))
        if rng.random() < 0.5:
            return number.to_bytes(4, "big", signed=True), 1
        if rng.random() < 0.7:
            return str(number).encode(), 0
        return rng.choice((b"12x", b" 5", b"")), 0
    if rng.random() < 0.7:
        plain = (b"Ada", b"", b"ab", "Zoë".encode(), b"pizza", b"\\y", b"plain value")
        return rng.choice(plain), rng.choice((0, 0, 1))
    env = seal(rng.choice((mine, other)), rng.choice((NAME.qualified, "public.people.x")), b"e")
    text = rng.choice(
        (
            b"Ada",
            b"",
            b"ab    ",
            b"abcde",
            "Zoë".encode(),
            b"\xff\xfe",
            b"a\x00b",
            b"pizza",
            b"pgseal1:zz",
            armor(env).encode(),
            b"\\x01zz",
            b"\\x" + env.hex().encode(),
            b"\\y",
            env,
            b"\x01short",
            b"plain value with spaces",
        )
    )
    return text, rng.choice((0, 0, 1))


def _body(rng: random.Random, statement: str, kinds: tuple[str, ...]) -> bytes:
    values: list[bytes | None] = []
    formats: list[int] = []
    for kind in kinds:
        value, fmt = _value(rng, kind)
        values.append(value)
        formats.append(fmt)
    mode = rng.random()
    if mode < 0.2:
        formats = [] if all(f == 0 for f in formats) else formats
    elif mode < 0.4 and len(set(formats)) == 1:
        formats = formats[:1]
    results = rng.choice(((), (0,), (1,), (1, 0, 1)))
    return bind_body(statement, values, formats, results)


async def test_generated_binds_agree(crypt: SessionCrypto) -> None:
    rng = random.Random(4)
    prepare(crypt, "w", INSERT, (23,))
    prepare(crypt, "t", INSERT)  # the tenant's type left to Postgres (text here)
    prepare(crypt, "u", UPDATE)
    shapes = {
        "w": ("tenant", "text", "text", "text", "credit"),
        "t": ("tenant", "text", "text", "text", "credit"),
        "u": ("text", "credit", "tenant"),  # the tenant after the sealed values
    }
    answered = 0
    cases = 0
    DECLINED.clear()
    for session_tenant in (None, TENANT):
        crypt.session_tenant = session_tenant
        for _ in range(600):
            statement = rng.choice(sorted(shapes))
            cases += 1
            answered += agree(crypt, _body(rng, statement, shapes[statement]))
    # The plain case is common among these: the fast path must take it, and
    # leave only a few of the Binds the exact path seals (envelopes as values).
    assert answered > cases // 6, (answered, cases)
    assert len(DECLINED) < answered // 2, (len(DECLINED), answered)


async def test_plain_binds_take_the_fast_path(crypt: SessionCrypto) -> None:
    prepare(crypt, "w", INSERT, (23,))
    crypt.session_tenant = TENANT
    for formats in ([1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 1, 0, 1]):
        values: list[bytes | None] = [int(TENANT).to_bytes(4, "big"), b"Ada", b"ab", b"note"]
        values.append((7).to_bytes(4, "big") if formats[4] else b"7")
        assert agree(crypt, bind_body("w", values, formats, (1,)))
        # With NULLs and empty values too.
        values[1], values[3] = None, b""
        assert agree(crypt, bind_body("w", values, formats))
    # And bind() uses it: the portal it registers is the one it returns.
    message, state = crypt.bind(bind_body("w", [b"42", b"x", b"y", b"z", b"1"], [0], (1,)))
    assert message is not None
    assert crypt.portals["p"] is state
    assert state.result_formats == (1,)


async def test_malformed_binds_are_left_to_the_exact_path(crypt: SessionCrypto) -> None:
    prepare(crypt, "w", INSERT, (23,))
    crypt.session_tenant = TENANT
    rng = random.Random(7)
    kinds = ("tenant", "text", "text", "text", "credit")
    for _ in range(40):
        body = _body(rng, "w", kinds)
        # Every truncation (past the names) and some corrupted bytes.
        broken = [body[:cut] for cut in range(body.index(b"w\x00") + 2, len(body))]
        for _ in range(30):
            at = rng.randrange(body.index(b"w\x00") + 2, len(body))
            broken.append(body[:at] + bytes([rng.randrange(256)]) + body[at + 1 :])
        broken.append(body + b"\x00")
        for bad in broken:
            quick = fast(crypt, bad)
            slow = exact(crypt, bad)
            if isinstance(slow, tuple) and slow[0] == "violation":
                assert quick is None
            elif quick is not None:
                assert quick == slow
