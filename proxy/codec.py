"""Sans-IO codec for the PostgreSQL v3 wire protocol (3.0 and 3.2).

Bytes in, messages out; messages in, bytes out. Nothing here does I/O.

A proxy forwards far more messages than it inspects, so framing and decoding
are separate steps. ``frames`` walks a buffer and yields ``(type, start, end)``
offsets for every complete message without copying anything; the session
decodes only the few types it acts on (with the ``decode_*`` functions) and
forwards everything else as the original bytes. Encoders build the messages
pgseal sends itself (errors, its own BackendKeyData, rewritten statements).

Message layouts follow the protocol chapter of the PostgreSQL documentation
("Message Formats"). Every decoder raises ``ProtocolViolation`` on a malformed
body, never IndexError or struct.error, so a hostile peer cannot crash a session.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CANCEL_REQUEST_CODE",
    "GSSENC_REQUEST_CODE",
    "PROTOCOL_3_0",
    "PROTOCOL_3_2",
    "SSL_REQUEST_CODE",
    "Bind",
    "CancelRequest",
    "Close",
    "Describe",
    "ErrorFields",
    "Execute",
    "FieldDescription",
    "MessageTooLong",
    "NegotiateProtocolVersion",
    "Parse",
    "ProtocolViolation",
    "SpecialRequest",
    "StartupMessage",
    "decode_bind",
    "decode_close",
    "decode_data_row",
    "decode_describe",
    "decode_error_fields",
    "decode_execute",
    "decode_negotiate_protocol_version",
    "decode_parameter_description",
    "decode_parse",
    "decode_query",
    "decode_row_description",
    "decode_startup",
    "encode_bind",
    "encode_data_row",
    "encode_error",
    "encode_parameter_description",
    "encode_parse",
    "encode_row_description",
    "frames",
    "length_error",
    "message",
    "rebind",
]

PROTOCOL_3_0 = 196608  # 3 << 16
PROTOCOL_3_2 = 196610  # 3 << 16 | 2
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_NULL_LENGTH = b"\xff\xff\xff\xff"  # a NULL value's Int32 length, -1
_HDR = struct.Struct("!cI")
_FIELD = struct.Struct("!IhIhih")  # table oid, attnum, type oid, typlen, typmod, format


class ProtocolViolation(Exception):
    """A peer sent bytes that are not a valid protocol message (SQLSTATE 08P01)."""

    sqlstate = "08P01"


class MessageTooLong(ProtocolViolation):
    """A message declares a length beyond the configured limit."""

    def __init__(self, declared: int, limit: int) -> None:
        super().__init__(f"message of {declared} bytes exceeds the limit of {limit} bytes")
        self.declared = declared
        self.limit = limit


# -- framing -----------------------------------------------------------------


def frames(
    buf: bytes | memoryview, start: int = 0, limit: int = 1 << 30
) -> Iterator[tuple[int, int, int]]:
    """Yield ``(type, start, end)`` of each complete typed message in ``buf``.

    ``end`` is exclusive; the body is ``buf[start + 5 : end]``. Iteration stops
    at the first incomplete message: the caller keeps ``buf[last_end:]``.
    A declared length above ``limit`` (or below 4) raises before any of the
    body is awaited, so a huge length is refused instead of buffered.

    >>> list(frames(b"Z\\x00\\x00\\x00\\x05I1\\x00\\x00"))
    [(90, 0, 6)]
    """
    size = len(buf)
    unpack = _U32.unpack_from
    pos = start
    while pos + 5 <= size:
        (length,) = unpack(buf, pos + 1)
        if length < 4 or length > limit:
            raise length_error(length, limit)
        end = pos + 1 + length
        if end > size:
            return
        yield buf[pos], pos, end
        pos = end


def length_error(length: int, limit: int) -> ProtocolViolation:
    """What a declared length outside ``4..limit`` is; for every framing loop.

    The session's hot loops frame inline (a generator per read costs more
    than the framing itself) and share this so the errors stay the same.
    """
    if length < 4:
        return ProtocolViolation(f"invalid message length {length}")
    return MessageTooLong(length, limit)


#: ``unpack_from`` of a message's Int32 length, for the inline framing loops.
unpack_length = _U32.unpack_from


def message(kind: bytes, body: bytes = b"") -> bytes:
    """Frame one typed message.

    >>> message(b"Z", b"I")
    b'Z\\x00\\x00\\x00\\x05I'
    """
    return kind + _U32.pack(len(body) + 4) + body


def _cstr(value: str) -> bytes:
    # surrogateescape: names read from the wire with it go back byte for byte.
    raw = value.encode(errors="surrogateescape")
    if 0 in raw:  # (an int needle: no TypeError made and dropped first)
        raise ProtocolViolation("string contains a NUL byte")
    return raw + b"\x00"


class _Reader:
    """Bounds-checked cursor over a message body."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes | memoryview, start: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = start
        self.end = len(buf) if end is None else end

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.end:
            raise ProtocolViolation("message body is truncated")

    def int32(self) -> int:
        self._need(4)
        (value,) = _I32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(value)

    def uint32(self) -> int:
        self._need(4)
        (value,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(value)

    def int16(self) -> int:
        self._need(2)
        (value,) = _I16.unpack_from(self.buf, self.pos)
        self.pos += 2
        return int(value)

    def uint16(self) -> int:
        self._need(2)
        (value,) = _U16.unpack_from(self.buf, self.pos)
        self.pos += 2
        return int(value)

    def byte(self) -> int:
        self._need(1)
        value = self.buf[self.pos]
        self.pos += 1
        return int(value)

    def raw(self, n: int) -> bytes:
        self._need(n)
        value = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return value

    def cstr_bytes(self) -> bytes:
        buf = self.buf
        if isinstance(buf, memoryview):
            buf = bytes(buf[self.pos : self.end])
            offset = 0
        else:
            offset = self.pos
        nul = buf.find(b"\x00", offset, offset + (self.end - self.pos))
        if nul < 0:
            raise ProtocolViolation("string is not NUL-terminated")
        value = bytes(buf[offset:nul])
        self.pos += nul - offset + 1
        return value

    def cstr(self, errors: str = "strict") -> str:
        raw = self.cstr_bytes()
        try:
            return raw.decode(errors=errors)
        except UnicodeDecodeError as exc:
            raise ProtocolViolation("string is not valid UTF-8") from exc

    def rest(self) -> bytes:
        value = bytes(self.buf[self.pos : self.end])
        self.pos = self.end
        return value

    def done(self) -> None:
        if self.pos != self.end:
            raise ProtocolViolation("message has trailing bytes")


# -- untyped first message -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartupMessage:
    protocol: int
    params: dict[str, str]

    def encode(self) -> bytes:
        body = _U32.pack(self.protocol)
        body += b"".join(_cstr(k) + _cstr(v) for k, v in self.params.items()) + b"\x00"
        return _U32.pack(len(body) + 4) + body


@dataclass(frozen=True, slots=True)
class CancelRequest:
    pid: int
    secret: bytes = field(repr=False)

    def encode(self) -> bytes:
        body = _U32.pack(CANCEL_REQUEST_CODE) + _U32.pack(self.pid) + self.secret
        return _U32.pack(len(body) + 4) + body


@dataclass(frozen=True, slots=True)
class SpecialRequest:
    """SSLRequest or GSSENCRequest (``code`` tells which)."""

    code: int

    def encode(self) -> bytes:
        return _U32.pack(8) + _U32.pack(self.code)


def startup_length(buf: bytes, limit: int = 10_000) -> int | None:
    """Length of the untyped first message if ``buf`` holds all of it, else None."""
    if len(buf) < 4:
        return None
    (length,) = _U32.unpack_from(buf, 0)
    if length < 8 or length > limit:
        raise ProtocolViolation(f"invalid startup packet length {length}")
    return length if len(buf) >= length else None


def decode_startup(packet: bytes) -> StartupMessage | CancelRequest | SpecialRequest:
    """Decode a complete untyped first message (length prefix included)."""
    reader = _Reader(packet, 4)
    code = reader.uint32()
    if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
        reader.done()
        return SpecialRequest(code)
    if code == CANCEL_REQUEST_CODE:
        pid = reader.uint32()
        secret = reader.rest()
        if not 4 <= len(secret) <= 256:
            raise ProtocolViolation("invalid cancel key length")
        return CancelRequest(pid, secret)
    if code >> 16 != 3:
        raise ProtocolViolation(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}")
    params: dict[str, str] = {}
    while True:
        key = reader.cstr()
        if not key:
            break
        params[key] = reader.cstr()
    reader.done()
    if "user" not in params:
        raise ProtocolViolation("no PostgreSQL user name specified in startup packet")
    return StartupMessage(code, params)


# -- extended query messages ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parse:
    name: str
    query: str
    param_types: tuple[int, ...]

    def encode(self) -> bytes:
        return encode_parse(self.name, self.query, self.param_types)


def decode_parse(body: bytes | memoryview, errors: str = "strict") -> Parse:
    """``errors="surrogateescape"`` reads text in another encoding losslessly."""
    reader = _Reader(body)
    name = reader.cstr(errors)
    query = reader.cstr(errors)
    count = reader.uint16()
    types = tuple(reader.uint32() for _ in range(count))
    reader.done()
    return Parse(name, query, types)


def encode_parse(name: str, query: str, param_types: Sequence[int] = ()) -> bytes:
    body = _cstr(name) + _cstr(query) + _U16.pack(len(param_types))
    body += b"".join(_U32.pack(t) for t in param_types)
    return message(b"P", body)


@dataclass(slots=True)
class Bind:
    portal: str
    statement: str
    param_formats: list[int]
    params: list[bytes | None] = field(repr=False)
    result_formats: list[int]
    #: From decode_bind: the body, the end of its two names and the start of
    #: its result formats, which ``rebind`` copies as they came.
    body: bytes = field(default=b"", repr=False, compare=False)
    names_end: int = field(default=0, repr=False, compare=False)
    results_start: int = field(default=0, repr=False, compare=False)

    def param_format(self, index: int) -> int:
        """The format code of parameter ``index`` (protocol's 0/1/N rule)."""
        formats = self.param_formats
        if not formats:
            return 0
        return formats[0] if len(formats) == 1 else formats[index]

    def encode(self) -> bytes:
        return encode_bind(
            self.portal, self.statement, self.param_formats, self.params, self.result_formats
        )


def decode_bind(body: bytes | memoryview) -> Bind:
    # Hot with encrypted writes (every Bind of a statement that seals): the
    # names found with bytes.find, the format codes one unpack each, the
    # parameters framed inline as in decode_data_row. Same errors as the
    # _Reader calls they replace.
    if isinstance(body, memoryview):
        body = bytes(body)
    end = len(body)
    first = body.find(b"\x00")
    if first < 0:
        raise ProtocolViolation("string is not NUL-terminated")
    try:
        portal = body[:first].decode()
        second = body.find(b"\x00", first + 1)
        if second < 0:
            raise ProtocolViolation("string is not NUL-terminated")
        statement = body[first + 1 : second].decode()
    except UnicodeDecodeError as exc:
        raise ProtocolViolation("string is not valid UTF-8") from exc
    pos = second + 1
    if pos + 2 > end:
        raise ProtocolViolation("message body is truncated")
    (nformats,) = _U16.unpack_from(body, pos)
    pos += 2
    stop = pos + 2 * nformats + 2
    if stop > end:
        raise ProtocolViolation("message body is truncated")
    *formats, count = struct.unpack_from(f"!{nformats}hH", body, pos)
    pos = stop
    if nformats not in (0, 1, count):
        raise ProtocolViolation(
            f"bind message has {nformats} parameter formats but {count} parameters"
        )
    for f in formats:
        if f != 0 and f != 1:
            raise ProtocolViolation("unsupported parameter format code")
    params: list[bytes | None] = []
    append = params.append
    unpack = _I32.unpack_from
    try:
        for _ in range(count):
            (length,) = unpack(body, pos)  # struct.error past the end
            pos += 4
            if length < 0:
                if length != -1:
                    raise ProtocolViolation("message body is truncated")
                append(None)
                continue
            stop = pos + length
            if stop > end:
                raise ProtocolViolation("message body is truncated")
            append(body[pos:stop])
            pos = stop
        (nresults,) = _U16.unpack_from(body, pos)
        results = list(struct.unpack_from(f"!{nresults}h", body, pos + 2))
    except struct.error:
        raise ProtocolViolation("message body is truncated") from None
    if pos + 2 + 2 * nresults != end:
        raise ProtocolViolation("message has trailing bytes")
    return Bind(portal, statement, formats, params, results, body, second + 1, pos)


def _int16s(reader: _Reader, count: int) -> list[int]:
    """``count`` Int16s at the reader's position, in one unpack."""
    reader._need(2 * count)
    values = list(struct.unpack_from(f"!{count}h", reader.buf, reader.pos))
    reader.pos += 2 * count
    return values


def encode_bind(
    portal: str,
    statement: str,
    param_formats: Sequence[int],
    params: Sequence[bytes | None],
    result_formats: Sequence[int],
) -> bytes:
    nresults = len(result_formats)
    results = struct.pack(f"!H{nresults}h", nresults, *result_formats)
    return _bind(_cstr(portal) + _cstr(statement), param_formats, params, results)


def rebind(bind: Bind, param_formats: Sequence[int], params: Sequence[bytes | None]) -> bytes:
    """A decoded Bind with other parameters; names and result formats copied as they came."""
    body = bind.body
    if not body:
        return encode_bind(bind.portal, bind.statement, param_formats, params, bind.result_formats)
    return _bind(body[: bind.names_end], param_formats, params, body[bind.results_start :])


def _bind(
    names: bytes, formats: Sequence[int], params: Sequence[bytes | None], results: bytes
) -> bytes:
    nformats = len(formats)
    parts = [names, struct.pack(f"!H{nformats}hH", nformats, *formats, len(params))]
    append = parts.append
    pack = _I32.pack
    for value in params:
        if value is None:
            append(_NULL_LENGTH)
        else:
            append(pack(len(value)))
            append(value)
    append(results)
    return message(b"B", b"".join(parts))


@dataclass(frozen=True, slots=True)
class Describe:
    kind: str  # "S" statement or "P" portal
    name: str


def decode_describe(body: bytes | memoryview) -> Describe:
    reader = _Reader(body)
    kind = chr(reader.byte())
    if kind not in ("S", "P"):
        raise ProtocolViolation(f"invalid Describe kind {kind!r}")
    name = reader.cstr()
    reader.done()
    return Describe(kind, name)


Close = Describe  # same layout: kind byte + name


def decode_close(body: bytes | memoryview) -> Describe:
    return decode_describe(body)


@dataclass(frozen=True, slots=True)
class Execute:
    portal: str
    max_rows: int


def decode_execute(body: bytes | memoryview) -> Execute:
    reader = _Reader(body)
    portal = reader.cstr()
    max_rows = reader.int32()
    reader.done()
    return Execute(portal, max_rows)


def decode_query(body: bytes | memoryview, errors: str = "strict") -> str:
    """``errors="surrogateescape"`` reads text in another encoding losslessly."""
    reader = _Reader(body)
    query = reader.cstr(errors)
    reader.done()
    return query


# -- results -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldDescription:
    name: bytes
    table_oid: int
    attnum: int
    type_oid: int
    typlen: int
    typmod: int
    format: int


def decode_row_description(body: bytes | memoryview) -> list[FieldDescription]:
    reader = _Reader(body)
    fields = []
    for _ in range(reader.uint16()):
        name = reader.cstr_bytes()
        reader._need(18)
        values = _FIELD.unpack_from(reader.buf, reader.pos)
        reader.pos += 18
        fields.append(FieldDescription(name, *values))
    reader.done()
    return fields


def encode_row_description(fields: Sequence[FieldDescription]) -> bytes:
    parts = [_U16.pack(len(fields))]
    for f in fields:
        parts.append(f.name + b"\x00")
        parts.append(_FIELD.pack(f.table_oid, f.attnum, f.type_oid, f.typlen, f.typmod, f.format))
    return message(b"T", b"".join(parts))


def decode_data_row(body: bytes | memoryview) -> list[bytes | None]:
    # Hot with encrypted results (every row of a protected result), so the
    # bounds checks of _Reader are done inline: same errors, a third of the time.
    end = len(body)
    if end < 2:
        raise ProtocolViolation("message body is truncated")
    (count,) = _U16.unpack_from(body, 0)
    values: list[bytes | None] = []
    append = values.append
    unpack = _I32.unpack_from
    pos = 2
    for _ in range(count):
        if pos + 4 > end:
            raise ProtocolViolation("message body is truncated")
        (length,) = unpack(body, pos)
        pos += 4
        if length == -1:
            append(None)
            continue
        stop = pos + length
        if length < 0 or stop > end:
            raise ProtocolViolation("message body is truncated")
        append(bytes(body[pos:stop]))
        pos = stop
    if pos != end:
        raise ProtocolViolation("message has trailing bytes")
    return values


def encode_data_row(values: Sequence[bytes | None]) -> bytes:
    parts = [_U16.pack(len(values))]
    for value in values:
        if value is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            parts.append(_I32.pack(len(value)))
            parts.append(value)
    return message(b"D", b"".join(parts))


def decode_parameter_description(body: bytes | memoryview) -> list[int]:
    reader = _Reader(body)
    types = [reader.uint32() for _ in range(reader.uint16())]
    reader.done()
    return types


def encode_parameter_description(types: Sequence[int]) -> bytes:
    return message(b"t", _U16.pack(len(types)) + b"".join(_U32.pack(t) for t in types))


# -- errors and notices --------------------------------------------------------

ErrorFields = dict[str, str]


def decode_error_fields(body: bytes | memoryview) -> ErrorFields:
    """Fields of an ErrorResponse/NoticeResponse keyed by their one-letter code."""
    reader = _Reader(body)
    fields: ErrorFields = {}
    while True:
        code = reader.byte()
        if code == 0:
            break
        fields[chr(code)] = reader.cstr_bytes().decode(errors="replace")
    return fields


def encode_error(
    code: str,
    msg: str,
    *,
    severity: str = "ERROR",
    hint: str | None = None,
    detail: str | None = None,
    notice: bool = False,
) -> bytes:
    """An ErrorResponse (or NoticeResponse) as pgseal sends it."""
    parts = [b"S", _cstr(severity), b"V", _cstr(severity), b"C", _cstr(code), b"M", _cstr(msg)]
    if detail:
        parts += [b"D", _cstr(detail)]
    if hint:
        parts += [b"H", _cstr(hint)]
    parts.append(b"\x00")
    return message(b"N" if notice else b"E", b"".join(parts))


def command_tag(body: bytes | memoryview) -> str:
    return _Reader(body).cstr()


# Frequently sent constant messages.
READY_IDLE = message(b"Z", b"I")
READY_IN_TRANSACTION = message(b"Z", b"T")
READY_FAILED = message(b"Z", b"E")
SYNC = message(b"S")
FLUSH = message(b"H")
TERMINATE = message(b"X")
PARSE_COMPLETE = message(b"1")
BIND_COMPLETE = message(b"2")
CLOSE_COMPLETE = message(b"3")
NO_DATA = message(b"n")
SSL_REQUEST = _U32.pack(8) + _U32.pack(SSL_REQUEST_CODE)


def ready_for_query(status: str) -> bytes:
    return message(b"Z", status.encode())


def backend_key_data(pid: int, secret: bytes) -> bytes:
    return message(b"K", _U32.pack(pid) + secret)


def decode_backend_key_data(body: bytes | memoryview) -> tuple[int, bytes]:
    reader = _Reader(body)
    pid = reader.uint32()
    secret = reader.rest()
    if not 4 <= len(secret) <= 256:
        raise ProtocolViolation("invalid cancel key length")
    return pid, secret


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion:
    """The server's answer to a newer minor version or unknown ``_pq_.`` options.

    pgseal relays it untouched (the client and the server agree on 3.0 or 3.2
    between themselves); decoding it lets the session know what was agreed.
    """

    newest_minor: int
    unrecognised: tuple[str, ...]

    def encode(self) -> bytes:
        body = _U32.pack(self.newest_minor) + _U32.pack(len(self.unrecognised))
        return message(b"v", body + b"".join(_cstr(o) for o in self.unrecognised))


def decode_negotiate_protocol_version(body: bytes | memoryview) -> NegotiateProtocolVersion:
    reader = _Reader(body)
    newest = reader.uint32()
    options = tuple(reader.cstr() for _ in range(reader.uint32()))
    reader.done()
    return NegotiateProtocolVersion(newest, options)


def describe(kind: str, name: str) -> bytes:
    return message(b"D", kind.encode() + _cstr(name))


def decode_auth(body: bytes | memoryview) -> tuple[int, bytes]:
    """Authentication request code and its payload."""
    reader = _Reader(body)
    code = reader.uint32()
    return code, reader.rest()


def sasl_mechanisms(payload: bytes) -> list[str]:
    reader = _Reader(payload)
    names: list[str] = []
    while True:
        name = reader.cstr()
        if not name:
            return names
        names.append(name)


def encode_sasl_mechanisms(names: Sequence[str]) -> bytes:
    return message(b"R", _U32.pack(10) + b"".join(_cstr(n) for n in names) + b"\x00")


def decode_sasl_initial(body: bytes | memoryview) -> tuple[str, bytes | None]:
    """SASLInitialResponse: mechanism name and the client-first-message."""
    reader = _Reader(body)
    mechanism = reader.cstr()
    length = reader.int32()
    data = None if length == -1 else reader.raw(length)
    reader.done()
    return mechanism, data
