"""Envelope v1: known-answer vectors, round trips, and every way to break one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto import errors
from crypto.envelope import (
    MIN_ENVELOPE_LEN,
    DataKey,
    _seal_with_nonce,
    armor,
    dearmor,
    is_armored,
    is_envelope,
    open_envelope,
    peek_key_id,
    seal,
    seal_many,
)
from tests.crypto.conftest import watch_secret, watch_text

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "envelope_vectors.json").read_text(encoding="utf-8")
)
COLUMN = "public.customers.phone"


def make_key(key_id: int = 7, tenant: str = "42") -> DataKey:
    material = os.urandom(32)
    watch_secret(material)
    key = DataKey(key_id, tenant, 1, material)
    watch_text(repr(key))
    return key


@pytest.mark.parametrize("vector", VECTORS["envelope"], ids=lambda v: v["name"])
def test_known_answer_vectors(vector: dict[str, Any]) -> None:
    key_bytes = bytes.fromhex(vector["key_hex"])
    nonce = bytes.fromhex(vector["nonce_hex"])
    plaintext = bytes.fromhex(vector["plaintext_hex"])
    expected = bytes.fromhex(vector["envelope_hex"])
    key = DataKey(vector["key_id"], "t", 1, key_bytes)
    # The library produces the vector ...
    assert _seal_with_nonce(key, vector["column"], plaintext, nonce) == expected
    assert armor(expected) == vector["text_form"]
    assert dearmor(vector["text_form"]) == expected
    assert open_envelope({vector["key_id"]: key}, vector["column"], expected) == plaintext
    assert peek_key_id(expected) == vector["key_id"]
    # ... and so does the spec, written out with the bare primitive.
    aad = b"pgseal:v1:" + vector["key_id"].to_bytes(8, "big") + vector["column"].encode()
    assert aad.hex() == vector["aad_hex"]
    spec = b"\x01" + vector["key_id"].to_bytes(8, "big") + nonce
    spec += AESGCM(key_bytes).encrypt(nonce, plaintext, aad)
    assert spec == expected


@pytest.mark.parametrize("vector", VECTORS["envelope_negative"], ids=lambda v: v["name"])
def test_negative_vectors(vector: dict[str, Any]) -> None:
    good = VECTORS["envelope"][1]
    keys = {
        good["key_id"]: DataKey(good["key_id"], "t", 1, bytes.fromhex(good["key_hex"])),
        1: DataKey(1, "t", 1, bytes.fromhex(VECTORS["envelope"][0]["key_hex"])),
    }
    error = getattr(errors, vector["error"])
    with pytest.raises(error):
        open_envelope(keys, vector["column"], bytes.fromhex(vector["envelope_hex"]))


@pytest.mark.parametrize(
    "plaintext",
    [b"", b"x", b"\x00", "Zoë Ærøskøbing 🙂".encode(), bytes(range(256)) * 3, b"\xff\xfe\x80"],
    ids=["empty", "1-byte", "nul", "utf8", "binary-768", "non-utf8"],
)
def test_round_trip(plaintext: bytes) -> None:
    key = make_key()
    envelope = seal(key, COLUMN, plaintext)
    assert len(envelope) == MIN_ENVELOPE_LEN + len(plaintext)
    assert open_envelope({key.key_id: key}.get, COLUMN, envelope) == plaintext
    assert open_envelope({key.key_id: key}, COLUMN, dearmor(armor(envelope))) == plaintext


def test_round_trip_multi_megabyte() -> None:
    key = make_key()
    plaintext = os.urandom(5 * 1024 * 1024)
    envelope = seal(key, COLUMN, plaintext)
    assert open_envelope({key.key_id: key}, COLUMN, envelope) == plaintext
    assert open_envelope({key.key_id: key}, COLUMN, memoryview(envelope)) == plaintext


def test_nonce_is_fresh_every_time() -> None:
    key = make_key()
    envelopes = {seal(key, COLUMN, b"same value") for _ in range(200)}
    assert len(envelopes) == 200
    assert len({e[9:21] for e in envelopes}) == 200


def test_seal_many_is_seal_per_field() -> None:
    key = make_key()
    columns = [COLUMN, "public.customers.tax_id", COLUMN]
    plaintexts = [b"555-0100", b"T-1", b""]
    sealed = seal_many(key, columns, plaintexts)
    assert [
        open_envelope({7: key}, c, e) for c, e in zip(columns, sealed, strict=True)
    ] == plaintexts
    assert [len(e) for e in sealed] == [
        len(seal(key, c, p)) for c, p in zip(columns, plaintexts, strict=True)
    ]
    with pytest.raises(errors.EnvelopeTampered):  # each bound to its own column
        open_envelope({7: key}, COLUMN, sealed[1])
    nonces = [e[9:21] for _ in range(200) for e in seal_many(key, columns, plaintexts)]
    assert len(set(nonces)) == len(nonces)  # fresh for every field of every call
    assert seal_many(key, [], []) == []
    with pytest.raises(ValueError, match="2 columns for 3 plaintexts"):
        seal_many(key, columns[:2], plaintexts)


def test_tamper_sweep_every_bit_flip() -> None:
    key = make_key()
    other = make_key(key_id=8)
    keys = {key.key_id: key, other.key_id: other}
    plaintext = b"tamper-sweep-plaintext"
    watch_secret(plaintext)
    envelope = seal(key, COLUMN, plaintext)
    failures: dict[type[Exception], int] = {}
    for bit in range(len(envelope) * 8):
        flipped = bytearray(envelope)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(errors.CryptoError) as info:
            open_envelope(keys, COLUMN, bytes(flipped))
        failures[type(info.value)] = failures.get(type(info.value), 0) + 1
        watch_text(str(info.value))
    # Version byte -> malformed; key id -> unknown key; the rest -> tampered.
    assert failures[errors.EnvelopeMalformed] == 8
    assert failures[errors.UnknownKey] == 64
    assert failures[errors.EnvelopeTampered] == len(envelope) * 8 - 72


def test_tamper_sweep_every_truncation() -> None:
    key = make_key()
    envelope = seal(key, COLUMN, b"truncate me, please")
    for length in range(len(envelope)):
        with pytest.raises((errors.EnvelopeMalformed, errors.EnvelopeTampered)):
            open_envelope({key.key_id: key}, COLUMN, envelope[:length])
    # And extension: trailing garbage is also caught.
    with pytest.raises(errors.EnvelopeTampered):
        open_envelope({key.key_id: key}, COLUMN, envelope + b"\x00")


def test_moved_to_another_column_fails() -> None:
    key = make_key()
    envelope = seal(key, "public.customers.phone", b"555-0100")
    with pytest.raises(errors.EnvelopeTampered) as info:
        open_envelope({key.key_id: key}, "public.customers.fax", envelope)
    assert "public.customers.fax" in str(info.value)
    with pytest.raises(errors.EnvelopeTampered):
        open_envelope({key.key_id: key}, "other.customers.phone", envelope)


def test_relabelled_with_another_tenants_key_fails() -> None:
    mine, theirs = make_key(key_id=100, tenant="a"), make_key(key_id=200, tenant="b")
    envelope = seal(mine, COLUMN, b"tenant a's secret")
    relabelled = envelope[:1] + theirs.id_bytes + envelope[9:]
    with pytest.raises(errors.EnvelopeTampered) as info:
        open_envelope({100: mine, 200: theirs}, COLUMN, relabelled)
    assert info.value.key_id == 200


def test_unknown_key() -> None:
    key = make_key()
    with pytest.raises(errors.UnknownKey) as info:
        open_envelope({}, COLUMN, seal(key, COLUMN, b"v"))
    assert info.value.key_id == key.key_id
    assert info.value.sqlstate == "XX001"


def test_is_envelope_and_peek() -> None:
    key = make_key(key_id=0x0123456789ABCDEF)
    envelope = seal(key, COLUMN, b"v")
    assert is_envelope(envelope)
    assert peek_key_id(envelope) == 0x0123456789ABCDEF
    assert not is_envelope(b"555-0100")
    assert not is_envelope(envelope[:36])
    assert not is_envelope(b"\x02" + envelope[1:])
    with pytest.raises(errors.EnvelopeMalformed):
        peek_key_id(b"short")


def test_text_form() -> None:
    key = make_key()
    envelope = seal(key, COLUMN, b"v")
    text = armor(envelope)
    assert text.startswith("pgseal1:")
    assert is_armored(text)
    assert is_armored(text.encode())
    assert not is_armored("555-0100")
    assert dearmor(text.encode()) == envelope
    with pytest.raises(errors.EnvelopeMalformed, match="must start with"):
        dearmor("555-0100", COLUMN)
    with pytest.raises(errors.EnvelopeMalformed, match="base64"):
        dearmor("pgseal1:***", COLUMN)
    with pytest.raises(errors.EnvelopeMalformed, match="shorter"):
        dearmor("pgseal1:AQID", COLUMN)


def test_key_objects_hide_their_bytes() -> None:
    material = os.urandom(32)
    watch_secret(material)
    key = DataKey(5, "42", 3, material)
    text = repr(key)
    assert text == "DataKey(key_id=5, tenant='42', version=3)"
    assert material.hex() not in text
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey(5, "42", 1, b"short")
    with pytest.raises(ValueError, match="outside"):
        DataKey(0, "42", 1, material)


def test_seal_with_nonce_checks_length() -> None:
    with pytest.raises(ValueError, match="12 bytes"):
        _seal_with_nonce(make_key(), COLUMN, b"x", b"\x00" * 8)


def test_error_sqlstates() -> None:
    assert errors.EnvelopeTampered(COLUMN, 1).sqlstate == "XX001"
    assert errors.EnvelopeMalformed(COLUMN, "r").sqlstate == "XX001"
    assert errors.KeyDestroyed(1, "t").sqlstate == "55000"
    assert errors.TenantShredded("t").sqlstate == "55000"
    assert errors.WrongTenant(COLUMN, 1, "t").sqlstate == "42501"
    assert errors.MasterKeyError("m").sqlstate == "F0000"
    assert errors.KeyUnwrapFailed(1, "ab").sqlstate == "XX001"
    assert errors.KeyStoreError("s").sqlstate == "58000"
    assert errors.BlindIndexError("b").sqlstate == "22023"
    assert isinstance(errors.TenantShredded("t"), errors.KeyDestroyed)
    for cls in (errors.EnvelopeTampered, errors.UnknownKey, errors.WrongTenant):
        assert issubclass(cls, errors.CryptoError)


def test_vectors_are_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "ENVELOPE.md").read_text(encoding="utf-8")
    for vector in VECTORS["envelope"]:
        assert vector["envelope_hex"] in doc
        assert vector["text_form"] in doc
    for vector in VECTORS["blind_index"]:
        assert vector["index_hex"] in doc
    assert VECTORS["key_wrap"][0]["wrapped_hex"] in doc
