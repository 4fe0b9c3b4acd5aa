"""Casts on values going into, or compared with, encrypted columns.

Postgres types ``$2::text`` as ``text`` whatever the column, then converts the
value to the column's type with an assignment cast (a write) or an implicit one
(a comparison), or fails (``column "x" is of type numeric but expression is of
type text``, 42804). pgseal seals and blind-indexes values itself, so it must do
the same conversion on the plaintext, exactly, or refuse before anything reaches
Postgres:

* :func:`check_assignment` / :func:`check_comparison` decide at plan time;
* :func:`convert_value` reads a value as the cast type (after the client's own
  declared type, if it differs) and converts it to the column's canonical text,
  at Bind (parameters) or at plan time (literals).

Conversions whose result depends on session settings pgseal does not track
(``TimeZone`` for timestamp <-> timestamptz and date -> timestamptz, ``DateStyle``
and ``bytea_output`` for output to text, boolean's ``true`` vs ``t``) are refused
(0A000) rather than guessed.
"""

from __future__ import annotations

from typing import Final

from sqlglot import exp

from rules.model import ProtectedColumn
from rules.pgtypes import (
    DatatypeMismatch,
    NumericValueOutOfRange,
    UnsupportedValueFormat,
    ValueCodec,
    codec_for,
)
from rules.plan_types import LOGICAL_TYPE_OIDS, ValueCast

__all__ = [
    "CastRefused",
    "check_assignment",
    "check_comparison",
    "convert_value",
    "value_cast",
]

_DTYPES: Final[dict[exp.DType, str]] = {
    exp.DataType.Type.TEXT: "text",
    exp.DataType.Type.VARCHAR: "varchar",
    exp.DataType.Type.INT: "integer",
    exp.DataType.Type.BIGINT: "bigint",
    exp.DataType.Type.SMALLINT: "smallint",
    exp.DataType.Type.DECIMAL: "numeric",
    exp.DataType.Type.BOOLEAN: "boolean",
    exp.DataType.Type.DATE: "date",
    exp.DataType.Type.TIMESTAMP: "timestamp",
    exp.DataType.Type.TIMESTAMPTZ: "timestamptz",
    exp.DataType.Type.UUID: "uuid",
    exp.DataType.Type.JSONB: "jsonb",
    exp.DataType.Type.VARBINARY: "bytea",
}

_INTEGERS: Final = ("smallint", "integer", "bigint")

#: Implicit casts (Postgres ``pg_cast`` context ``i``) that keep the value's
#: meaning: allowed in writes and in blind-index comparisons alike.
_IMPLICIT: Final = frozenset(
    {
        ("smallint", "integer"),
        ("smallint", "bigint"),
        ("smallint", "numeric"),
        ("integer", "bigint"),
        ("integer", "numeric"),
        ("bigint", "numeric"),
        ("text", "varchar"),
        ("varchar", "text"),
        ("date", "timestamp"),
    }
)

#: Assignment casts (context ``a``, and the I/O conversion to string types)
#: that pgseal does exactly: writes only.
_ASSIGNMENT: Final = frozenset(
    {
        ("integer", "smallint"),
        ("bigint", "smallint"),
        ("bigint", "integer"),
        ("numeric", "smallint"),
        ("numeric", "integer"),
        ("numeric", "bigint"),
        ("timestamp", "date"),
        *((src, dst) for src in (*_INTEGERS, "numeric", "uuid") for dst in ("text", "varchar")),
    }
)

#: Casts Postgres does in assignment (or implicitly) that pgseal cannot do exactly.
_NOT_EXACT: Final = frozenset(
    {
        ("date", "timestamptz"),
        ("timestamp", "timestamptz"),
        ("timestamptz", "timestamp"),
        ("timestamptz", "date"),
        *(
            (src, dst)
            for src in ("boolean", "date", "timestamp", "timestamptz", "jsonb", "bytea")
            for dst in ("text", "varchar")
        ),
    }
)


class CastRefused(Exception):
    """A cast pgseal will not apply; the message names column and cast, no value."""

    def __init__(self, message: str, hint: str | None, sqlstate: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.sqlstate = sqlstate


def value_cast(node: exp.Expr) -> ValueCast | None:
    """The cast on a value (through parentheses), None when it has none.

    >>> import sqlglot
    >>> value_cast(sqlglot.parse_one("$2::varchar(20)", read="postgres"))
    ValueCast(logical='varchar', written='varchar(20)', modifiers=(20,), array=False)
    >>> value_cast(sqlglot.parse_one("'x'::text::varchar", read="postgres")).logical is None
    True
    """
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Cast | exp.TryCast):
        return None
    to = node.to
    written = to.sql(dialect="postgres").lower()
    inner = node.this
    while isinstance(inner, exp.Paren):
        inner = inner.this
    if isinstance(inner, exp.Cast | exp.TryCast) or isinstance(node, exp.TryCast):
        return ValueCast(None, written)  # nested casts: refused as unknown
    array = to.this == exp.DataType.Type.ARRAY
    if array:
        element = to.expressions[0] if to.expressions else None
        if not isinstance(element, exp.DataType):
            return ValueCast(None, written, array=True)
        to = element
    logical = _DTYPES.get(to.this)
    modifiers = tuple(_modifier(p) for p in to.expressions)
    if modifiers and (array or not _valid_modifiers(logical, modifiers)):
        logical = None  # timestamp(p), a bad length: not done by pgseal
    return ValueCast(logical, written, modifiers, array)


def _modifier(param: exp.Expr) -> int:
    value = param.this if isinstance(param, exp.DataTypeParam) else param
    text = str(value.this) if isinstance(value, exp.Literal) else ""
    return int(text) if text.isdigit() else -1


def _valid_modifiers(logical: str | None, modifiers: tuple[int, ...]) -> bool:
    if logical == "varchar":
        return len(modifiers) == 1 and 1 <= modifiers[0] <= 10485760
    if logical == "numeric":
        precision, scale = modifiers[0], modifiers[1] if len(modifiers) == 2 else 0
        return len(modifiers) <= 2 and 1 <= precision <= 1000 and 0 <= scale <= precision
    return False


def _unknown(column: ProtectedColumn, cast: ValueCast) -> CastRefused:
    return CastRefused(
        f"pgseal: a cast to {cast.written} on a value for encrypted column "
        f"{column.qualified} is not supported",
        f"cast to {column.logical_type} or leave the cast out",
        "0A000",
    )


def check_assignment(column: ProtectedColumn, cast: ValueCast) -> None:
    """Refuse a cast value Postgres could not, or pgseal cannot exactly, store."""
    source, target = cast.logical, column.logical_type
    if source is None or cast.array:
        raise _unknown(column, cast)
    if source == target or (source, target) in _IMPLICIT or (source, target) in _ASSIGNMENT:
        return
    if (source, target) in _NOT_EXACT:
        raise CastRefused(
            f"pgseal: converting a {cast.written} value to {target} for encrypted column "
            f"{column.qualified} is not supported (pgseal cannot do it exactly)",
            f"send the value as {target}",
            "0A000",
        )
    raise CastRefused(
        f"pgseal: encrypted column {column.qualified} is of type {target} "
        f"but expression is of type {cast.written}",
        f"cast the value to {target}, or leave the cast out",
        "42804",
    )


def check_null_assignment(column: ProtectedColumn, cast: ValueCast) -> None:
    """``NULL::type`` written to ``column``: refused only where Postgres refuses.

    No value is converted, so a cast pgseal could not apply exactly to a value
    is fine here; a type Postgres cannot assign is 42804 as for any value, and a
    cast pgseal does not know is refused rather than guessed.
    """
    source, target = cast.logical, column.logical_type
    if source is not None and not cast.array and (source, target) in _NOT_EXACT:
        return
    check_assignment(column, cast)


def check_comparison(column: ProtectedColumn, cast: ValueCast, array: bool = False) -> None:
    """Refuse a cast value whose blind index would not find what Postgres finds."""
    source, target = cast.logical, column.logical_type
    if (
        source is not None
        and cast.array == array
        and (source == target or (source, target) in _IMPLICIT)
    ):
        return
    raise CastRefused(
        f"pgseal: comparison of encrypted column {column.qualified} ({target}) with a "
        f"value cast to {cast.written} is not supported",
        f"cast the value to {target}{'[]' if array else ''}, or leave the cast out",
        "0A000",
    )


def _column_codec(column: ProtectedColumn) -> ValueCodec:
    if column.logical_type == "varchar" and column.type_modifier:
        return codec_for(f"varchar({column.type_modifier})")
    return codec_for(column.logical_type)


def convert_value(
    column: ProtectedColumn,
    cast: ValueCast,
    data: bytes,
    fmt: int,
    declared_oid: int = 0,
) -> bytes:
    """``data`` (format ``fmt``) as cast, then as ``column``'s canonical text.

    ``declared_oid`` is the parameter type the client declared in Parse, when it
    is not the cast's: the value is read as that type and cast to the cast type
    (through text, as Postgres's I/O conversion does). Raises ValueFormatError
    (with the SQLSTATE Postgres would report) when the value does not convert.
    """
    assert cast.logical is not None
    if declared_oid and declared_oid != cast.oid:
        declared = _LOGICAL_OF_OID.get(declared_oid)
        if declared is None:
            if fmt == 1:
                raise UnsupportedValueFormat(
                    f"pgseal cannot read a binary value of type OID {declared_oid}"
                )
        else:
            data, fmt = codec_for(declared).to_canonical(data, fmt), 0
    canonical = codec_for(cast.logical).to_canonical(data, fmt)
    if cast.modifiers and cast.logical == "varchar":
        # An explicit cast to varchar(n) truncates, as Postgres does.
        canonical = canonical.decode()[: cast.modifiers[0]].encode()
    elif cast.modifiers:
        canonical = _numeric_typmod(canonical, *cast.modifiers)
    return _assign(column, cast.logical, canonical)


_LOGICAL_OF_OID: Final = {oid: name for name, oid in LOGICAL_TYPE_OIDS.items()}


def _assign(column: ProtectedColumn, source: str, canonical: bytes) -> bytes:
    target = column.logical_type
    codec = _column_codec(column)
    if source == target or (source, target) in _IMPLICIT:
        return codec.to_canonical(canonical, 0)
    if (source, target) not in _ASSIGNMENT:
        raise DatatypeMismatch(f"cannot convert {source} to {target}")  # plan refused it
    if source == "numeric" and target in _INTEGERS:
        return codec.to_canonical(_round_numeric(canonical, target), 0)
    if source == "timestamp" and target == "date":
        text = canonical.decode()
        if " " in text:  # 'YYYY-MM-DD HH:MM:SS[.f][ BC]' -> the date, keeping BC
            text = text.split(" ", 1)[0] + (" BC" if text.endswith(" BC") else "")
        return codec.to_canonical(text.encode(), 0)
    return codec.to_canonical(canonical, 0)  # integers narrowed (range checked), -> text


def _numeric_typmod(canonical: bytes, precision: int, scale: int = 0) -> bytes:
    """A cast to numeric(p, s): round to s places half away from zero, check p.

    >>> _numeric_typmod(b"-1.005", 5, 2), _numeric_typmod(b"7", 3, 1), _numeric_typmod(b"0.4", 3)
    (b'-1.01', b'7.0', b'0')
    """
    text = canonical.decode()
    if text == "NaN":
        return canonical
    if text.endswith("Infinity"):
        raise NumericValueOutOfRange("numeric field overflow")
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("+-").partition(".")
    scaled = int((whole or "0") + frac.ljust(scale, "0")[:scale])
    if len(frac) > scale and frac[scale] >= "5":
        scaled += 1
    if scaled >= 10**precision:
        raise NumericValueOutOfRange(
            f"numeric field overflow: a field with precision {precision}, scale {scale} "
            f"must round to an absolute value less than 10^{precision - scale}"
        )
    digits = str(scaled).rjust(scale + 1, "0")
    out = digits[: len(digits) - scale] + ("." + digits[len(digits) - scale :] if scale else "")
    return (("-" if negative and scaled else "") + out).encode()


def _round_numeric(canonical: bytes, target: str) -> bytes:
    """numeric -> integer as Postgres does it: round half away from zero."""
    text = canonical.decode()
    if text in ("NaN", "Infinity", "-Infinity"):
        name = "NaN" if text == "NaN" else "infinity"
        raise UnsupportedValueFormat(f"cannot convert {name} to {target}")
    sign = "-" if text.startswith("-") else ""
    whole, _, frac = text.lstrip("+-").partition(".")
    value = int(whole or "0") + (1 if frac[:1] >= "5" and frac else 0)
    if value.bit_length() > 64:
        raise NumericValueOutOfRange(f"{target} out of range")
    return f"{sign}{value}".encode() if value else b"0"
