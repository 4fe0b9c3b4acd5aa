"""Protocol messages built straight from the PostgreSQL docs ("Message Formats").

These builders are deliberately independent of ``proxy.codec``: the codec tests
compare the codec's encoders and decoders against them, and the session tests
use them to write scripts that read like the protocol chapter. Nothing here is
clever; each function is one row of the docs' table.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence


def msg(kind: bytes, body: bytes = b"") -> bytes:
    """A typed message: one type byte, an Int32 length that counts itself, the body."""
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return raw + b"\x00"


def untyped(body: bytes) -> bytes:
    return struct.pack("!I", len(body) + 4) + body


# -- untyped first messages --------------------------------------------------------


def startup(params: dict[str, str], protocol: int = 196608) -> bytes:
    body = struct.pack("!I", protocol)
    body += b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\x00"
    return untyped(body)


def ssl_request() -> bytes:
    return untyped(struct.pack("!I", 80877103))


def gssenc_request() -> bytes:
    return untyped(struct.pack("!I", 80877104))


def cancel_request(pid: int, secret: bytes) -> bytes:
    return untyped(struct.pack("!II", 80877102, pid) + secret)


# -- frontend ----------------------------------------------------------------------


def query(sql: str) -> bytes:
    return msg(b"Q", cstr(sql))


def parse(name: str, sql: str, types: Sequence[int] = ()) -> bytes:
    body = cstr(name) + cstr(sql) + struct.pack("!H", len(types))
    return msg(b"P", body + b"".join(struct.pack("!I", t) for t in types))


def bind(
    portal: str = "",
    statement: str = "",
    params: Sequence[bytes | None] = (),
    param_formats: Sequence[int] = (),
    result_formats: Sequence[int] = (),
) -> bytes:
    body = cstr(portal) + cstr(statement)
    body += struct.pack("!H", len(param_formats))
    body += b"".join(struct.pack("!h", f) for f in param_formats)
    body += struct.pack("!H", len(params))
    for value in params:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    body += struct.pack("!H", len(result_formats))
    body += b"".join(struct.pack("!h", f) for f in result_formats)
    return msg(b"B", body)


def describe(kind: str, name: str = "") -> bytes:
    return msg(b"D", kind.encode() + cstr(name))


def close(kind: str, name: str = "") -> bytes:
    return msg(b"C", kind.encode() + cstr(name))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return msg(b"E", cstr(portal) + struct.pack("!i", max_rows))


def sync() -> bytes:
    return msg(b"S")


def flush() -> bytes:
    return msg(b"H")


def terminate() -> bytes:
    return msg(b"X")


def copy_data(data: bytes) -> bytes:
    return msg(b"d", data)


def copy_done() -> bytes:
    return msg(b"c")


def copy_fail(reason: str) -> bytes:
    return msg(b"f", cstr(reason))


def function_call(
    oid: int, args: Sequence[bytes | None], arg_formats: Sequence[int] = (), result_format: int = 0
) -> bytes:
    body = struct.pack("!IH", oid, len(arg_formats))
    body += b"".join(struct.pack("!h", f) for f in arg_formats)
    body += struct.pack("!H", len(args))
    for value in args:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return msg(b"F", body + struct.pack("!h", result_format))


def password(secret: str) -> bytes:
    return msg(b"p", cstr(secret))


def sasl_initial(mechanism: str, data: bytes | None) -> bytes:
    tail = struct.pack("!i", -1) if data is None else struct.pack("!i", len(data)) + data
    return msg(b"p", cstr(mechanism) + tail)


def sasl_response(data: bytes) -> bytes:
    return msg(b"p", data)


# -- backend -----------------------------------------------------------------------


def auth(code: int, payload: bytes = b"") -> bytes:
    return msg(b"R", struct.pack("!I", code) + payload)


def auth_ok() -> bytes:
    return auth(0)


def auth_sasl(*mechanisms: str) -> bytes:
    return auth(10, b"".join(cstr(m) for m in mechanisms) + b"\x00")


def backend_key_data(pid: int, secret: bytes) -> bytes:
    return msg(b"K", struct.pack("!I", pid) + secret)


def parameter_status(name: str, value: str) -> bytes:
    return msg(b"S", cstr(name) + cstr(value))


def negotiate_protocol_version(newest_minor: int, unrecognised: Sequence[str] = ()) -> bytes:
    body = struct.pack("!II", newest_minor, len(unrecognised))
    return msg(b"v", body + b"".join(cstr(o) for o in unrecognised))


def ready(status: str = "I") -> bytes:
    return msg(b"Z", status.encode())


def parse_complete() -> bytes:
    return msg(b"1")


def bind_complete() -> bytes:
    return msg(b"2")


def close_complete() -> bytes:
    return msg(b"3")


def no_data() -> bytes:
    return msg(b"n")


def portal_suspended() -> bytes:
    return msg(b"s")


def empty_query() -> bytes:
    return msg(b"I")


def command_complete(tag: str) -> bytes:
    return msg(b"C", cstr(tag))


Field = tuple[str, int, int, int, int, int, int]  # name, table, attnum, type, len, mod, fmt


def row_description(*fields: Field) -> bytes:
    body = struct.pack("!H", len(fields))
    for name, table, attnum, type_oid, typlen, typmod, fmt in fields:
        body += cstr(name) + struct.pack("!IhIhih", table, attnum, type_oid, typlen, typmod, fmt)
    return msg(b"T", body)


def int4_field(name: str = "x") -> Field:
    return (name, 0, 0, 23, 4, -1, 0)


def data_row(*values: bytes | None) -> bytes:
    body = struct.pack("!H", len(values))
    for value in values:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return msg(b"D", body)


def parameter_description(*types: int) -> bytes:
    return msg(b"t", struct.pack("!H", len(types)) + b"".join(struct.pack("!I", t) for t in types))


def error(code: str, message: str, severity: str = "ERROR", kind: bytes = b"E") -> bytes:
    body = b"S" + cstr(severity) + b"V" + cstr(severity) + b"C" + cstr(code)
    return msg(kind, body + b"M" + cstr(message) + b"\x00")


def notice(message: str) -> bytes:
    return error("01000", message, severity="WARNING", kind=b"N")


def notification(pid: int, channel: str, payload: str) -> bytes:
    return msg(b"A", struct.pack("!I", pid) + cstr(channel) + cstr(payload))


def copy_response(kind: bytes, overall: int, *column_formats: int) -> bytes:
    """CopyInResponse (G), CopyOutResponse (H) or CopyBothResponse (W)."""
    body = struct.pack("!bH", overall, len(column_formats))
    return msg(kind, body + b"".join(struct.pack("!h", f) for f in column_formats))


def function_call_response(value: bytes | None) -> bytes:
    body = struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return msg(b"V", body)
