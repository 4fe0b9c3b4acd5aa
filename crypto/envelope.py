"""Envelope v1: one sealed field value (see docs/ENVELOPE.md for the byte layout).

::

    0x01 | key id (u64 BE) | nonce (12 bytes) | AES-256-GCM ciphertext + 16-byte tag
    AAD = b"pgseal:v1:" + key id (8 bytes) + b"schema.table.column"

The API is a recipe in the spirit of cryptography's Fernet: :func:`seal` makes
the nonce itself (never a parameter) and :func:`open_envelope` turns every
failure into one typed :class:`~crypto.errors.CryptoError`. Binding the key id
and the qualified column into the AAD means a value copied to another column,
or relabelled with another tenant's key id, fails authentication.

A :class:`DataKey` owns one cached ``AESGCM`` object (built once per key, not
per call) and never exposes its bytes. Opening is, on purpose, a length check,
a dict lookup by the key id bytes and one ``AESGCM.decrypt``.

``text`` columns hold the same bytes armoured as ``pgseal1:`` + base64
(:func:`armor` / :func:`dearmor`).

>>> key = DataKey(key_id=7, tenant="42", version=1, material=bytes(32))
>>> env = seal(key, "public.customers.phone", b"555-0100")
>>> is_envelope(env), peek_key_id(env)
(True, 7)
>>> open_envelope({7: key}.get, "public.customers.phone", env)
b'555-0100'
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import EnvelopeMalformed, EnvelopeTampered, UnknownKey

__all__ = [
    "AAD_LABEL",
    "ARMOR_PREFIX",
    "HEADER_LEN",
    "MIN_ENVELOPE_LEN",
    "NONCE_LEN",
    "TAG_LEN",
    "VERSION",
    "DataKey",
    "KeyLookup",
    "armor",
    "dearmor",
    "is_armored",
    "is_envelope",
    "key_id_bytes",
    "open_envelope",
    "peek_key_id",
    "seal",
    "seal_many",
]

VERSION: Final = 0x01
KEY_ID_LEN: Final = 8
NONCE_LEN: Final = 12
TAG_LEN: Final = 16
HEADER_LEN: Final = 1 + KEY_ID_LEN + NONCE_LEN  # 21
MIN_ENVELOPE_LEN: Final = HEADER_LEN + TAG_LEN  # 37: an empty plaintext
AAD_LABEL: Final = b"pgseal:v1:"
ARMOR_PREFIX: Final = "pgseal1:"
_ARMOR_PREFIX_B: Final = ARMOR_PREFIX.encode()
_MAX_KEY_ID: Final = (1 << 64) - 1
_MAX_MEMO_COLUMNS: Final = 512  # protected columns of one deployment fit easily


def key_id_bytes(key_id: int) -> bytes:
    """The 8-byte big-endian form of a key id, as it appears in envelopes."""
    if not 0 < key_id <= _MAX_KEY_ID:
        raise ValueError(f"key id {key_id} is outside 1 .. 2**64-1")
    return key_id.to_bytes(KEY_ID_LEN, "big")


class DataKey:
    """One tenant's data key (DEK) version, ready to seal and open.

    The raw key bytes are handed to ``AESGCM`` at construction and not kept by
    this object; ``repr`` shows only identifiers.
    """

    __slots__ = (
        "_aad_prefix",
        "_aads",
        "_aead",
        "_header",
        "_timer",
        "id_bytes",
        "key_id",
        "tenant",
        "version",
    )

    def __init__(
        self, key_id: int, tenant: str, version: int, material: bytes | bytearray | memoryview
    ) -> None:
        if len(material) != 32:
            raise ValueError("a data key is 32 bytes (AES-256)")
        self.key_id = key_id
        self.tenant = tenant
        self.version = version
        self.id_bytes = key_id_bytes(key_id)
        self._aead = AESGCM(bytes(material))
        self._header = bytes((VERSION,)) + self.id_bytes
        self._aad_prefix = AAD_LABEL + self.id_bytes
        # Full AAD per column: a dict hit is cheaper than encode + concatenate.
        self._aads: dict[str, bytes] = {}
        # The key cache's expiry timer (an asyncio.TimerHandle) while cached.
        self._timer: object | None = None

    def aad(self, column: str) -> bytes:
        """``b"pgseal:v1:" + key id + column``, memoised for the first columns seen."""
        aad = self._aads.get(column)
        if aad is None:
            aad = self._aad_prefix + column.encode()
            if len(self._aads) < _MAX_MEMO_COLUMNS:
                self._aads[column] = aad
        return aad

    def __repr__(self) -> str:
        return f"DataKey(key_id={self.key_id}, tenant={self.tenant!r}, version={self.version})"

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("DataKey cannot be pickled (it would copy key material)")


#: Anything that maps a key id to its key: ``dict.get``, a cache lookup, ...
#: It returns None for an unknown id (or raises a CryptoError itself).
KeyLookup = Callable[[int], "DataKey | None"]


def _seal_with_nonce(key: DataKey, column: str, plaintext: bytes, nonce: bytes) -> bytes:
    """Seal with a caller-chosen nonce. Only for known-answer test vectors.

    Reusing a nonce under one key breaks GCM completely; production code calls
    :func:`seal`, which draws a fresh random nonce every time.
    """
    if len(nonce) != NONCE_LEN:
        raise ValueError("nonce must be 12 bytes")
    return key._header + nonce + key._aead.encrypt(nonce, plaintext, key.aad(column))


def seal(key: DataKey, column: str, plaintext: bytes) -> bytes:
    """Seal ``plaintext`` for ``column`` (``schema.table.column``) under ``key``."""
    nonce = os.urandom(NONCE_LEN)
    aad = key._aads.get(column) or key.aad(column)
    return key._header + nonce + key._aead.encrypt(nonce, plaintext, aad)


def seal_many(key: DataKey, columns: Sequence[str], plaintexts: Sequence[bytes]) -> list[bytes]:
    """:func:`seal` of each plaintext for its column (one row's fields), under ``key``.

    The nonces are made here as in :func:`seal`, each a fresh random 12 bytes:
    one ``os.urandom`` call draws them all (a system call per field costs
    nearly as much as the encryption itself).
    """
    count = len(plaintexts)
    if len(columns) != count:
        raise ValueError(f"{len(columns)} columns for {count} plaintexts")
    nonces = os.urandom(NONCE_LEN * count)
    header = key._header
    encrypt = key._aead.encrypt
    aads = key._aads
    join = b"".join  # one copy per envelope, not two concatenations
    out: list[bytes] = []
    append = out.append
    start = 0
    for column, plaintext in zip(columns, plaintexts, strict=True):
        nonce = nonces[start : start + NONCE_LEN]
        start += NONCE_LEN
        append(
            join((header, nonce, encrypt(nonce, plaintext, aads.get(column) or key.aad(column))))
        )
    return out


def _check_shape(column: str, envelope: bytes | memoryview) -> None:
    if len(envelope) < MIN_ENVELOPE_LEN:
        raise EnvelopeMalformed(
            column, f"{len(envelope)} bytes is shorter than the {MIN_ENVELOPE_LEN}-byte minimum"
        )
    if envelope[0] != VERSION:
        raise EnvelopeMalformed(column, f"unknown format version 0x{envelope[0]:02x}")


def open_envelope(
    keys: KeyLookup | Mapping[int, DataKey], column: str, envelope: bytes | memoryview
) -> bytes:
    """Open ``envelope`` stored in ``column``, finding its key by the id it names.

    ``keys`` is a lookup function (e.g. ``dict.get``) or a mapping of key id to
    :class:`DataKey`, like MultiFernet's key list: decrypt with the key named.
    """
    if len(envelope) < MIN_ENVELOPE_LEN or envelope[0] != VERSION:
        _check_shape(column, envelope)
    key_id = int.from_bytes(envelope[1:9], "big")
    lookup = keys.get if isinstance(keys, Mapping) else keys
    key = lookup(key_id)
    if key is None:
        raise UnknownKey(key_id)
    try:
        return key._aead.decrypt(envelope[9:HEADER_LEN], envelope[HEADER_LEN:], key.aad(column))
    except InvalidTag:
        raise EnvelopeTampered(column, key_id) from None


def is_envelope(value: bytes | memoryview) -> bool:
    """Cheap structural test: could ``value`` be a v1 envelope (binary form)?

    True means the version byte is 0x01 and the value is long enough; it does
    not authenticate anything. The proxy uses it to avoid sealing twice; a
    plaintext is canonical UTF-8 text, which never starts with byte 0x01 in
    practice (it would be a control character).
    """
    return len(value) >= MIN_ENVELOPE_LEN and value[0] == VERSION


def peek_key_id(envelope: bytes | memoryview) -> int:
    """The key id an envelope names (no authentication), to pick or prefetch keys."""
    if len(envelope) < MIN_ENVELOPE_LEN or envelope[0] != VERSION:
        _check_shape("(unknown)", envelope)
    return int.from_bytes(envelope[1:9], "big")


def armor(envelope: bytes) -> str:
    """Text storage form: ``pgseal1:`` + standard base64 (with padding)."""
    return ARMOR_PREFIX + base64.b64encode(envelope).decode("ascii")


def is_armored(value: str | bytes) -> bool:
    """True when ``value`` starts with the text-form prefix ``pgseal1:``."""
    if isinstance(value, str):
        return value.startswith(ARMOR_PREFIX)
    return value.startswith(_ARMOR_PREFIX_B)


def dearmor(value: str | bytes, column: str = "(unknown)") -> bytes:
    """Binary envelope from its text form; raises EnvelopeMalformed if not armoured."""
    raw = value.encode("ascii", "replace") if isinstance(value, str) else value
    if not raw.startswith(_ARMOR_PREFIX_B):
        raise EnvelopeMalformed(column, f"text form must start with {ARMOR_PREFIX!r}")
    try:
        envelope = base64.b64decode(raw[len(_ARMOR_PREFIX_B) :], validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeMalformed(column, "text form is not valid base64") from None
    _check_shape(column, envelope)
    return envelope
