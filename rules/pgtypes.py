"""Typed value codec: the logical column types between wire formats and canonical text.

pgseal seals the *canonical text* of a value: exactly what PostgreSQL prints for it
(``SELECT v::text``) under the settings pgseal fixes (``DateStyle = 'ISO, MDY'``,
``bytea_output = 'hex'``, ``client_encoding = 'UTF8'``, ``TimeZone = 'UTC'``).
A value reaches pgseal as a Bind parameter in text (format 0) or binary (format 1)
and leaves it in a DataRow in whichever format the client asked for, so each
logical type has one :class:`ValueCodec` with four conversions::

    to_canonical(data, fmt)      client's text or binary  -> canonical text (sealed)
    from_canonical(text, fmt)    canonical text (opened)  -> client's text or binary

Every codec goes through one internal value per type (an ``int`` of days for
``date``, microseconds since 2000-01-01 for timestamps, a digit string for
``numeric``, ...): ``text -> value -> canonical text`` and
``binary -> value -> canonical text`` share the formatter, and
``canonical -> value -> binary`` shares the packer (one precompiled
:class:`struct.Struct` per fixed-width type). ``from_canonical(x, 0)`` returns ``x``
itself: the proxy calls it for every decrypted field, and the canonical text *is*
the text format.

Text input follows PostgreSQL's own input functions (leading/trailing blanks,
``0x``/``0o``/``0b`` and ``_`` digit separators of PostgreSQL 16+, ``1e2``,
``yes``/``on``, ``{...}`` uuids, bytea escape format, ...) and is checked against a
live server in ``tests/rules/test_pgtypes.py``. What PostgreSQL 16 added to the
input syntax (non-decimal integers and numerics, ``_`` separators,
``+infinity`` dates and timestamps) is refused, as the server would refuse it,
once :func:`set_server_version` was told of an older server. Deliberate limits,
each refused with a typed error rather than guessed:

* ``timestamptz`` is normalised to UTC: text input without a zone is read as UTC,
  what it means in a session whose ``TimeZone`` is UTC; the proxy reads values
  for other sessions with :func:`timestamptz_offset_required`, which refuses
  it; named zones (IANA names such
  as ``Europe/Paris``) are resolved with :mod:`zoneinfo`, but a local time that a
  zone skips or repeats (a DST change) is refused, as are PostgreSQL's zone
  abbreviations that are not IANA names.
* dates and timestamps are accepted in ISO 8601 form (``YYYY-MM-DD``, ``T`` or blank
  before the time, ``Z``/``±hh[:mm[:ss]]``/zone name, ``BC``) plus ``infinity``,
  ``-infinity`` and ``epoch``; PostgreSQL's other spellings (``January 8, 1999``,
  ``1/8/1999``, two-digit years) and the clock-dependent words (``now``,
  ``today``...) are refused: pgseal cannot know the statement's transaction time.
* multi-dimensional array parameters are flattened (``= ANY`` does not care).

Errors are :class:`ValueFormatError` subclasses carrying PostgreSQL's SQLSTATE; a
message names the type and what is wrong, never the value, which may be a protected
plaintext.
"""

from __future__ import annotations

import binascii
import json
import math
import re
import struct
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any, ClassVar, Final, Generic, NamedTuple, NoReturn, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "ARRAY_OIDS",
    "LOGICAL_TYPES",
    "LOGICAL_TYPE_OIDS",
    "CharacterNotInRepertoire",
    "DatatypeMismatch",
    "DatetimeFieldOverflow",
    "InvalidBinaryRepresentation",
    "InvalidDatetimeFormat",
    "InvalidParameterValue",
    "InvalidTextRepresentation",
    "InvalidTimeZoneDisplacement",
    "NestingTooDeep",
    "NumericValueOutOfRange",
    "PgTypeInfo",
    "ProgramLimitExceeded",
    "StringDataRightTruncation",
    "TimestamptzWithoutOffset",
    "UnknownLogicalType",
    "UnsupportedValueFormat",
    "UntranslatableCharacter",
    "ValueCodec",
    "ValueFormatError",
    "codec_for",
    "float_param_codec",
    "is_utc_zone",
    "set_server_version",
    "timestamptz_offset_required",
]

TEXT_FORMAT: Final = 0
BINARY_FORMAT: Final = 1


# --------------------------------------------------------------------------- types


class PgTypeInfo(NamedTuple):
    """One built-in PostgreSQL type as pg_type describes it."""

    logical_type: str  # pgseal's name for it, as written in config.yaml
    typname: str  # pg_type.typname
    oid: int
    array_oid: int  # pg_type.typarray
    typlen: int  # pg_type.typlen: the "type size" of RowDescription (-1 = varlena)


# The logical-type names are pgseal's decision; everything else below is copied out
# of pg_type by `python -m rules.pgtypes DSN` (tests/rules/test_pgtypes.py checks it
# against a live server). Built-in OIDs are fixed by PostgreSQL's catalog headers.
_TYPNAMES: Final[dict[str, str]] = {
    "text": "text",
    "varchar": "varchar",
    "integer": "int4",
    "bigint": "int8",
    "smallint": "int2",
    "numeric": "numeric",
    "boolean": "bool",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "uuid": "uuid",
    "jsonb": "jsonb",
    "bytea": "bytea",
}

# BEGIN GENERATED TYPE TABLE (python -m rules.pgtypes DSN)
_TYPE_TABLE: Final[tuple[PgTypeInfo, ...]] = (
    PgTypeInfo("text", "text", 25, 1009, -1),
    PgTypeInfo("varchar", "varchar", 1043, 1015, -1),
    PgTypeInfo("integer", "int4", 23, 1007, 4),
    PgTypeInfo("bigint", "int8", 20, 1016, 8),
    PgTypeInfo("smallint", "int2", 21, 1005, 2),
    PgTypeInfo("numeric", "numeric", 1700, 1231, -1),
    PgTypeInfo("boolean", "bool", 16, 1000, 1),
    PgTypeInfo("date", "date", 1082, 1182, 4),
    PgTypeInfo("timestamp", "timestamp", 1114, 1115, 8),
    PgTypeInfo("timestamptz", "timestamptz", 1184, 1185, 8),
    PgTypeInfo("uuid", "uuid", 2950, 2951, 16),
    PgTypeInfo("jsonb", "jsonb", 3802, 3807, -1),
    PgTypeInfo("bytea", "bytea", 17, 1001, -1),
)
# END GENERATED TYPE TABLE

LOGICAL_TYPES: Final[dict[str, PgTypeInfo]] = {t.logical_type: t for t in _TYPE_TABLE}
LOGICAL_TYPE_OIDS: Final[dict[str, int]] = {t.logical_type: t.oid for t in _TYPE_TABLE}
ARRAY_OIDS: Final[dict[str, int]] = {t.logical_type: t.array_oid for t in _TYPE_TABLE}

# Other spellings a DBA (or PostgreSQL's format_type) may use for the same types.
_ALIASES: Final[dict[str, str]] = {
    "int": "integer",
    "int4": "integer",
    "int8": "bigint",
    "int2": "smallint",
    "decimal": "numeric",
    "bool": "boolean",
    "character varying": "varchar",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
}


def render_type_table(rows: Sequence[tuple[str, int, int, int]]) -> str:
    """The generated block for ``_TYPE_TABLE`` from pg_type rows.

    ``rows`` are ``(typname, oid, typarray, typlen)``; the block lists the logical
    types in ``_TYPNAMES`` order so regenerating an unchanged catalog is a no-op.
    """
    by_name = {r[0]: r for r in rows}
    lines = ["_TYPE_TABLE: Final[tuple[PgTypeInfo, ...]] = ("]
    for logical, typname in _TYPNAMES.items():
        _, oid, array_oid, typlen = by_name[typname]
        lines.append(f'    PgTypeInfo("{logical}", "{typname}", {oid}, {array_oid}, {typlen}),')
    lines.append(")")
    return "\n".join(lines)


PG_TYPE_QUERY: Final = (
    "SELECT typname::text, oid::int8, typarray::int8, typlen::int4 FROM pg_catalog.pg_type "
    "WHERE typnamespace = 'pg_catalog'::regnamespace AND typname = ANY($1::text[])"
)


# -------------------------------------------------------------------------- errors


class ValueFormatError(ValueError):
    """A value cannot be converted; ``sqlstate`` is what PostgreSQL would report.

    Messages name the type and the problem but never contain the value.
    """

    sqlstate: ClassVar[str] = "22000"


class InvalidTextRepresentation(ValueFormatError):
    sqlstate = "22P02"


class InvalidBinaryRepresentation(ValueFormatError):
    sqlstate = "22P03"


class NumericValueOutOfRange(ValueFormatError):
    sqlstate = "22003"


class CharacterNotInRepertoire(ValueFormatError):
    """Not valid UTF-8 (or a NUL byte), which PostgreSQL text cannot hold."""

    sqlstate = "22021"


class InvalidDatetimeFormat(ValueFormatError):
    sqlstate = "22007"


class DatetimeFieldOverflow(ValueFormatError):
    sqlstate = "22008"


class InvalidTimeZoneDisplacement(ValueFormatError):
    sqlstate = "22009"


class InvalidParameterValue(ValueFormatError):
    sqlstate = "22023"


class UntranslatableCharacter(ValueFormatError):
    """``\\u0000`` in jsonb, which PostgreSQL refuses."""

    sqlstate = "22P05"


class StringDataRightTruncation(ValueFormatError):
    sqlstate = "22001"


class DatatypeMismatch(ValueFormatError):
    """A binary array whose element type is not the column's."""

    sqlstate = "42804"


class ProgramLimitExceeded(ValueFormatError):
    sqlstate = "54000"


class NestingTooDeep(ValueFormatError):
    sqlstate = "54001"


class UnsupportedValueFormat(ValueFormatError):
    """PostgreSQL would accept this spelling, but pgseal cannot canonicalise it."""

    sqlstate = "0A000"


class TimestamptzWithoutOffset(UnsupportedValueFormat):
    """timestamptz text without a zone, in a session whose TimeZone is not UTC."""


class UnknownLogicalType(LookupError):
    """``codec_for`` was asked for a type pgseal has no codec for."""


# ---------------------------------------------------------------- shared helpers

# C isspace() in the "C" locale: what PostgreSQL's input functions skip.
_BLANKS: Final = b" \t\n\v\f\r"
_INT16: Final = struct.Struct(">h")
_INT32: Final = struct.Struct(">i")
_INT64: Final = struct.Struct(">q")
_ARRAY_HEADER: Final = struct.Struct(">iiI")
_ARRAY_DIM: Final = struct.Struct(">ii")
_NUMERIC_HEADER: Final = struct.Struct(">hhHH")
_NUMERIC_RECV_HEADER: Final = struct.Struct(">HhHH")


def _check_utf8(data: bytes, type_name: str) -> str:
    """Decode client text; PostgreSQL rejects invalid UTF-8 and NUL alike."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CharacterNotInRepertoire(
            f"invalid byte sequence for encoding UTF8 in a {type_name} value"
        ) from None
    if "\x00" in text:
        raise CharacterNotInRepertoire(f"a {type_name} value cannot contain a NUL byte")
    return text


def _syntax_error(type_name: str, data: bytes) -> NoReturn:
    """Raise the error PostgreSQL gives for unparsable text input."""
    _check_utf8(data, type_name)  # invalid UTF-8 is reported as such first
    raise InvalidTextRepresentation(f"invalid input syntax for type {type_name}")


def _binary_length_error(type_name: str, expected: int, got: int) -> NoReturn:
    raise InvalidBinaryRepresentation(
        f"binary {type_name} value must be {expected} bytes, got {got}"
    )


class _InputSyntax:
    """Which server's text input syntax values are read in: one upstream per process."""

    pg16 = True  # non-decimal integers, "_" separators, "+infinity" (PostgreSQL 16+)


_SYNTAX: Final = _InputSyntax()


def set_server_version(version_num: int) -> None:
    """Read text input as the server of this ``server_version_num`` reads it.

    pgseal converts protected values itself, so the server never parses them:
    without this, a PostgreSQL 15 behind pgseal would seem to accept ``0x1F``
    or ``1_000`` for an integer column that it refuses for any other.
    """
    _SYNTAX.pg16 = version_num >= 160000


def _pre16_refuses(type_name: str, data: bytes) -> None:
    """PostgreSQL 16 syntax on an older server: the error that server gives."""
    if not _SYNTAX.pg16:
        _syntax_error(type_name, data)


# Digit runs with PostgreSQL 16's "_" separators (one, between digits).
_DEC = rb"\d+(?:_\d+)*"
_NONDEC_INT = rb"0(?:[xX](?:_?[0-9a-fA-F])+|[oO](?:_?[0-7])+|[bB](?:_?[01])+)"
_INT_RE: Final = re.compile(rb"([+-]?)(?:(" + _NONDEC_INT + rb")|(" + _DEC + rb"))")
_BASES: Final = {b"x": 16, b"X": 16, b"o": 8, b"O": 8, b"b": 2, b"B": 2}


def _parse_integer_literal(data: bytes, type_name: str) -> int:
    """PostgreSQL 16+'s pg_strtoint: blanks, sign, decimal or 0x/0o/0b, '_'."""
    match = _INT_RE.fullmatch(data.strip(_BLANKS))
    if match is None:
        _syntax_error(type_name, data)
    sign, nondec, dec = match.groups()
    if nondec is not None or b"_" in dec:
        _pre16_refuses(type_name, data)
    if nondec is not None:
        digits = nondec[2:].replace(b"_", b"")
        # int() caps decimal strings at 4300 digits; bound the work long before.
        if len(digits) > 200:
            raise NumericValueOutOfRange(f"value is out of range for type {type_name}")
        value = int(digits, _BASES[nondec[1:2]])
    else:
        digits = dec.replace(b"_", b"").lstrip(b"0") or b"0"
        if len(digits) > 40:
            raise NumericValueOutOfRange(f"value is out of range for type {type_name}")
        value = int(digits)
    return -value if sign == b"-" else value


# ------------------------------------------------------------------ codec classes

V = TypeVar("V")


class ValueCodec:
    """Conversions for one logical type; get one with :func:`codec_for`."""

    logical_type: str
    type_name: str  # as PostgreSQL names it in messages
    oid: int
    array_oid: int
    type_size: int  # RowDescription's type size (pg_type.typlen)
    type_modifier: int  # RowDescription's type modifier (-1 = none)

    def to_canonical(self, data: bytes, fmt: int) -> bytes:
        """A parameter as the client sent it (0 text, 1 binary) -> canonical text."""
        raise NotImplementedError

    def from_canonical(self, text: bytes, fmt: int) -> bytes:
        """Canonical text -> the wire bytes of format ``fmt`` (0 text, 1 binary)."""
        raise NotImplementedError

    def array_elements(self, data: bytes, fmt: int) -> list[bytes | None]:
        """A 1-D array parameter of this element type -> canonical element texts."""
        raise NotImplementedError

    def array_from_canonical(self, elements: Sequence[bytes | None], fmt: int) -> bytes:
        """Canonical element texts (None = NULL) -> a 1-D array in format ``fmt``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.logical_type}>"


class _TypedCodec(ValueCodec, Generic[V]):
    """The four conversions composed from parse/decode/format/encode of a value."""

    def __init__(self, logical_type: str, type_name: str, type_modifier: int = -1) -> None:
        info = LOGICAL_TYPES[logical_type]
        self.logical_type = logical_type
        self.type_name = type_name
        self.oid = info.oid
        self.array_oid = info.array_oid
        self.type_size = info.typlen
        self.type_modifier = type_modifier

    # --- per type
    def parse_text(self, data: bytes) -> V:
        raise NotImplementedError

    def decode_binary(self, data: bytes) -> V:
        raise NotImplementedError

    def format_text(self, value: V) -> bytes:
        raise NotImplementedError

    def encode_binary(self, value: V) -> bytes:
        raise NotImplementedError

    def parse_canonical(self, text: bytes) -> V:
        """Read canonical text; types with a cheaper reader than parse_text override."""
        return self.parse_text(text)

    # --- the public conversions
    def to_canonical(self, data: bytes, fmt: int) -> bytes:
        if fmt == TEXT_FORMAT:
            return self.format_text(self.parse_text(data))
        if fmt == BINARY_FORMAT:
            return self.format_text(self.decode_binary(data))
        raise InvalidParameterValue(f"unsupported format code {fmt} for a {self.type_name}")

    def from_canonical(self, text: bytes, fmt: int) -> bytes:
        if fmt == TEXT_FORMAT:
            return text
        if fmt == BINARY_FORMAT:
            return self.encode_binary(self.parse_canonical(text))
        raise InvalidParameterValue(f"unsupported format code {fmt} for a {self.type_name}")

    def array_elements(self, data: bytes, fmt: int) -> list[bytes | None]:
        if fmt == TEXT_FORMAT:
            raw = _parse_text_array(data, self.type_name)
            return [None if e is None else self.format_text(self.parse_text(e)) for e in raw]
        if fmt == BINARY_FORMAT:
            raw = _parse_binary_array(data, self.oid, self.type_name)
            out: list[bytes | None] = []
            for element in raw:
                out.append(
                    None if element is None else self.format_text(self.decode_binary(element))
                )
            return out
        raise InvalidParameterValue(f"unsupported format code {fmt} for a {self.type_name}[]")

    def array_from_canonical(self, elements: Sequence[bytes | None], fmt: int) -> bytes:
        if fmt == TEXT_FORMAT:
            return b"{" + b",".join(_quote_array_element(e) for e in elements) + b"}"
        if fmt == BINARY_FORMAT:
            if not elements:
                return _ARRAY_HEADER.pack(0, 0, self.oid)
            has_null = any(e is None for e in elements)
            parts = [
                _ARRAY_HEADER.pack(1, int(has_null), self.oid),
                _ARRAY_DIM.pack(len(elements), 1),
            ]
            for element in elements:
                if element is None:
                    parts.append(_INT32.pack(-1))
                else:
                    wire = self.from_canonical(element, BINARY_FORMAT)
                    parts.append(_INT32.pack(len(wire)))
                    parts.append(wire)
            return b"".join(parts)
        raise InvalidParameterValue(f"unsupported format code {fmt} for a {self.type_name}[]")


# ---------------------------------------------------------------- text, varchar


class _TextCodec(_TypedCodec[bytes]):
    """text and varchar: the UTF-8 bytes themselves, in both formats."""

    def __init__(self, logical_type: str, type_name: str, max_chars: int | None = None) -> None:
        super().__init__(logical_type, type_name, -1 if max_chars is None else max_chars + 4)
        self.max_chars = max_chars

    def parse_text(self, data: bytes) -> bytes:
        text = _check_utf8(data, self.type_name)
        if self.max_chars is not None and len(text) > self.max_chars:
            # PostgreSQL's varchar(n) silently drops excess trailing blanks only.
            if text[self.max_chars :].strip(" "):
                raise StringDataRightTruncation(f"value too long for type {self.type_name}")
            return text[: self.max_chars].encode("utf-8")
        return data

    decode_binary = parse_text

    def to_canonical(self, data: bytes, fmt: int) -> bytes:
        # Every sealed text parameter comes here. ASCII without NUL that fits
        # is valid UTF-8 and canonical as it is (what parse_text returns).
        if (
            fmt in (TEXT_FORMAT, BINARY_FORMAT)
            and data.isascii()
            and b"\x00" not in data
            and (self.max_chars is None or len(data) <= self.max_chars)
        ):
            return data
        return super().to_canonical(data, fmt)

    def format_text(self, value: bytes) -> bytes:
        return value

    def encode_binary(self, value: bytes) -> bytes:
        return value

    def parse_canonical(self, text: bytes) -> bytes:
        return text


# ------------------------------------------------------------------- integers


class _IntegerCodec(_TypedCodec[int]):
    def __init__(self, logical_type: str, type_name: str, packer: struct.Struct) -> None:
        super().__init__(logical_type, type_name)
        self._packer = packer
        bits = packer.size * 8
        self._min = -(1 << (bits - 1))
        self._max = (1 << (bits - 1)) - 1

    def parse_text(self, data: bytes) -> int:
        value = _parse_integer_literal(data, self.type_name)
        if not self._min <= value <= self._max:
            raise NumericValueOutOfRange(f"value is out of range for type {self.type_name}")
        return value

    def decode_binary(self, data: bytes) -> int:
        if len(data) != self._packer.size:
            _binary_length_error(self.type_name, self._packer.size, len(data))
        value: int = self._packer.unpack(data)[0]
        return value

    def format_text(self, value: int) -> bytes:
        return b"%d" % value

    def encode_binary(self, value: int) -> bytes:
        return self._packer.pack(value)

    def parse_canonical(self, text: bytes) -> int:
        try:
            value = int(text)
        except ValueError:
            return self.parse_text(text)
        if not self._min <= value <= self._max:
            raise NumericValueOutOfRange(f"value is out of range for type {self.type_name}")
        return value


# -------------------------------------------------------------------- boolean

_BOOL_WORDS: Final = ((b"true", True), (b"false", False), (b"yes", True), (b"no", False))


class _BooleanCodec(_TypedCodec[bool]):
    def parse_text(self, data: bytes) -> bool:
        # PostgreSQL's parse_bool_with_len: any prefix of true/false/yes/no, "on",
        # "of"/"off", "1", "0"; ASCII case-insensitive, blanks trimmed.
        word = data.strip(_BLANKS).lower()
        if word:
            for full, value in _BOOL_WORDS:
                if full.startswith(word):
                    return value
            if word == b"on" or word == b"1":
                return True
            if word in (b"of", b"off", b"0"):
                return False
        _syntax_error(self.type_name, data)

    def decode_binary(self, data: bytes) -> bool:
        if len(data) != 1:
            _binary_length_error(self.type_name, 1, len(data))
        return data != b"\x00"  # boolrecv: any nonzero byte is true

    def format_text(self, value: bool) -> bytes:
        return b"t" if value else b"f"

    def encode_binary(self, value: bool) -> bytes:
        return b"\x01" if value else b"\x00"

    def parse_canonical(self, text: bytes) -> bool:
        if text == b"t":
            return True
        if text == b"f":
            return False
        return self.parse_text(text)


# -------------------------------------------------------------------- numeric

_NUMERIC_POS: Final = 0x0000
_NUMERIC_NEG: Final = 0x4000
_NUMERIC_NAN: Final = 0xC000
_NUMERIC_PINF: Final = 0xD000
_NUMERIC_NINF: Final = 0xF000
_NUMERIC_DSCALE_MAX: Final = 0x3FFF
_NUMERIC_MAX_INT_DIGITS: Final = 4 * (0x7FFF + 1)  # weight <= NUMERIC_WEIGHT_MAX
_NUMERIC_MAX_EXPONENT: Final = 0x7FFFFFFF // 2
_NUMERIC_SPECIAL_TEXT: Final = {
    _NUMERIC_NAN: b"NaN",
    _NUMERIC_PINF: b"Infinity",
    _NUMERIC_NINF: b"-Infinity",
}


class _Numeric(NamedTuple):
    """A numeric as its decimal digits: ``-int_part.frac_part`` (len(frac) = dscale).

    Digit strings, not Python ints: a numeric may have 131072 digits and int/str
    conversion is quadratic (and capped) beyond a few thousand.
    """

    sign: int  # _NUMERIC_POS/NEG, or a special (then the digits are empty)
    int_part: bytes  # no leading zeros; b"" for a zero integer part
    frac_part: bytes


_NUMERIC_RE: Final = re.compile(
    rb"([+-]?)(?:("
    + _NONDEC_INT
    + rb")|("
    + _DEC
    + rb")(?:\.("
    + _DEC
    + rb")?)?|\.("
    + _DEC
    + rb"))"
    rb"(?:[eE]([+-]?" + _DEC + rb"))?"
)


def _numeric_overflow() -> NoReturn:
    raise NumericValueOutOfRange("value overflows numeric format")


def _parse_numeric(data: bytes) -> _Numeric:
    """numeric_in: blanks, NaN/[+-]Infinity/inf, decimal with exponent, 0x/0o/0b."""
    body = data.strip(_BLANKS)
    match = _NUMERIC_RE.fullmatch(body)
    if match is None:
        word = body.lower()
        if word == b"nan":
            return _Numeric(_NUMERIC_NAN, b"", b"")
        if word in (b"infinity", b"+infinity", b"inf", b"+inf"):
            return _Numeric(_NUMERIC_PINF, b"", b"")
        if word in (b"-infinity", b"-inf"):
            return _Numeric(_NUMERIC_NINF, b"", b"")
        _syntax_error("numeric", data)
    sign_text, nondec, int_raw, frac_raw, frac_only, exp_raw = match.groups()
    if nondec is not None or b"_" in body:
        _pre16_refuses("numeric", data)
    sign = _NUMERIC_NEG if sign_text == b"-" else _NUMERIC_POS
    if nondec is not None:
        if exp_raw is not None:
            _syntax_error("numeric", data)
        digits = nondec[2:].replace(b"_", b"")
        if len(digits) > 1000:
            # Python's int -> str is capped at 4300 digits; refuse, don't truncate.
            raise UnsupportedValueFormat("non-decimal numeric input longer than 1000 digits")
        int_part = b"%d" % int(digits, _BASES[nondec[1:2]])
        return _normalise_numeric(sign, int_part, b"")
    int_digits = (int_raw or b"").replace(b"_", b"")
    frac_digits = (frac_raw or frac_only or b"").replace(b"_", b"")
    exponent = 0
    if exp_raw is not None:
        exp_text = exp_raw.replace(b"_", b"")
        magnitude = exp_text.lstrip(b"+-").lstrip(b"0")
        if len(magnitude) > 10:
            _numeric_overflow()
        exponent = int(exp_text)
        if abs(exponent) > _NUMERIC_MAX_EXPONENT:
            _numeric_overflow()
    digits = int_digits + frac_digits
    point = len(int_digits) + exponent  # decimal point position within `digits`
    dscale = max(0, len(frac_digits) - exponent)
    if dscale > _NUMERIC_DSCALE_MAX:
        _numeric_overflow()
    significant = digits.lstrip(b"0")
    if not significant:
        return _Numeric(_NUMERIC_POS, b"", b"0" * dscale)
    if point - (len(digits) - len(significant)) > _NUMERIC_MAX_INT_DIGITS:
        _numeric_overflow()
    if point <= 0:
        return _normalise_numeric(sign, b"", b"0" * -point + digits)
    if point >= len(digits):
        return _normalise_numeric(sign, digits + b"0" * (point - len(digits)), b"")
    return _normalise_numeric(sign, digits[:point], digits[point:])


def _normalise_numeric(sign: int, int_part: bytes, frac_part: bytes) -> _Numeric:
    int_part = int_part.lstrip(b"0")
    if not int_part and not frac_part.strip(b"0"):
        sign = _NUMERIC_POS  # PostgreSQL has no negative zero
    return _Numeric(sign, int_part, frac_part)


def _format_numeric(value: _Numeric) -> bytes:
    special = _NUMERIC_SPECIAL_TEXT.get(value.sign)
    if special is not None:
        return special
    text = value.int_part or b"0"
    if value.frac_part:
        text += b"." + value.frac_part
    return b"-" + text if value.sign == _NUMERIC_NEG else text


def _decode_numeric(data: bytes) -> _Numeric:
    """numeric_recv, including its truncation of digits beyond dscale."""
    if len(data) < 8:
        raise InvalidBinaryRepresentation("binary numeric value is shorter than its header")
    # ndigits is read unsigned, as numeric_recv does; PostgreSQL 18 sets no
    # bound on it beyond what the message holds.
    ndigits, weight, sign, dscale = _NUMERIC_RECV_HEADER.unpack_from(data)
    if len(data) != 8 + 2 * ndigits:
        raise InvalidBinaryRepresentation("binary numeric value does not match its digit count")
    if sign not in (_NUMERIC_POS, _NUMERIC_NEG, _NUMERIC_NAN, _NUMERIC_PINF, _NUMERIC_NINF):
        raise InvalidBinaryRepresentation("invalid sign in external numeric value")
    if dscale > _NUMERIC_DSCALE_MAX:
        raise InvalidBinaryRepresentation("invalid scale in external numeric value")
    groups = struct.unpack_from(f">{ndigits}h", data, 8)
    if any(not 0 <= g <= 9999 for g in groups):
        raise InvalidBinaryRepresentation("invalid digit in external numeric value")
    if sign in _NUMERIC_SPECIAL_TEXT:
        return _Numeric(sign, b"", b"")
    digits = b"".join(b"%04d" % g for g in groups)
    point = 4 * (weight + 1)
    if point <= 0:
        int_part, frac_part = b"", b"0" * -point + digits
    elif point >= len(digits):
        int_part, frac_part = digits + b"0" * (point - len(digits)), b""
    else:
        int_part, frac_part = digits[:point], digits[point:]
    frac_part = frac_part[:dscale].ljust(dscale, b"0")
    return _normalise_numeric(sign, int_part, frac_part)


def _encode_numeric(value: _Numeric) -> bytes:
    if value.sign in _NUMERIC_SPECIAL_TEXT:
        # numeric_send reports dscale 32 for the infinities and 0 for NaN.
        return _NUMERIC_HEADER.pack(0, 0, value.sign, 0 if value.sign == _NUMERIC_NAN else 32)
    int_part, frac_part = value.int_part, value.frac_part
    dscale = len(frac_part)
    int_padded = b"0" * (-len(int_part) % 4) + int_part
    frac_padded = frac_part + b"0" * (-len(frac_part) % 4)
    weight = len(int_padded) // 4 - 1
    all_digits = int_padded + frac_padded
    groups = [int(all_digits[i : i + 4]) for i in range(0, len(all_digits), 4)]
    start = 0
    while start < len(groups) and groups[start] == 0:
        start += 1
    end = len(groups)
    while end > start and groups[end - 1] == 0:
        end -= 1
    groups = groups[start:end]
    if not groups:
        return _NUMERIC_HEADER.pack(0, 0, _NUMERIC_POS, dscale)
    return _NUMERIC_HEADER.pack(len(groups), weight - start, value.sign, dscale) + struct.pack(
        f">{len(groups)}h", *groups
    )


_CANONICAL_NUMERIC_RE: Final = re.compile(rb"(-?)(0|[1-9]\d*)(?:\.(\d+))?")


class _NumericCodec(_TypedCodec[_Numeric]):
    def parse_text(self, data: bytes) -> _Numeric:
        return _parse_numeric(data)

    def decode_binary(self, data: bytes) -> _Numeric:
        return _decode_numeric(data)

    def format_text(self, value: _Numeric) -> bytes:
        return _format_numeric(value)

    def encode_binary(self, value: _Numeric) -> bytes:
        return _encode_numeric(value)

    def parse_canonical(self, text: bytes) -> _Numeric:
        match = _CANONICAL_NUMERIC_RE.fullmatch(text)
        if match is None or len(text) > 20000:
            return _parse_numeric(text)
        sign, int_part, frac_part = match.groups()
        return _normalise_numeric(
            _NUMERIC_NEG if sign else _NUMERIC_POS, int_part, frac_part or b""
        )


# -------------------------------------------------------------- dates and times

_POSTGRES_EPOCH_JDATE: Final = 2451545  # date2j(2000, 1, 1)
_UNIX_EPOCH_JDATE: Final = 2440588
_DATE_END_JULIAN: Final = 2147483494  # date2j(5874898, 1, 1)
_USECS_PER_DAY: Final = 86_400_000_000
_MIN_TIMESTAMP: Final = -211813488000000000  # 4714-11-24 00:00:00 BC
_END_TIMESTAMP: Final = 9223371331200000000  # 294277-01-01 00:00:00
_DATE_NOBEGIN: Final = -(2**31)
_DATE_NOEND: Final = 2**31 - 1
_TS_NOBEGIN: Final = -(2**63)
_TS_NOEND: Final = 2**63 - 1
_DAYS_IN_MONTH: Final = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MAX_TZ_HOURS: Final = 15  # PostgreSQL's MAX_TZDISP_HOUR


def _date2j(year: int, month: int, day: int) -> int:
    """PostgreSQL's date2j: Julian day of a proleptic Gregorian date (year 0 = 1 BC)."""
    if month > 2:
        month += 1
        year += 4800
    else:
        month += 13
        year += 4799
    century = year // 100
    julian = year * 365 - 32167
    julian += year // 4 - century + century // 4
    julian += 7834 * month // 256 + day
    return julian


def _j2date(jd: int) -> tuple[int, int, int]:
    """PostgreSQL's j2date (inverse of _date2j)."""
    julian = jd + 32044
    quad = julian // 146097
    extra = (julian - quad * 146097) * 4 + 3
    julian += 60 + quad * 3 + extra // 146097
    quad = julian // 1461
    julian -= quad * 1461
    y = julian * 4 // 1461
    julian = ((julian + 305) % 365 if y != 0 else (julian + 306) % 366) + 123
    y += quad * 4
    quad = julian * 2141 // 65536
    day = julian - 7834 * quad // 256
    month = (quad + 10) % 12 + 1
    return y - 4800, month, day


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _valid_ymd(year: int, month: int, day: int) -> bool:
    """A real calendar day (astronomical year numbering)."""
    if not 1 <= month <= 12 or day < 1:
        return False
    return day <= (29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month - 1])


def _format_ymd(year: int, month: int, day: int) -> tuple[bytes, bool]:
    """ISO date text (without era) and whether it is BC."""
    bc = year <= 0
    shown = 1 - year if bc else year
    return b"%04d-%02d-%02d" % (shown, month, day), bc


_ZONE: Final = (
    rb"[Zz]|[+-]\d{1,2}(?::?\d{2}(?::?\d{2})?)?|(?![BbAa][CcDd]\b)[A-Za-z][A-Za-z0-9_/+-]*"
)
_DATETIME_RE: Final = re.compile(
    rb"(?P<year>\d{3,})-(?P<month>\d{1,2})-(?P<day>\d{1,2})"
    rb"(?:(?:[Tt]|[ \t\n\v\f\r]+)"
    rb"(?P<hour>\d{1,2}):(?P<minute>\d{1,2})(?::(?P<second>\d{1,2})(?:\.(?P<frac>\d*))?)?"
    rb"(?:[ \t\n\v\f\r]*(?P<zone>" + _ZONE + rb"))?"
    # A zone right after the date: pgjdbc's setDate sends "2024-02-29 +00".
    rb"|[ \t\n\v\f\r]+(?P<date_zone>" + _ZONE + rb")"
    rb")?"
    rb"(?:[ \t\n\v\f\r]+(?P<era>[Bb][Cc]|[Aa][Dd]))?"
)
_OFFSET_RE: Final = re.compile(rb"([+-])(\d{1,2})(?::?(\d{2})(?::?(\d{2}))?)?")
_CLOCK_WORDS: Final = frozenset({b"now", b"today", b"tomorrow", b"yesterday", b"allballs"})


class _DateTime(NamedTuple):
    """A parsed ISO date/time: Julian day, microseconds into the day, zone offset."""

    jd: int
    usecs: int
    offset: int | None  # seconds east of UTC from the input, None if none given


def _parse_datetime(data: bytes, type_name: str, special: dict[bytes, int]) -> _DateTime | int:
    """The ISO subset of PostgreSQL's date/time input; returns a special's value."""
    body = data.strip(_BLANKS)
    word = body.lower()
    if word in special:
        if word == b"+infinity" and not _SYNTAX.pg16:
            raise InvalidDatetimeFormat(f"invalid input syntax for type {type_name}")
        return special[word]
    if word in _CLOCK_WORDS:
        raise UnsupportedValueFormat(
            f"pgseal cannot resolve clock-dependent {type_name} input; send the value itself"
        )
    match = _DATETIME_RE.fullmatch(body)
    if match is None:
        _check_utf8(data, type_name)
        raise InvalidDatetimeFormat(
            f"invalid input syntax for type {type_name} "
            "(pgseal accepts ISO 8601: YYYY-MM-DD[ hh:mm[:ss[.ffffff]]][zone][ BC])"
        )
    year = int(match["year"])
    month = int(match["month"])
    day = int(match["day"])
    if year == 0 or not 1 <= month <= 12:
        raise DatetimeFieldOverflow(f"date/time field value out of range for type {type_name}")
    days_in_month = 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month - 1]
    if not 1 <= day <= days_in_month:
        raise DatetimeFieldOverflow(f"date/time field value out of range for type {type_name}")
    if match["era"] is not None and match["era"].lower() == b"bc":
        year = 1 - year  # astronomical numbering: 1 BC is year 0
    # IS_VALID_JULIAN: 4714-11-24 BC .. 5874898-06-xx; anything later is out of range
    if year < -4713 or (year == -4713 and month < 11) or year > 5874898:
        raise DatetimeFieldOverflow(f"{type_name} out of range")
    jd = _date2j(year, month, day)
    usecs = 0
    offset: int | None = None
    if match["hour"] is not None:
        hour, minute = int(match["hour"]), int(match["minute"])
        second = int(match["second"] or b"0")
        # ParseFractionalSecond: strtod then rint, so rounding matches PostgreSQL's.
        fsec = round(float(b"0." + match["frac"]) * 1_000_000) if match["frac"] else 0
        if (
            minute > 59
            or second > 60
            or hour > 24
            or (hour == 24 and (minute or second or fsec))
            or (second == 60 and fsec)
        ):
            raise DatetimeFieldOverflow(f"date/time field value out of range for type {type_name}")
        usecs = ((hour * 60 + minute) * 60 + second) * 1_000_000 + fsec
        zone = match["zone"]
        if zone is not None:
            offset = _zone_offset(zone, jd, usecs, type_name)
    elif match["date_zone"] is not None:
        offset = _zone_offset(match["date_zone"], jd, 0, type_name)
    return _DateTime(jd, usecs, offset)


def _zone_offset(zone: bytes, jd: int, usecs: int, type_name: str) -> int:
    """Seconds east of UTC for a zone spelled in the input."""
    if zone in (b"Z", b"z") or zone.lower() in (b"utc", b"gmt", b"zulu", b"ut"):
        return 0
    numeric = _OFFSET_RE.fullmatch(zone)
    if numeric is not None:
        sign, hours, minutes, seconds = numeric.groups()
        h, m, s = int(hours), int(minutes or b"0"), int(seconds or b"0")
        if h > _MAX_TZ_HOURS or m > 59 or s > 59:
            raise InvalidTimeZoneDisplacement(
                f"time zone displacement out of range for {type_name}"
            )
        total = h * 3600 + m * 60 + s
        return -total if sign == b"-" else total
    try:
        tz = ZoneInfo(zone.decode("ascii"))
    except (ZoneInfoNotFoundError, ValueError):
        # PostgreSQL's code for an unknown zone; its abbreviations (PST...) land here too.
        raise InvalidParameterValue(
            f"time zone in {type_name} input not recognized (pgseal accepts IANA names"
            " and numeric offsets)"
        ) from None
    year, month, day = _j2date(jd)
    if not 1 <= year <= 9999:
        raise UnsupportedValueFormat(
            f"pgseal resolves zone names only for years 1-9999 in {type_name}"
        )
    local = datetime(year, month, day) + timedelta(microseconds=usecs)
    first, second = local.replace(tzinfo=tz), local.replace(tzinfo=tz, fold=1)
    if first.utcoffset() != second.utcoffset():
        # A DST gap or overlap: PostgreSQL picks one by its own rule; refuse, don't guess.
        raise UnsupportedValueFormat(
            f"ambiguous or skipped local time in {type_name} input; give a numeric offset"
        )
    delta = first.utcoffset()
    assert delta is not None
    return int(delta.total_seconds())


# Exactly what format_text prints: read on the hot DataRow path without the
# general parser (anything else falls back to it).
_CANONICAL_DATE_RE: Final = re.compile(rb"(\d{4,})-(\d\d)-(\d\d)( BC)?")
_CANONICAL_TIMESTAMP_RE: Final = re.compile(
    rb"(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(\+00)?( BC)?"
)


class _DateCodec(_TypedCodec[int]):
    """date: days since 2000-01-01 (int32), INT32_MIN/MAX for -infinity/infinity."""

    _SPECIAL: ClassVar[dict[bytes, int]] = {
        b"infinity": _DATE_NOEND,
        b"+infinity": _DATE_NOEND,
        b"-infinity": _DATE_NOBEGIN,
        b"epoch": _UNIX_EPOCH_JDATE - _POSTGRES_EPOCH_JDATE,
    }

    def parse_text(self, data: bytes) -> int:
        parsed = _parse_datetime(data, self.type_name, self._SPECIAL)
        if isinstance(parsed, int):
            return parsed
        if not 0 <= parsed.jd < _DATE_END_JULIAN:
            raise DatetimeFieldOverflow("date out of range")
        return parsed.jd - _POSTGRES_EPOCH_JDATE  # the time of day, if any, is dropped

    def decode_binary(self, data: bytes) -> int:
        if len(data) != 4:
            _binary_length_error(self.type_name, 4, len(data))
        days: int = _INT32.unpack(data)[0]
        if days not in (_DATE_NOBEGIN, _DATE_NOEND) and not (
            0 <= days + _POSTGRES_EPOCH_JDATE < _DATE_END_JULIAN
        ):
            raise DatetimeFieldOverflow("date out of range")
        return days

    def format_text(self, value: int) -> bytes:
        if value == _DATE_NOEND:
            return b"infinity"
        if value == _DATE_NOBEGIN:
            return b"-infinity"
        text, bc = _format_ymd(*_j2date(value + _POSTGRES_EPOCH_JDATE))
        return text + b" BC" if bc else text

    def encode_binary(self, value: int) -> bytes:
        return _INT32.pack(value)

    def parse_canonical(self, text: bytes) -> int:
        match = _CANONICAL_DATE_RE.fullmatch(text)
        if match is None:
            return self.parse_text(text)
        year, month, day, bc = match.groups()
        y, m, d = (1 - int(year) if bc else int(year)), int(month), int(day)
        jd = _date2j(y, m, d)
        if not (_valid_ymd(y, m, d) and 0 <= jd < _DATE_END_JULIAN):
            return self.parse_text(text)  # raises the proper error
        return jd - _POSTGRES_EPOCH_JDATE


class _TimestampCodec(_TypedCodec[int]):
    """timestamp[tz]: microseconds since 2000-01-01 00:00 (int64), UTC for tz.

    ``offset_required``: timestamptz text without a zone is refused instead of
    read as UTC (:func:`timestamptz_offset_required`).
    """

    def __init__(
        self, logical_type: str, type_name: str, with_zone: bool, offset_required: bool = False
    ) -> None:
        super().__init__(logical_type, type_name)
        self.with_zone = with_zone
        self.offset_required = offset_required
        self._special: dict[bytes, int] = {
            b"infinity": _TS_NOEND,
            b"+infinity": _TS_NOEND,
            b"-infinity": _TS_NOBEGIN,
            b"epoch": (_UNIX_EPOCH_JDATE - _POSTGRES_EPOCH_JDATE) * _USECS_PER_DAY,
        }

    def parse_text(self, data: bytes) -> int:
        parsed = _parse_datetime(data, self.type_name, self._special)
        if isinstance(parsed, int):
            return parsed
        if self.offset_required and parsed.offset is None:
            raise TimestamptzWithoutOffset(
                "timestamp with time zone text without a UTC offset is read in the "
                "session's TimeZone by PostgreSQL, which is not UTC here; pgseal needs "
                "an offset (+01, Z) or TimeZone 'UTC'"
            )
        value = (parsed.jd - _POSTGRES_EPOCH_JDATE) * _USECS_PER_DAY + parsed.usecs
        # A zone in timestamp-without-time-zone input is ignored, as PostgreSQL does;
        # timestamptz without one is read as UTC (pgseal's normalisation).
        if self.with_zone and parsed.offset:
            value -= parsed.offset * 1_000_000
        if not _MIN_TIMESTAMP <= value < _END_TIMESTAMP:
            raise DatetimeFieldOverflow(f"{self.type_name} out of range")
        return value

    def decode_binary(self, data: bytes) -> int:
        if len(data) != 8:
            _binary_length_error(self.type_name, 8, len(data))
        value: int = _INT64.unpack(data)[0]
        if value not in (_TS_NOBEGIN, _TS_NOEND) and not _MIN_TIMESTAMP <= value < _END_TIMESTAMP:
            raise DatetimeFieldOverflow(f"{self.type_name} out of range")
        return value

    def format_text(self, value: int) -> bytes:
        if value == _TS_NOEND:
            return b"infinity"
        if value == _TS_NOBEGIN:
            return b"-infinity"
        days, usecs = divmod(value, _USECS_PER_DAY)
        date_text, bc = _format_ymd(*_j2date(days + _POSTGRES_EPOCH_JDATE))
        seconds, fsec = divmod(usecs, 1_000_000)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        text = date_text + b" %02d:%02d:%02d" % (hour, minute, second)
        if fsec:
            text += (b".%06d" % fsec).rstrip(b"0")
        if self.with_zone:
            text += b"+00"
        return text + b" BC" if bc else text

    def encode_binary(self, value: int) -> bytes:
        return _INT64.pack(value)

    def parse_canonical(self, text: bytes) -> int:
        match = _CANONICAL_TIMESTAMP_RE.fullmatch(text)
        if match is None or (match[8] is not None) != self.with_zone:
            return self.parse_text(text)
        year, month, day, hour, minute, second, frac, _, bc = match.groups()
        y, m, d = (1 - int(year) if bc else int(year)), int(month), int(day)
        h, mi, sec = int(hour), int(minute), int(second)
        days = _date2j(y, m, d) - _POSTGRES_EPOCH_JDATE
        usecs = ((h * 60 + mi) * 60 + sec) * 1_000_000 + (int(frac.ljust(6, b"0")) if frac else 0)
        value = days * _USECS_PER_DAY + usecs
        if not (
            _valid_ymd(y, m, d)
            and h < 24
            and mi < 60
            and sec < 60
            and _MIN_TIMESTAMP <= value < _END_TIMESTAMP
        ):
            return self.parse_text(text)  # raises the proper error
        return value


# ----------------------------------------------------------------------- uuid

_UUID_RE: Final = re.compile(rb"(\{?)((?:[0-9a-fA-F]{4}-?){7}[0-9a-fA-F]{4})(\}?)")


class _UuidCodec(_TypedCodec[bytes]):
    def parse_text(self, data: bytes) -> bytes:
        # string_to_uuid: optional braces, a hyphen allowed after any 4 hex digits,
        # no surrounding blanks.
        match = _UUID_RE.fullmatch(data)
        if match is None or len(match[1]) != len(match[3]) or match[2].endswith(b"-"):
            _syntax_error(self.type_name, data)
        return binascii.unhexlify(match[2].replace(b"-", b""))

    def decode_binary(self, data: bytes) -> bytes:
        if len(data) != 16:
            _binary_length_error(self.type_name, 16, len(data))
        return data

    def format_text(self, value: bytes) -> bytes:
        h = value.hex().encode("ascii")
        return b"-".join((h[:8], h[8:12], h[12:16], h[16:20], h[20:]))

    def encode_binary(self, value: bytes) -> bytes:
        return value

    def parse_canonical(self, text: bytes) -> bytes:
        if len(text) == 36:
            try:
                return binascii.unhexlify(text.replace(b"-", b""))
            except binascii.Error:
                pass
        return self.parse_text(text)


# ---------------------------------------------------------------------- bytea

_HEX_BLANKS: Final = frozenset(b" \t\n\r")
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")


class _ByteaCodec(_TypedCodec[bytes]):
    def parse_text(self, data: bytes) -> bytes:
        _check_utf8(data, self.type_name)
        if data.startswith(b"\\x"):
            return self._parse_hex(data[2:])
        if b"\\" not in data:
            return data
        # Escape format: \\ is a backslash, \ooo (first digit 0-3) an octal byte.
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            byte = data[i]
            if byte != 0x5C:
                out.append(byte)
                i += 1
            elif data[i + 1 : i + 2] == b"\\":
                out.append(0x5C)
                i += 2
            elif re.fullmatch(rb"[0-3][0-7][0-7]", data[i + 1 : i + 4]):
                out.append(int(data[i + 1 : i + 4], 8))
                i += 4
            else:
                raise InvalidTextRepresentation("invalid input syntax for type bytea")
        return bytes(out)

    def _parse_hex(self, digits: bytes) -> bytes:
        # hex_decode: blanks between byte pairs are allowed, nowhere else.
        compact = digits.translate(None, b" \t\n\r")
        if len(compact) != len(digits):
            out = bytearray()
            i, n = 0, len(digits)
            while i < n:
                if digits[i] in _HEX_BLANKS:
                    i += 1
                    continue
                pair = digits[i : i + 2]
                self._check_hex_pair(pair)
                out.append(int(pair, 16))
                i += 2
            return bytes(out)
        try:
            return binascii.unhexlify(compact)
        except binascii.Error:
            pass  # find and name the fault below, outside this handler
        for i in range(0, len(compact), 2):
            self._check_hex_pair(compact[i : i + 2])
        raise InvalidParameterValue("invalid hexadecimal data in bytea input")

    @staticmethod
    def _check_hex_pair(pair: bytes) -> None:
        if pair[:1] and pair[0] not in _HEX_DIGITS:
            raise InvalidParameterValue("invalid hexadecimal digit in bytea input")
        if len(pair) < 2:
            raise InvalidParameterValue(
                "invalid hexadecimal data in bytea input: odd number of digits"
            )
        if pair[1] not in _HEX_DIGITS:
            raise InvalidParameterValue("invalid hexadecimal digit in bytea input")

    def decode_binary(self, data: bytes) -> bytes:
        return data

    def format_text(self, value: bytes) -> bytes:
        return b"\\x" + binascii.hexlify(value)

    def encode_binary(self, value: bytes) -> bytes:
        return value

    def parse_canonical(self, text: bytes) -> bytes:
        if text.startswith(b"\\x"):
            try:
                return binascii.unhexlify(text[2:])
            except binascii.Error:
                pass
        return self.parse_text(text)


# ---------------------------------------------------------------------- jsonb


class _JsonNumber(str):
    """A JSON number already in numeric's canonical text."""


def _json_number(literal: str) -> _JsonNumber:
    return _JsonNumber(_format_numeric(_parse_numeric(literal.encode("ascii"))).decode("ascii"))


def _json_constant(name: str) -> NoReturn:
    raise InvalidTextRepresentation("invalid input syntax for type json")


_JSON_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=dict,  # duplicate keys: the last one wins, as in jsonb
    parse_float=_json_number,
    parse_int=_json_number,
    parse_constant=_json_constant,
    strict=True,
)
_json_string: Final[Callable[[str], str]] = json.encoder.encode_basestring


def _jsonb_key_order(key: str) -> tuple[int, bytes]:
    encoded = key.encode("utf-8")
    return len(encoded), encoded  # jsonb sorts keys by length, then bytewise


def _check_json_string(text: str) -> None:
    if "\x00" in text:
        raise UntranslatableCharacter("unsupported Unicode escape sequence in jsonb (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidTextRepresentation("invalid Unicode surrogate escape in jsonb") from None


def _format_jsonb(value: Any) -> str:
    """JsonbToCString: sorted unique keys, ", " and ": " separators."""
    if isinstance(value, _JsonNumber):
        return str.__str__(value)
    if isinstance(value, str):
        _check_json_string(value)
        return _json_string(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_format_jsonb(v) for v in value) + "]"
    assert isinstance(value, dict)
    items = []
    for key in sorted(value, key=_jsonb_key_order):
        _check_json_string(key)
        items.append(_json_string(key) + ": " + _format_jsonb(value[key]))
    return "{" + ", ".join(items) + "}"


class _JsonbCodec(_TypedCodec[bytes]):
    """jsonb; the value is its canonical text. Binary = version byte 1 + text."""

    def parse_text(self, data: bytes) -> bytes:
        text = _check_utf8(data, self.type_name)
        try:
            parsed = _JSON_DECODER.decode(text)
            return _format_jsonb(parsed).encode("utf-8")
        except json.JSONDecodeError:
            raise InvalidTextRepresentation("invalid input syntax for type json") from None
        except RecursionError:
            raise NestingTooDeep("jsonb value nested too deeply") from None
        except ValueFormatError as exc:
            # a number that numeric refuses, or a bad escape; drop the chained context
            raise type(exc)(str(exc)) from None

    def decode_binary(self, data: bytes) -> bytes:
        if data[:1] != b"\x01":
            raise InvalidBinaryRepresentation("unsupported jsonb binary version")
        return self.parse_text(data[1:])

    def format_text(self, value: bytes) -> bytes:
        return value

    def encode_binary(self, value: bytes) -> bytes:
        return b"\x01" + value

    def parse_canonical(self, text: bytes) -> bytes:
        return text  # canonical jsonb text needs no re-parse to be framed


# --------------------------------------------------------------------- arrays

_MAXDIM: Final = 6
# "[lo:hi][lo:hi]=" (or "[hi]=") decoration in front of an array literal
_ARRAY_DIMENSIONS_RE: Final = re.compile(rb"((?:\[\s*[+-]?\d+\s*(?::\s*[+-]?\d+\s*)?\])+)\s*=\s*")
_ARRAY_QUOTE_TRIGGERS: Final = re.compile(rb'[{},"\\ \t\n\r\v\f]')


def _quote_array_element(element: bytes | None) -> bytes:
    """array_out's quoting of one element (delimiter ',')."""
    if element is None:
        return b"NULL"
    if element and element.lower() != b"null" and not _ARRAY_QUOTE_TRIGGERS.search(element):
        return element
    return b'"' + element.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class _TextArrayParser:
    """array_in for delimiter ',': nested braces, quotes, backslashes, NULL."""

    def __init__(self, data: bytes, type_name: str) -> None:
        self.data = data
        self.pos = 0
        self.type_name = type_name

    def fail(self, what: str) -> NoReturn:
        _check_utf8(self.data, self.type_name + "[]")
        raise InvalidTextRepresentation(
            f"malformed array literal for type {self.type_name}[]: {what}"
        )

    def skip_blanks(self) -> None:
        data, pos = self.data, self.pos
        while pos < len(data) and data[pos] in _BLANKS:
            pos += 1
        self.pos = pos

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def parse(self) -> list[bytes | None]:
        self.skip_blanks()
        declared: list[int] | None = None
        if self.peek() == ord("["):
            declared = self.parse_dimensions()
        if self.peek() != ord("{"):
            self.fail('array value must start with "{" or dimension information')
        elements: list[bytes | None] = []
        shape = self.parse_level(elements, 1)
        self.skip_blanks()
        if self.pos != len(self.data):
            self.fail("junk after closing right brace")
        if (
            declared is not None
            and declared != (shape or [0])
            and not (declared == [0] and not shape)
        ):
            self.fail("specified array dimensions do not match array contents")
        return elements

    def parse_dimensions(self) -> list[int]:
        match = _ARRAY_DIMENSIONS_RE.match(self.data, self.pos)
        if match is None:
            self.fail("invalid dimension information")
        sizes = []
        for lower, upper in re.findall(rb"\[\s*([+-]?\d+)\s*(?::\s*([+-]?\d+)\s*)?\]", match[1]):
            lo, hi = (1, int(lower)) if not upper else (int(lower), int(upper))
            if hi < lo - 1:
                self.fail("upper bound cannot be less than lower bound")
            sizes.append(hi - lo + 1)
        if len(sizes) > _MAXDIM:
            raise ProgramLimitExceeded(f"{self.type_name}[] has more than {_MAXDIM} dimensions")
        self.pos = match.end()
        return sizes

    def parse_level(self, out: list[bytes | None], depth: int) -> list[int]:
        """Parse one {...} at self.pos; return its shape (sizes per dimension)."""
        if depth > _MAXDIM:
            raise ProgramLimitExceeded(f"{self.type_name}[] has more than {_MAXDIM} dimensions")
        self.pos += 1  # the "{"
        self.skip_blanks()
        if self.peek() == ord("}"):
            self.pos += 1
            return [] if depth == 1 else self.fail("empty inner array")
        count = 0
        inner: list[int] | None = None
        scalars = False
        while True:
            self.skip_blanks()
            char = self.peek()
            if char == ord("{"):
                if scalars:
                    self.fail("unexpected { character")
                shape = self.parse_level(out, depth + 1)
                if inner is not None and shape != inner:
                    self.fail(
                        "multidimensional arrays must have sub-arrays with matching dimensions"
                    )
                inner = shape
            else:
                if inner is not None:
                    self.fail("unexpected array element")
                scalars = True
                out.append(self.parse_element())
            count += 1
            self.skip_blanks()
            char = self.peek()
            self.pos += 1
            if char == ord(","):
                continue
            if char == ord("}"):
                return [count, *(inner or [])]
            self.fail('unexpected character, expected "," or "}"')

    def parse_element(self) -> bytes | None:
        data = self.data
        out = bytearray()
        if self.peek() == ord('"'):
            self.pos += 1
            while True:
                if self.pos >= len(data):
                    self.fail("unexpected end of input")
                byte = data[self.pos]
                self.pos += 1
                if byte == 0x5C:  # backslash: take the next byte literally
                    if self.pos >= len(data):
                        self.fail("unexpected end of input")
                    out.append(data[self.pos])
                    self.pos += 1
                elif byte == 0x22:
                    return bytes(out)
                else:
                    out.append(byte)
        # Unquoted: trim blanks at both ends, but an escaped blank counts as content.
        escaped = False
        keep = 0  # length of `out` up to its last significant byte
        while True:
            if self.pos >= len(data):
                self.fail("unexpected end of input")
            byte = data[self.pos]
            if byte in (0x2C, 0x7D):  # "," or "}"
                break
            self.pos += 1
            if byte == 0x5C:
                if self.pos >= len(data):
                    self.fail("unexpected end of input")
                out.append(data[self.pos])
                self.pos += 1
                escaped = True
                keep = len(out)
            elif byte in (0x22, 0x7B):  # '"' or "{"
                self.fail("unexpected character in unquoted element")
            else:
                out.append(byte)
                if byte not in _BLANKS:
                    keep = len(out)
        element = bytes(out[:keep])
        if not element and not escaped:
            self.fail("unexpected delimiter")
        if not escaped and element.lower() == b"null":
            return None
        return element


def _parse_text_array(data: bytes, type_name: str) -> list[bytes | None]:
    return _TextArrayParser(data, type_name).parse()


def _parse_binary_array(data: bytes, element_oid: int, type_name: str) -> list[bytes | None]:
    """array_recv: header, dimensions, then length-prefixed elements (-1 = NULL)."""
    if len(data) < 12:
        raise InvalidBinaryRepresentation(f"binary {type_name}[] value is shorter than its header")
    ndim, flags, oid = _ARRAY_HEADER.unpack_from(data)
    if ndim < 0:
        raise InvalidBinaryRepresentation(f"invalid number of dimensions in binary {type_name}[]")
    if ndim > _MAXDIM:
        raise ProgramLimitExceeded(f"binary {type_name}[] has more than {_MAXDIM} dimensions")
    if flags not in (0, 1):
        raise InvalidBinaryRepresentation(f"invalid array flags in binary {type_name}[]")
    if oid != element_oid:
        raise DatatypeMismatch(
            f"binary array element type {oid} is not {type_name} ({element_oid})"
        )
    pos = 12
    if len(data) < pos + 8 * ndim:
        raise InvalidBinaryRepresentation(f"binary {type_name}[] value is truncated")
    count = 1 if ndim else 0
    for _ in range(ndim):
        size, lower = _ARRAY_DIM.unpack_from(data, pos)
        pos += 8
        if size < 0 or count * size > 134217727:  # MaxArraySize
            raise ProgramLimitExceeded(f"binary {type_name}[] size exceeds the maximum allowed")
        if size and lower + size - 1 > 2**31 - 1:
            raise ProgramLimitExceeded(f"binary {type_name}[] lower bound is too large")
        count *= size
    elements: list[bytes | None] = []
    for _ in range(count):
        if len(data) < pos + 4:
            raise InvalidBinaryRepresentation(f"binary {type_name}[] value is truncated")
        (length,) = _INT32.unpack_from(data, pos)
        pos += 4
        if length == -1:
            elements.append(None)
            continue
        if length < 0 or len(data) < pos + length:
            raise InvalidBinaryRepresentation(f"binary {type_name}[] value is truncated")
        elements.append(data[pos : pos + length])
        pos += length
    if pos != len(data):
        raise InvalidBinaryRepresentation(f"binary {type_name}[] value has trailing bytes")
    return elements


# ----------------------------------------------------------------- the registry

_VARCHAR_RE: Final = re.compile(r"(?:varchar|character varying)\s*\(\s*(\d+)\s*\)")


@cache
def _build(logical_type: str) -> ValueCodec:
    if logical_type == "text":
        return _TextCodec("text", "text")
    if logical_type == "varchar":
        return _TextCodec("varchar", "character varying")
    if logical_type == "integer":
        return _IntegerCodec("integer", "integer", _INT32)
    if logical_type == "bigint":
        return _IntegerCodec("bigint", "bigint", _INT64)
    if logical_type == "smallint":
        return _IntegerCodec("smallint", "smallint", _INT16)
    if logical_type == "numeric":
        return _NumericCodec("numeric", "numeric")
    if logical_type == "boolean":
        return _BooleanCodec("boolean", "boolean")
    if logical_type == "date":
        return _DateCodec("date", "date")
    if logical_type == "timestamp":
        return _TimestampCodec("timestamp", "timestamp", with_zone=False)
    if logical_type == "timestamptz":
        return _TimestampCodec("timestamptz", "timestamp with time zone", with_zone=True)
    if logical_type == "uuid":
        return _UuidCodec("uuid", "uuid")
    if logical_type == "jsonb":
        return _JsonbCodec("jsonb", "jsonb")
    if logical_type == "bytea":
        return _ByteaCodec("bytea", "bytea")
    raise UnknownLogicalType(f"pgseal has no codec for type {logical_type!r}")


#: real / double precision: (type name, digits PostgreSQL's float-to-numeric cast keeps).
_FLOAT_TYPES: Final = {700: ("real", 6), 701: ("double precision", 15)}
_FLOAT_INTEGER_TARGETS: Final = frozenset({"smallint", "integer", "bigint"})
_FLOAT8_TEXT_RE: Final = re.compile(
    rb"\s*([+-]?)(?:(\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(inf(?:inity)?)|(nan))\s*", re.IGNORECASE
)


class _FromFloat(ValueCodec):
    """A parameter the client typed real or double precision (pgjdbc's setDouble,
    psycopg's Python float), for a numeric or integer column.

    Postgres reads it as a float first and then applies the assignment cast:
    ``float8_numeric`` keeps 15 significant digits (``%.15g``; real: 6),
    ``float8_int4`` and its kin round half to even (``rint``) and check the range,
    NaN and infinities are numeric's own and out of range for the integers.
    Reading the text as the column's type instead would keep all 17 digits of
    ``1.2345678901234567`` and refuse ``2.5`` for an integer: not what Postgres
    stores. For any other column type it is refused (0A000). Text input of real
    is refused too (strtof's rounding is not Python's).
    """

    def __init__(self, declared: int, target: ValueCodec) -> None:
        self.declared = declared
        self.float_name, self.digits = _FLOAT_TYPES[declared]
        self.target = target
        self.logical_type = target.logical_type
        self.type_name = target.type_name
        self.oid = target.oid
        self.array_oid = target.array_oid
        self.type_size = target.type_size
        self.type_modifier = target.type_modifier

    def to_canonical(self, data: bytes, fmt: int) -> bytes:
        target = self.target
        if target.logical_type != "numeric" and target.logical_type not in _FLOAT_INTEGER_TARGETS:
            raise UnsupportedValueFormat(
                f"pgseal cannot convert a {self.float_name} value to {target.type_name} "
                "as PostgreSQL does; send it as text or as the column's type"
            )
        value = self._read(data, fmt)
        if target.logical_type == "numeric":
            if math.isnan(value):
                text = b"NaN"
            elif math.isinf(value):
                text = b"Infinity" if value > 0 else b"-Infinity"
            else:
                text = format(value, f".{self.digits}g").encode()
        else:
            if not math.isfinite(value):
                raise NumericValueOutOfRange(f"{target.type_name} out of range")
            text = str(round(value)).encode()  # round: half to even, as rint
        return target.to_canonical(text, TEXT_FORMAT)

    def _read(self, data: bytes, fmt: int) -> float:
        if fmt == BINARY_FORMAT:
            size = 4 if self.declared == 700 else 8
            if len(data) != size:
                _binary_length_error(self.float_name, size, len(data))
            value: float = struct.unpack(">f" if size == 4 else ">d", data)[0]
            return value
        if fmt != TEXT_FORMAT:
            raise InvalidParameterValue(f"unsupported format code {fmt} for a {self.float_name}")
        if self.declared == 700:
            raise UnsupportedValueFormat("pgseal reads a real parameter only in binary format")
        match = _FLOAT8_TEXT_RE.fullmatch(data)
        if match is None:
            raise InvalidTextRepresentation(f"invalid input syntax for type {self.float_name}")
        sign, digits, infinity, nan = match.groups()
        if nan is not None:
            return math.nan
        if infinity is not None:
            return -math.inf if sign == b"-" else math.inf
        value = float(data)
        if math.isinf(value) or (value == 0 and digits.strip(b"0.")):
            raise NumericValueOutOfRange(f"value is out of range for type {self.float_name}")
        return value

    def from_canonical(self, text: bytes, fmt: int) -> bytes:
        return self.target.from_canonical(text, fmt)


def float_param_codec(declared: int, target: ValueCodec) -> ValueCodec | None:
    """How a parameter typed ``declared`` is read for a ``target`` column, when it is
    real or double precision (:class:`_FromFloat`); None for any other type."""
    if declared not in _FLOAT_TYPES:
        return None
    return _FromFloat(declared, target)


@cache
def timestamptz_offset_required() -> ValueCodec:
    """timestamptz's codec for a session whose TimeZone is not UTC.

    PostgreSQL reads timestamptz text without a zone in the session's TimeZone;
    pgseal canonicalises before Postgres sees the value and reads it as UTC, so
    in such a session a value without an offset is refused
    (:class:`TimestamptzWithoutOffset`, 0A000) instead of stored shifted.
    Everything else is :func:`codec_for` ``("timestamptz")``'s.
    """
    return _TimestampCodec(
        "timestamptz", "timestamp with time zone", with_zone=True, offset_required=True
    )


#: TimeZone settings under which zone-less timestamptz text means UTC.
_UTC_ZONES: Final = frozenset(
    {"utc", "etc/utc", "uct", "etc/uct", "gmt", "etc/gmt", "gmt0", "etc/gmt0", "gmt+0",
     "gmt-0", "etc/gmt+0", "etc/gmt-0", "greenwich", "etc/greenwich", "universal",
     "etc/universal", "zulu", "etc/zulu", "z"}
)  # fmt: skip
_ZERO_OFFSET_ZONE_RE: Final = re.compile(r"(<[+-]?0{1,2}(:?00){0,2}>)?[+-]?0{1,2}(:?00){0,2}")


def is_utc_zone(setting: str) -> bool:
    """Whether a TimeZone setting (as Postgres reports it) is UTC at every instant."""
    name = setting.strip().lower()
    return name in _UTC_ZONES or _ZERO_OFFSET_ZONE_RE.fullmatch(name) is not None


@cache
def codec_for(logical_type: str) -> ValueCodec:
    """The codec of a logical type: a name in LOGICAL_TYPE_OIDS, an alias, varchar(n)."""
    name = " ".join(logical_type.lower().split())
    varchar = _VARCHAR_RE.fullmatch(name)
    if varchar is not None:
        length = int(varchar[1])
        if not 1 <= length <= 10485760:
            raise UnknownLogicalType("length for type varchar must be between 1 and 10485760")
        return _TextCodec("varchar", f"character varying({length})", max_chars=length)
    return _build(_ALIASES.get(name, name))


# ------------------------------------------------------------------- generator


def _main(argv: Sequence[str]) -> int:  # pragma: no cover - a maintainer's tool
    """Regenerate the type table in this file from a live server's pg_type."""
    import asyncio
    from pathlib import Path

    import asyncpg

    if len(argv) != 1:
        print("usage: python -m rules.pgtypes POSTGRES_DSN", file=sys.stderr)
        return 2

    async def fetch() -> list[tuple[str, int, int, int]]:
        conn = await asyncpg.connect(argv[0])
        try:
            rows = await conn.fetch(PG_TYPE_QUERY, list(_TYPNAMES.values()))
        finally:
            await conn.close()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    block = render_type_table(asyncio.run(fetch()))
    path = Path(__file__)
    source = path.read_text(encoding="utf-8")
    start = source.index("# BEGIN GENERATED TYPE TABLE")
    start = source.index("\n", start) + 1
    end = source.index("# END GENERATED TYPE TABLE")
    path.write_text(source[:start] + block + "\n" + source[end:], encoding="utf-8")
    print(f"wrote {len(_TYPNAMES)} types to {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1:]))
