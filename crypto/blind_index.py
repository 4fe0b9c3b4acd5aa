"""Blind index: a keyed, truncated HMAC that lets Postgres test equality.

``index = HMAC-SHA256(index_key, b"pgseal:bidx:v1:" + column + b"\\x00" + value)[:length]``

* ``index_key`` is the tenant's *index key*: a separate 256-bit key stored
  wrapped like data keys (``kind = 'index'`` in ``pgseal.keys``) that data-key
  rotation never touches, so equality search works across rotation.
* ``column`` (``schema.table.column``) separates columns: the same phone number
  in two columns gets unrelated indexes. Postgres identifiers cannot contain
  NUL, so the separator is unambiguous.
* ``value`` is the canonical text bytes after optional normalisation. The
  normalisers run in one fixed order (trim, collapse_spaces, casefold)
  whatever order the config lists them in, so the index does not depend on it.
* ``length`` defaults to 16 bytes (128 bits): collisions stay negligible while
  the index column is half the size of a full digest.

>>> key = IndexKey(key_id=9, tenant="42", version=1, material=bytes(32))
>>> a = blind_index(key, "public.customers.email", b"  Ann@Example.COM ", ("trim", "casefold"))
>>> a == blind_index(key, "public.customers.email", b"ann@example.com", ("casefold", "trim"))
True
>>> len(a)
16
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Any, Final

from crypto.envelope import key_id_bytes
from crypto.errors import BlindIndexError

__all__ = [
    "BIDX_LABEL",
    "DEFAULT_LENGTH",
    "NORMALIZERS",
    "IndexKey",
    "blind_index",
    "check_normalizers",
    "normalize",
]

BIDX_LABEL: Final = b"pgseal:bidx:v1:"
DEFAULT_LENGTH: Final = 16
MIN_LENGTH: Final = 8
MAX_LENGTH: Final = 32
#: Normalisers in the order they are applied.
NORMALIZERS: Final = ("trim", "collapse_spaces", "casefold")
_SPACES = re.compile(r"\s+")


class IndexKey:
    """One tenant's blind-index key; keeps only a keyed HMAC state, never bytes."""

    __slots__ = ("_hmac", "_timer", "id_bytes", "key_id", "tenant", "version")

    def __init__(
        self, key_id: int, tenant: str, version: int, material: bytes | bytearray | memoryview
    ) -> None:
        if len(material) != 32:
            raise ValueError("an index key is 32 bytes")
        self.key_id = key_id
        self.tenant = tenant
        self.version = version
        self.id_bytes = key_id_bytes(key_id)
        # The keyed state after the key block is copied per call: no re-keying cost.
        self._hmac = hmac.new(bytes(material), BIDX_LABEL, hashlib.sha256)
        self._timer: object | None = None  # the key cache's expiry timer

    def __repr__(self) -> str:
        return f"IndexKey(key_id={self.key_id}, tenant={self.tenant!r}, version={self.version})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("IndexKey cannot be pickled (it would copy key material)")


def check_normalizers(names: Iterable[str]) -> frozenset[str]:
    """Validate normaliser names (as declared in config) and return them as a set."""
    chosen = frozenset(names)
    unknown = chosen.difference(NORMALIZERS)
    if unknown:
        raise BlindIndexError(
            f"unknown blind-index normaliser(s) {sorted(unknown)}; known: {list(NORMALIZERS)}"
        )
    return chosen


def normalize(value: bytes, names: Iterable[str]) -> bytes:
    """Apply the chosen normalisers in their fixed order.

    Values are canonical UTF-8 text; bytes that are not valid UTF-8 survive
    unchanged (surrogateescape), so normalisation never fails on odd input.
    """
    chosen = check_normalizers(names)
    if not chosen:
        return value
    text = value.decode("utf-8", "surrogateescape")
    if "trim" in chosen:
        text = text.strip()
    if "collapse_spaces" in chosen:
        text = _SPACES.sub(" ", text)
    if "casefold" in chosen:
        text = text.casefold()
    return text.encode("utf-8", "surrogateescape")


def blind_index(
    key: IndexKey,
    column: str,
    value: bytes,
    normalizers: Iterable[str] = (),
    length: int = DEFAULT_LENGTH,
) -> bytes:
    """The blind index of ``value`` in ``column`` under ``key``."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise BlindIndexError(
            f"blind index length {length} is outside {MIN_LENGTH}..{MAX_LENGTH} bytes"
        )
    mac = key._hmac.copy()
    mac.update(column.encode())
    mac.update(b"\x00")
    mac.update(normalize(value, normalizers))
    return mac.digest()[:length]
