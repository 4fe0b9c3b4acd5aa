"""Blind index: vectors, normalisation, column separation, bounds."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import pytest

from crypto.blind_index import IndexKey, blind_index, check_normalizers, normalize
from crypto.errors import BlindIndexError
from tests.crypto.conftest import watch_secret, watch_text

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "envelope_vectors.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("vector", VECTORS["blind_index"], ids=lambda v: v["index_hex"][:8])
def test_blind_index_vectors(vector: dict[str, Any]) -> None:
    material = bytes.fromhex(vector["index_key_hex"])
    key = IndexKey(9, "t", 1, material)
    value = bytes.fromhex(vector["value_hex"])
    got = blind_index(key, vector["column"], value, vector["normalize"], vector["length"])
    assert got.hex() == vector["index_hex"]
    # The spec, written out with hmac directly.
    normalized = normalize(value, vector["normalize"])
    message = b"pgseal:bidx:v1:" + vector["column"].encode() + b"\x00" + normalized
    spec = hmac.new(material, message, hashlib.sha256).digest()[: vector["length"]]
    assert spec == got


def key() -> IndexKey:
    material = os.urandom(32)
    watch_secret(material)
    k = IndexKey(3, "42", 1, material)
    watch_text(repr(k))
    return k


def test_deterministic_and_column_separated() -> None:
    k = key()
    a = blind_index(k, "public.customers.tax_id", b"DE123")
    assert a == blind_index(k, "public.customers.tax_id", b"DE123")
    assert a != blind_index(k, "public.customers.vat_id", b"DE123")
    assert a != blind_index(k, "public.customers.tax_id", b"DE124")
    assert a != blind_index(key(), "public.customers.tax_id", b"DE123")
    assert len(a) == 16


def test_normalisers_fixed_order_and_effects() -> None:
    assert normalize(b"  A  b\t\nC ", ["trim"]) == b"A  b\t\nC"
    assert normalize(b"  A  b\t\nC ", ["collapse_spaces"]) == b" A b C "
    assert normalize(b"  A  b\t\nC ", ["casefold", "collapse_spaces", "trim"]) == b"a b c"
    assert normalize("STRASSE Straße".encode(), ["casefold"]) == b"strasse strasse"
    assert normalize(b"\xff Odd ", ["trim", "casefold"]) == b"\xff odd"
    assert normalize(b"As Is ", []) == b"As Is "
    k = key()
    assert blind_index(k, "c", b" X ", ["trim", "casefold"]) == blind_index(
        k, "c", b"x", ["casefold", "trim"]
    )


def test_bad_normaliser_and_length() -> None:
    with pytest.raises(BlindIndexError, match="unknown blind-index normaliser") as info:
        check_normalizers(["lowercase"])
    assert info.value.sqlstate == "22023"
    for length in (0, 7, 33):
        with pytest.raises(BlindIndexError, match="outside"):
            blind_index(key(), "c", b"v", (), length)
    assert len(blind_index(key(), "c", b"v", (), 32)) == 32
    assert len(blind_index(key(), "c", b"v", (), 8)) == 8


def test_index_key_repr_hides_bytes() -> None:
    material = os.urandom(32)
    k = IndexKey(3, "42", 1, material)
    assert repr(k) == "IndexKey(key_id=3, tenant='42', version=1)"
    with pytest.raises(ValueError, match="32 bytes"):
        IndexKey(3, "42", 1, b"x")
