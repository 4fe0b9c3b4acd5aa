"""COPY through pgseal: protected columns sealed or opened row by row in the stream.

``COPY t (cols) FROM STDIN`` and ``COPY t TO STDOUT`` / ``COPY (SELECT ...) TO
STDOUT`` on a protected table are handled in the three formats Postgres has:
``text`` (tab-separated, backslash escapes, ``\\N`` for NULL), ``csv`` (quotes,
empty unquoted field = NULL, optional header line) and ``binary`` (``PGCOPY``
signature, then length-prefixed fields). The options pgseal would have to
interpret differently (DELIMITER, NULL, QUOTE, ESCAPE, FORCE_*, ENCODING,
DEFAULT) are refused for protected tables rather than guessed.

A transform is fed each CopyData payload and returns the payload to forward.
``feed`` is all-or-nothing: when a key is missing it raises ``NeedKeys`` without
changing its state, so the session can load the keys and feed the same payload
again. CopyData boundaries need not match rows (clients cut the stream where
they like); a partial row waits in the transform's buffer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from crypto.envelope import armor
from proxy.encryption import NeedKeys, SessionCrypto, refusal
from rules.model import ProtectedColumn
from rules.pgtypes import ValueFormatError
from rules.plan_types import CopyInfo

__all__ = ["CopyIn", "CopyOut", "copy_transform", "unsupported_copy_options"]

BINARY_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"
_HEADER_LEN: Final = len(BINARY_SIGNATURE) + 8
_OPTIONS: Final = re.compile(
    r"\b(DELIMITER|NULL|QUOTE|ESCAPE|FORCE_QUOTE|FORCE_NOT_NULL|FORCE_NULL|ENCODING|DEFAULT"
    r"|FREEZE\s+\w+\s*,\s*DELIMITER)\b",
    re.IGNORECASE,
)
_HEADER: Final = re.compile(r"\bHEADER\b(?!\s+(?:false|off|0)\b)", re.IGNORECASE)
_TEXT_UNESCAPES: Final = {
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("v"): b"\v",
}
_TEXT_ESCAPES: Final = {
    ord("\\"): b"\\\\",
    ord("\t"): b"\\t",
    ord("\n"): b"\\n",
    ord("\r"): b"\\r",
    ord("\b"): b"\\b",
    ord("\f"): b"\\f",
    ord("\v"): b"\\v",
}
_NEEDS_TEXT_ESCAPE: Final = re.compile(rb"[\\\t\n\r\b\f\v]")
_NEEDS_CSV_QUOTE: Final = re.compile(rb'[,"\r\n]')


def unsupported_copy_options(sql: str) -> str | None:
    """The first COPY option pgseal does not interpret for a protected table, if any."""
    tail = sql.split(")", 1)[1] if sql.lstrip().upper().startswith("COPY (") else sql
    upper_from = re.search(r"\b(FROM|TO)\b", tail, re.IGNORECASE)
    options = tail[upper_from.end() :] if upper_from else tail
    m = _OPTIONS.search(options)
    return m.group(1).upper() if m else None


@dataclass(frozen=True, slots=True)
class _Field:
    """One column position of the COPY stream that pgseal transforms."""

    index: int
    column: ProtectedColumn


class _RowFormat:
    """Splitting and joining rows of one format; values are raw bytes (None = NULL)."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt

    # text -------------------------------------------------------------------------
    @staticmethod
    def split_text(line: bytes) -> list[bytes | None]:
        fields: list[bytes | None] = []
        for raw in _split_unescaped(line, 0x09):
            fields.append(None if raw == b"\\N" else _text_unescape(raw))
        return fields

    @staticmethod
    def join_text(fields: Sequence[bytes | None]) -> bytes:
        return b"\t".join(b"\\N" if f is None else _text_escape(f) for f in fields) + b"\n"

    # csv --------------------------------------------------------------------------
    @staticmethod
    def join_csv(fields: Sequence[bytes | None]) -> bytes:
        out = []
        for f in fields:
            if f is None:
                out.append(b"")
            elif f == b"" or f == b"\\." or _NEEDS_CSV_QUOTE.search(f):
                out.append(b'"' + f.replace(b'"', b'""') + b'"')
            else:
                out.append(f)
        return b",".join(out) + b"\n"


def _split_unescaped(line: bytes, delimiter: int) -> list[bytes]:
    """Split a text-format line on delimiters that no backslash escapes."""
    if b"\\" not in line:
        return line.split(bytes([delimiter]))
    fields: list[bytes] = []
    start = 0
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c == 0x5C:
            i += 2
            continue
        if c == delimiter:
            fields.append(line[start:i])
            start = i + 1
        i += 1
    fields.append(line[start:])
    return fields


def _text_unescape(raw: bytes) -> bytes:
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c != 0x5C or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = raw[i + 1]
        if nxt in _TEXT_UNESCAPES:
            out += _TEXT_UNESCAPES[nxt]
            i += 2
        elif 0x30 <= nxt <= 0x37:
            j = i + 1
            while j < n and j < i + 4 and 0x30 <= raw[j] <= 0x37:
                j += 1
            out.append(int(raw[i + 1 : j], 8) & 0xFF)
            i = j
        elif nxt == ord("x") and i + 2 < n and chr(raw[i + 2]) in "0123456789abcdefABCDEF":
            j = i + 2
            while j < n and j < i + 4 and chr(raw[j]) in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(raw[i + 2 : j], 16))
            i = j
        else:
            out.append(nxt)
            i += 2
    return bytes(out)


def _text_escape(value: bytes) -> bytes:
    if not _NEEDS_TEXT_ESCAPE.search(value):
        return value
    return b"".join(_TEXT_ESCAPES.get(b, bytes([b])) for b in value)


def _csv_rows(data: bytes, final: bool) -> tuple[list[list[tuple[bytes, bool]]], int]:
    """Complete CSV rows in ``data`` as (value, quoted) fields, and bytes consumed."""
    rows: list[list[tuple[bytes, bool]]] = []
    fields: list[tuple[bytes, bool]] = []
    value = bytearray()
    quoted = False
    in_quotes = False
    row_start = 0
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if in_quotes:
            if c == 0x22:
                if i + 1 < n and data[i + 1] == 0x22:
                    value.append(0x22)
                    i += 2
                    continue
                if i + 1 >= n and not final:
                    break  # "" split across chunks: decide with more data
                in_quotes = False
            else:
                value.append(c)
            i += 1
            continue
        if c == 0x22:
            in_quotes = quoted = True
        elif c == 0x2C:
            fields.append((bytes(value), quoted))
            value.clear()
            quoted = False
        elif c in (0x0A, 0x0D):
            fields.append((bytes(value), quoted))
            rows.append(fields)
            fields, quoted = [], False
            value.clear()
            if c == 0x0D and i + 1 < n and data[i + 1] == 0x0A:
                i += 1
            elif c == 0x0D and i + 1 >= n and not final:
                rows.pop()
                break
            row_start = i + 1
        else:
            value.append(c)
        i += 1
    return rows, row_start


class _Transform:
    """Shared state of CopyIn and CopyOut: format, buffer, protected positions."""

    def __init__(
        self,
        crypt: SessionCrypto,
        fmt: str,
        fields: Sequence[_Field],
        width: int,
        header: bool,
    ) -> None:
        self.crypt = crypt
        self.fmt = fmt
        self.fields = tuple(fields)
        self.width = width
        self.header_pending = header or fmt == "binary"
        self.buffer = b""
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """Transform one CopyData payload (all-or-nothing, see module docstring)."""
        buf = self.buffer + data if self.buffer else data
        out: list[bytes] = []
        header_pending = self.header_pending
        done = self.done
        pos = 0
        need_tenants: set[str] = set()
        need_keys: set[int] = set()
        if header_pending:
            if self.fmt == "binary":
                if len(buf) < _HEADER_LEN:
                    return self._keep(buf, out, header_pending, done)
                ext = int.from_bytes(buf[_HEADER_LEN - 4 : _HEADER_LEN], "big")
                if buf[: len(BINARY_SIGNATURE)] != BINARY_SIGNATURE:
                    raise refusal(
                        "pgseal: COPY BINARY data does not start with the PGCOPY signature",
                        sqlstate="22P04",
                    )
                if len(buf) < _HEADER_LEN + ext:
                    return self._keep(buf, out, header_pending, done)
                pos = _HEADER_LEN + ext
                out.append(buf[:pos])
            else:
                nl = buf.find(b"\n")
                if nl < 0:
                    return self._keep(buf, out, header_pending, done)
                pos = nl + 1
                out.append(self.header_line(buf[:pos]))
            header_pending = False
        rows, consumed = self._rows(buf, pos, done)
        for row in rows:
            if row is None:  # end marker / binary trailer: pass on as is
                done = True
                continue
            try:
                out.append(self.row(row))
            except NeedKeys as need:
                need_tenants |= need.tenants
                need_keys |= need.key_ids
        if need_tenants or need_keys:
            raise NeedKeys(frozenset(need_tenants), frozenset(need_keys))
        if done and consumed < len(buf):
            out.append(buf[consumed:])
            consumed = len(buf)
        return self._keep(buf[consumed:], out, header_pending, done)

    def _keep(self, rest: bytes, out: list[bytes], header_pending: bool, done: bool) -> bytes:
        self.buffer = rest
        self.header_pending = header_pending
        self.done = done
        return b"".join(out)

    def header_line(self, line: bytes) -> bytes:
        return line

    def _rows(
        self, buf: bytes, pos: int, done: bool
    ) -> tuple[list[list[bytes | None] | None], int]:
        """Complete rows from ``pos`` as field lists; None marks the end of data."""
        rows: list[list[bytes | None] | None] = []
        if done:
            return rows, pos
        if self.fmt == "binary":
            n = len(buf)
            while pos + 2 <= n:
                count = int.from_bytes(buf[pos : pos + 2], "big", signed=True)
                if count == -1:
                    rows.append(None)
                    out = pos + 2
                    rows_end = out
                    return rows, rows_end
                p = pos + 2
                fields: list[bytes | None] = []
                complete = True
                for _ in range(count):
                    if p + 4 > n:
                        complete = False
                        break
                    length = int.from_bytes(buf[p : p + 4], "big", signed=True)
                    p += 4
                    if length == -1:
                        fields.append(None)
                        continue
                    if p + length > n:
                        complete = False
                        break
                    fields.append(buf[p : p + length])
                    p += length
                if not complete:
                    break
                rows.append(fields)
                pos = p
            return rows, pos
        if self.fmt == "csv":
            parsed, consumed = _csv_rows(buf[pos:], final=False)
            for fields_q in parsed:
                if len(fields_q) == 1 and fields_q[0] == (b"\\.", False):
                    rows.append(None)
                    break
                rows.append([None if (v == b"" and not q) else v for v, q in fields_q])
            return rows, pos + consumed
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                return rows, pos
            line = buf[pos:nl]
            if line.endswith(b"\r"):
                line = line[:-1]
            if line == b"\\.":
                rows.append(None)
                return rows, nl + 1
            rows.append(_RowFormat.split_text(line))
            pos = nl + 1

    def join(self, fields: Sequence[bytes | None]) -> bytes:
        if self.fmt == "binary":
            parts = [len(fields).to_bytes(2, "big")]
            for f in fields:
                if f is None:
                    parts.append(b"\xff\xff\xff\xff")
                else:
                    parts.append(len(f).to_bytes(4, "big") + f)
            return b"".join(parts)
        if self.fmt == "csv":
            return _RowFormat.join_csv(fields)
        return _RowFormat.join_text(fields)

    def row(self, fields: list[bytes | None]) -> bytes:
        raise NotImplementedError

    def check_width(self, fields: Sequence[bytes | None]) -> None:
        if len(fields) != self.width:
            raise refusal(
                f"pgseal: COPY row has {len(fields)} columns, expected {self.width}",
                sqlstate="22P04",
            )


class CopyIn(_Transform):
    """``COPY t (cols) FROM STDIN``: seal protected fields, append blind indexes."""

    def __init__(
        self,
        crypt: SessionCrypto,
        fmt: str,
        fields: Sequence[_Field],
        width: int,
        header: bool,
        tenant_index: int | None,
        tenant_type_oid: int,
        blind: Sequence[_Field],
        appended_tenant: str | None = None,
    ) -> None:
        super().__init__(crypt, fmt, fields, width, header)
        self.tenant_index = tenant_index
        self.tenant_type_oid = tenant_type_oid
        self.blind = tuple(blind)
        #: The tenant column pgseal appended (the client's list lacks it).
        self.appended_tenant = appended_tenant
        self.blind_names: tuple[bytes, ...] = tuple(
            (f.column.searchable or "").encode() for f in blind
        ) + ((appended_tenant.encode(),) if appended_tenant else ())

    def header_line(self, line: bytes) -> bytes:
        if not self.blind_names:
            return line
        body = line.rstrip(b"\r\n")
        sep = b"," if self.fmt == "csv" else b"\t"
        return body + b"".join(sep + name for name in self.blind_names) + line[len(body) :]

    def _tenant(self, fields: Sequence[bytes | None], column: ProtectedColumn) -> str:
        crypt = self.crypt
        if self.tenant_index is None:
            tenant = crypt.tenant
            if tenant is None:
                raise refusal(
                    f"pgseal: cannot tell which business owns this write to {column.qualified}",
                    "COPY the tenant column too, or SET pgseal.tenant = '<business id>'",
                    sqlstate="42501",
                )
            return tenant
        raw = fields[self.tenant_index]
        if raw is None:
            raise refusal(
                f"pgseal: the business (tenant column) of a COPY row into {column.qualified} "
                "is NULL",
                sqlstate="23502",
            )
        fmt = 1 if self.fmt == "binary" else 0
        try:
            tenant = crypt.tenant_text(raw, fmt, self.tenant_type_oid)
        except (ValueFormatError, UnicodeDecodeError) as exc:
            raise refusal(
                f"pgseal: invalid business id in COPY into {column.qualified}: {exc}",
                sqlstate="22P02",
            ) from None
        session = crypt.tenant
        if session is not None and session != tenant:
            raise refusal(
                f"pgseal: this session belongs to another business than a COPY row "
                f"into {column.qualified}",
                sqlstate="42501",
            )
        return tenant

    def row(self, fields: list[bytes | None]) -> bytes:
        self.check_width(fields)
        wire = 1 if self.fmt == "binary" else 0
        canon: dict[int, bytes] = {}
        tenant: str | None = None
        for f in self.fields:
            raw = fields[f.index]
            if raw is None:
                continue
            if tenant is None:
                tenant = self._tenant(fields, f.column)
            try:
                canonical = self.crypt.value_codec(f.column).to_canonical(raw, wire)
            except ValueFormatError as exc:
                raise refusal(
                    f"pgseal: invalid value for encrypted column {f.column.qualified} in "
                    f"COPY: {exc}",
                    sqlstate=exc.sqlstate,
                ) from None
            canon[f.index] = canonical
            fields[f.index] = self._stored(f.column, self.crypt.seal(f.column, tenant, canonical))
        extra: list[bytes | None] = []
        for b in self.blind:
            canonical_b = canon.get(b.index)
            if canonical_b is None:
                extra.append(None)
                continue
            assert tenant is not None
            extra.append(self.crypt.blind(b.column, tenant, canonical_b))
            if self.fmt != "binary":
                extra[-1] = b"\\x" + (extra[-1] or b"").hex().encode()
        if self.appended_tenant is not None:
            # Every row names its business, those with no protected value too.
            tenant = tenant or self._tenant(fields, self.fields[0].column)
            try:
                extra.append(self.crypt.tenant_wire(tenant, 1 if wire else 0, self.tenant_type_oid))
            except ValueFormatError as exc:
                raise refusal(
                    f"pgseal: invalid business id for COPY into {self.fields[0].column.qualified}:"
                    f" {exc}",
                    sqlstate="22P02",
                ) from None
        return self.join([*fields, *extra])

    def _stored(self, column: ProtectedColumn, envelope: bytes) -> bytes:
        if column.storage == "text":
            return armor(envelope).encode("ascii")
        if self.fmt == "binary":
            return envelope
        return b"\\x" + envelope.hex().encode()


class CopyOut(_Transform):
    """``COPY ... TO STDOUT``: open protected fields in the stream."""

    def row(self, fields: list[bytes | None]) -> bytes:
        self.check_width(fields)
        wire = 1 if self.fmt == "binary" else 0
        missing: set[int] = set()
        for f in self.fields:
            raw = fields[f.index]
            if raw is None:
                continue
            try:
                fields[f.index] = self.crypt.open_value(f.column, raw, wire, wire)
            except NeedKeys as need:
                missing |= need.key_ids
        if missing:
            raise NeedKeys(key_ids=frozenset(missing))
        return self.join(fields)


def copy_transform(crypt: SessionCrypto, info: CopyInfo, sql: str) -> CopyIn | CopyOut | None:
    """The transform for one COPY statement (None: it moves no protected column)."""
    catalog = crypt.enc.catalog
    header = info.format == "csv" and bool(_HEADER.search(sql))
    if info.table is None:  # COPY (query) TO
        outputs = info.outputs or ()
        fields = [_Field(i, c) for i, c in enumerate(outputs) if c is not None]
        if not fields:
            return None
        return CopyOut(crypt, info.format, fields, len(outputs), header)
    table = crypt.enc.rules.tables[info.table]
    table_info = catalog.tables.get(info.table)
    if info.columns is not None:
        names = list(info.columns)
    elif table_info is not None:
        names = [name for name, _, _ in table_info.columns]
    else:
        raise refusal(f"pgseal: the columns of {info.table} are unknown; name them in COPY")
    if info.direction == "to":
        fields = [_Field(i, c) for i, n in enumerate(names) if (c := table.column(n)) is not None]
        if not fields:
            return None
        return CopyOut(crypt, info.format, fields, len(names), header)
    # FROM: the planner appended one blind-index name per searchable column.
    blind_names = {c.searchable for c in table.columns.values() if c.searchable}
    if info.appended_tenant:
        names = names[:-1]  # the tenant column pgseal appended: the rows lack it
    given = [n for n in names if n not in blind_names]
    fields = [_Field(i, c) for i, n in enumerate(given) if (c := table.column(n)) is not None]
    if not fields:
        return None
    blind = [f for f in fields if f.column.searchable]
    tenant_index = given.index(table.tenant_column) if table.tenant_column in given else None
    return CopyIn(
        crypt,
        info.format,
        fields,
        len(given),
        header,
        tenant_index,
        table_info.tenant_type_oid if table_info else 0,
        blind,
        table.tenant_column if info.appended_tenant else None,
    )
