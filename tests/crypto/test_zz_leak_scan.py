"""No plaintext and no key bytes in any error, log, repr or CLI output.

Collected last in tests/crypto (file name), it scans everything the leak watch
(see conftest.py) recorded during the session: messages and reprs of every
CryptoError constructed, all log records, key and cache reprs, CLI and
subprocess output. Every registered secret is searched for as text, hex (both
cases), Python bytes repr and base64 (standard and URL-safe, in all three
alignments, so a secret inside a longer base64 string is found too). It also
provokes every error type itself, so it checks something when run alone.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Callable

import pytest

from crypto import errors
from crypto.blind_index import IndexKey, blind_index
from crypto.envelope import DataKey, armor, dearmor, open_envelope, seal
from crypto.master import LocalMasterKey, MasterKeyRing
from tests.crypto.conftest import LEAKS, watch_secret, watch_text


def forms(secret: bytes) -> set[str]:
    """Every textual form of ``secret`` worth searching for."""
    found = {secret.hex(), secret.hex().upper(), repr(secret)[2:-1]}
    with contextlib.suppress(UnicodeDecodeError):
        found.add(secret.decode("utf-8"))
    for pad in range(3):
        padded = b"\x00" * pad + secret
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(padded).decode()
            # Drop the characters that mix in padding bytes or the tail.
            head = (pad * 4 + 2) // 3
            found.add(text[head : head + (len(secret) * 4) // 3 - 4])
    return {f for f in found if len(f) >= 6}


def leaks(texts: list[str], secrets: set[bytes]) -> list[tuple[str, str]]:
    hits = []
    for secret in secrets:
        for form in forms(secret):
            for text in texts:
                if form in text:
                    hits.append((form, text[:200]))
    return hits


def test_scanner_finds_planted_leaks() -> None:
    secret = os.urandom(32)
    for planted in (
        f"key {secret.hex()} oops",
        f"key {base64.b64encode(b'xy' + secret).decode()} oops",
        f"{secret!r}",
        f"value {base64.urlsafe_b64encode(b'z' + secret).decode()}",
    ):
        assert leaks([planted], {secret}), planted
    assert leaks(["plaintext: Jane Doe"], {b"Jane Doe"})
    assert not leaks(["nothing to see"], {secret})


def provoke_every_error() -> None:
    """Raise each error with secrets close at hand, recording the texts."""
    plaintext = b"Jane Secret-Doe, 555-0100"
    material = os.urandom(32)
    master_bytes = os.urandom(32)
    for s in (plaintext, material, master_bytes):
        watch_secret(s)
    key = DataKey(11, "42", 1, material)
    master = LocalMasterKey(master_bytes, "env:X")
    ring = MasterKeyRing([master])
    index = IndexKey(12, "42", 1, material)
    watch_text(repr(key) + repr(master) + repr(ring) + repr(index))
    envelope = seal(key, "public.t.c", plaintext)
    attempts: list[Callable[[], object]] = [
        lambda: open_envelope({11: key}, "public.t.other", envelope),
        lambda: open_envelope({11: key}, "public.t.c", envelope[:-1]),
        lambda: open_envelope({11: key}, "public.t.c", envelope[:20]),
        lambda: open_envelope({}, "public.t.c", envelope),
        lambda: dearmor(armor(envelope)[:-4] + "!!!!"),
        lambda: dearmor(plaintext),
        lambda: ring.unwrap(
            master.key_id, b"\x01" + os.urandom(60), key_id=1, tenant="t", kind="data", version=1
        ),
        lambda: MasterKeyRing([LocalMasterKey(os.urandom(32))]).unwrap(
            master.key_id, b"", key_id=1, tenant="t", kind="data", version=1
        ),
        lambda: blind_index(index, "c", plaintext, ["bogus"]),
        lambda: LocalMasterKey(master_bytes[:31]),
    ]
    for attempt in attempts:
        with pytest.raises(errors.CryptoError):
            attempt()
    for exc in (
        errors.KeyDestroyed(11, "42"),
        errors.WrongTenant("public.t.c", 11, "43"),
        errors.TenantShredded("42"),
    ):
        watch_text(str(exc))


def test_no_secret_in_any_recorded_text() -> None:
    provoke_every_error()
    assert len(LEAKS.secrets) >= 3
    assert len(LEAKS.texts) >= 10
    found = leaks(LEAKS.texts, LEAKS.secrets)
    assert not found, found[:5]
