"""The COPY row codecs without sockets: escaping, CSV quoting, arbitrary chunking."""

from __future__ import annotations

from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from proxy.copy_stream import (
    CopyOut,
    _csv_rows,
    _Field,
    _RowFormat,
    _text_escape,
    _text_unescape,
    unsupported_copy_options,
)
from proxy.encryption import SessionCrypto
from rules.model import ProtectedColumn

values = st.binary(max_size=40).filter(lambda b: b != b"\\N")
rows = st.lists(st.lists(st.one_of(st.none(), values), min_size=2, max_size=2), max_size=8)


@given(st.binary(max_size=200))
def test_text_escape_round_trips(value: bytes) -> None:
    escaped = _text_escape(value)
    assert b"\t" not in escaped
    assert b"\n" not in escaped
    assert _text_unescape(escaped) == value


def test_text_unescape_octal_hex_and_others() -> None:
    assert _text_unescape(b"a\\101\\x42\\q\\\\") == b"aABq\\"


@given(rows)
def test_text_rows_split_and_join(data: list[list[bytes | None]]) -> None:
    for row in data:
        line = _RowFormat.join_text(row)
        assert _RowFormat.split_text(line[:-1]) == row


@given(rows)
def test_csv_rows_round_trip(data: list[list[bytes | None]]) -> None:
    stream = b"".join(_RowFormat.join_csv(row) for row in data)
    parsed, consumed = _csv_rows(stream, final=True)
    assert consumed == len(stream)
    assert [[None if (v == b"" and not q) else v for v, q in r] for r in parsed] == data


class _Opener:
    """Stands in for the session's crypto: 'opens' a value by upper-casing it."""

    tenant = None

    def open_value(self, column: object, raw: bytes, server_fmt: int, client_fmt: int) -> bytes:
        return raw.upper()


@given(rows, st.lists(st.integers(min_value=1, max_value=7), max_size=30))
def test_copy_out_any_chunking_gives_the_same_stream(
    data: list[list[bytes | None]], cuts: list[int]
) -> None:
    column = ProtectedColumn("public", "t", "c", "text")
    stream = b"".join(_RowFormat.join_text(row) for row in data)
    whole = CopyOut(
        cast(SessionCrypto, cast(Any, _Opener())), "text", [_Field(1, column)], 2, False
    )
    expected = whole.feed(stream)
    chunked = CopyOut(
        cast(SessionCrypto, cast(Any, _Opener())), "text", [_Field(1, column)], 2, False
    )
    out = []
    pos = 0
    for cut in cuts:
        out.append(chunked.feed(stream[pos : pos + cut]))
        pos += cut
    out.append(chunked.feed(stream[pos:]))
    assert b"".join(out) == expected
    assert chunked.buffer == b""


def test_options_pgseal_does_not_interpret() -> None:
    assert (
        unsupported_copy_options("COPY t (a) FROM STDIN (FORMAT csv, DELIMITER ';')") == "DELIMITER"
    )
    assert unsupported_copy_options("COPY t (a) FROM STDIN WITH NULL 'x'") == "NULL"
    assert unsupported_copy_options("COPY t (a) FROM STDIN (FORMAT csv, HEADER)") is None
    assert unsupported_copy_options("COPY (SELECT a FROM t WHERE b IS NULL) TO STDOUT") is None
