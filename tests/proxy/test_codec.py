"""The sans-IO codec against messages built from the protocol docs (tests/proxy/wire.py).

Every frontend and backend message type is framed back to exactly its bytes;
the ones pgseal decodes also decode to the documented fields and re-encode to
the same bytes. Framing must not depend on how TCP cut the stream, an
oversized length is refused from its header alone, and malformed bodies raise
``ProtocolViolation`` and nothing else.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import codec
from proxy.codec import MessageTooLong, ProtocolViolation
from tests.proxy import wire

FRONTEND = {
    "Bind": wire.bind("p1", "s1", [b"42", None, b""], [0, 1, 0], [1]),
    "Close statement": wire.close("S", "s1"),
    "Close portal": wire.close("P", "p1"),
    "CopyData": wire.copy_data(b"1\tx\n"),
    "CopyDone": wire.copy_done(),
    "CopyFail": wire.copy_fail("client gave up"),
    "Describe statement": wire.describe("S", "s1"),
    "Describe portal": wire.describe("P", ""),
    "Execute": wire.execute("p1", 100),
    "Flush": wire.flush(),
    "FunctionCall": wire.function_call(1598, [b"\x00\x00\x00\x07", None], [1], 1),
    "PasswordMessage": wire.password("md5" + "0" * 32),
    "GSSResponse": wire.msg(b"p", b"\x60\x82token"),
    "SASLInitialResponse": wire.sasl_initial("SCRAM-SHA-256", b"n,,n=,r=abc"),
    "SASLResponse": wire.sasl_response(b"c=biws,r=abc,p=xyz"),
    "Parse": wire.parse("s1", "SELECT $1::int, $2", [23, 0]),
    "Query": wire.query("SELECT 1; SELECT 2"),
    "Sync": wire.sync(),
    "Terminate": wire.terminate(),
}

BACKEND = {
    "AuthenticationOk": wire.auth_ok(),
    "AuthenticationKerberosV5": wire.auth(2),
    "AuthenticationCleartextPassword": wire.auth(3),
    "AuthenticationMD5Password": wire.auth(5, b"salt"),
    "AuthenticationGSS": wire.auth(7),
    "AuthenticationGSSContinue": wire.auth(8, b"gss-data"),
    "AuthenticationSSPI": wire.auth(9),
    "AuthenticationSASL": wire.auth_sasl("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"),
    "AuthenticationSASLContinue": wire.auth(11, b"r=abc,s=c2FsdA==,i=4096"),
    "AuthenticationSASLFinal": wire.auth(12, b"v=signature"),
    "BackendKeyData 3.0": wire.backend_key_data(1234, b"\x01\x02\x03\x04"),
    "BackendKeyData 3.2": wire.backend_key_data(1234, bytes(range(32))),
    "BindComplete": wire.bind_complete(),
    "CloseComplete": wire.close_complete(),
    "CommandComplete": wire.command_complete("SELECT 1"),
    "CopyData": wire.copy_data(b"row\n"),
    "CopyDone": wire.copy_done(),
    "CopyInResponse": wire.copy_response(b"G", 0, 0, 0),
    "CopyOutResponse": wire.copy_response(b"H", 1, 1, 1, 1),
    "CopyBothResponse": wire.copy_response(b"W", 0),
    "DataRow": wire.data_row(b"1", None, b""),
    "EmptyQueryResponse": wire.empty_query(),
    "ErrorResponse": wire.error("42P01", 'relation "nope" does not exist'),
    "FunctionCallResponse": wire.function_call_response(b"\x00\x00\x00\x08"),
    "FunctionCallResponse NULL": wire.function_call_response(None),
    "NegotiateProtocolVersion": wire.negotiate_protocol_version(0, ["_pq_.unknown"]),
    "NoData": wire.no_data(),
    "NoticeResponse": wire.notice("there is no transaction in progress"),
    "NotificationResponse": wire.notification(77, "jobs", "payload"),
    "ParameterDescription": wire.parameter_description(23, 25),
    "ParameterStatus": wire.parameter_status("TimeZone", "UTC"),
    "ParseComplete": wire.parse_complete(),
    "PortalSuspended": wire.portal_suspended(),
    "ReadyForQuery": wire.ready("T"),
    "RowDescription": wire.row_description(
        ("id", 16384, 1, 23, 4, -1, 0), ("b", 0, 0, 17, -1, -1, 1)
    ),
}


def _framed(buf: bytes) -> list[bytes]:
    return [buf[start:end] for _kind, start, end in codec.frames(buf)]


@pytest.mark.parametrize("name", sorted(FRONTEND))
def test_every_frontend_message_frames_to_its_own_bytes(name: str) -> None:
    raw = FRONTEND[name]
    assert list(codec.frames(raw)) == [(raw[0], 0, len(raw))]


@pytest.mark.parametrize("name", sorted(BACKEND))
def test_every_backend_message_frames_to_its_own_bytes(name: str) -> None:
    raw = BACKEND[name]
    assert list(codec.frames(raw)) == [(raw[0], 0, len(raw))]


def test_a_stream_of_every_message_frames_back_into_the_same_messages() -> None:
    messages = list(FRONTEND.values()) + list(BACKEND.values())
    assert _framed(b"".join(messages)) == messages


def test_frames_from_an_offset_and_of_a_memoryview() -> None:
    buf = b"junk" + wire.sync() + wire.flush()
    assert [k for k, _s, _e in codec.frames(buf, 4)] == [ord("S"), ord("H")]
    view = memoryview(wire.query("SELECT 1") + wire.sync())
    assert [(k, s, e) for k, s, e in codec.frames(view)] == [(0x51, 0, 14), (0x53, 14, 19)]


# -- decoders and encoders agree with the docs -------------------------------------------


def _body(raw: bytes) -> bytes:
    return raw[5:]


def test_parse_round_trip() -> None:
    raw = FRONTEND["Parse"]
    parsed = codec.decode_parse(_body(raw))
    assert parsed == codec.Parse("s1", "SELECT $1::int, $2", (23, 0))
    assert parsed.encode() == raw
    assert codec.decode_parse(memoryview(raw)[5:]) == parsed


def test_bind_round_trip_with_null_empty_and_mixed_formats() -> None:
    raw = FRONTEND["Bind"]
    bound = codec.decode_bind(_body(raw))
    assert (bound.portal, bound.statement) == ("p1", "s1")
    assert bound.params == [b"42", None, b""]
    assert [bound.param_format(i) for i in range(3)] == [0, 1, 0]
    assert bound.result_formats == [1]
    assert bound.encode() == raw


@pytest.mark.parametrize(("formats", "expected"), [((), [0, 0]), ((1,), [1, 1]), ((0, 1), [0, 1])])
def test_bind_parameter_format_follows_the_zero_one_n_rule(
    formats: tuple[int, ...], expected: list[int]
) -> None:
    bound = codec.decode_bind(_body(wire.bind("", "", [b"a", b"b"], formats)))
    assert [bound.param_format(i) for i in range(2)] == expected


def test_bind_repr_never_shows_parameter_values() -> None:
    bound = codec.decode_bind(_body(wire.bind("", "", [b"secret-value-123"])))
    assert "secret-value-123" not in repr(bound)


@pytest.mark.parametrize("kind", ["S", "P"])
def test_describe_and_close_round_trip(kind: str) -> None:
    assert codec.decode_describe(_body(wire.describe(kind, "n1"))) == codec.Describe(kind, "n1")
    assert codec.describe(kind, "n1") == wire.describe(kind, "n1")
    assert codec.decode_close(_body(wire.close(kind, "n1"))) == codec.Close(kind, "n1")


def test_execute_and_query_decode() -> None:
    assert codec.decode_execute(_body(FRONTEND["Execute"])) == codec.Execute("p1", 100)
    assert codec.decode_query(_body(FRONTEND["Query"])) == "SELECT 1; SELECT 2"


def test_row_description_round_trip() -> None:
    raw = BACKEND["RowDescription"]
    fields = codec.decode_row_description(_body(raw))
    assert fields == [
        codec.FieldDescription(b"id", 16384, 1, 23, 4, -1, 0),
        codec.FieldDescription(b"b", 0, 0, 17, -1, -1, 1),
    ]
    assert codec.encode_row_description(fields) == raw


def test_data_row_round_trip() -> None:
    raw = BACKEND["DataRow"]
    assert codec.decode_data_row(_body(raw)) == [b"1", None, b""]
    assert codec.encode_data_row([b"1", None, b""]) == raw


def test_parameter_description_round_trip() -> None:
    raw = BACKEND["ParameterDescription"]
    assert codec.decode_parameter_description(_body(raw)) == [23, 25]
    assert codec.encode_parameter_description([23, 25]) == raw


def test_error_round_trip_and_notice() -> None:
    raw = codec.encode_error("42P01", 'relation "nope" does not exist')
    assert raw == BACKEND["ErrorResponse"]
    assert codec.decode_error_fields(_body(raw)) == {
        "S": "ERROR",
        "V": "ERROR",
        "C": "42P01",
        "M": 'relation "nope" does not exist',
    }
    notice = codec.encode_error("01000", "careful", severity="WARNING", hint="h", notice=True)
    assert notice[:1] == b"N"
    assert codec.decode_error_fields(_body(notice))["H"] == "h"


@pytest.mark.parametrize("secret", [b"\x01\x02\x03\x04", bytes(range(32)), bytes(256)])
def test_backend_key_data_of_any_protocol_length(secret: bytes) -> None:
    raw = codec.backend_key_data(99, secret)
    assert raw == wire.backend_key_data(99, secret)
    assert codec.decode_backend_key_data(_body(raw)) == (99, secret)


def test_negotiate_protocol_version_round_trip() -> None:
    raw = BACKEND["NegotiateProtocolVersion"]
    negotiated = codec.decode_negotiate_protocol_version(_body(raw))
    assert negotiated == codec.NegotiateProtocolVersion(0, ("_pq_.unknown",))
    assert negotiated.encode() == raw


def test_authentication_requests_decode() -> None:
    assert codec.decode_auth(_body(BACKEND["AuthenticationMD5Password"])) == (5, b"salt")
    code, payload = codec.decode_auth(_body(BACKEND["AuthenticationSASL"]))
    assert code == 10
    assert codec.sasl_mechanisms(payload) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    assert codec.encode_sasl_mechanisms(["SCRAM-SHA-256"]) == wire.auth_sasl("SCRAM-SHA-256")


def test_sasl_initial_response_decodes_with_and_without_data() -> None:
    decoded = codec.decode_sasl_initial(_body(FRONTEND["SASLInitialResponse"]))
    assert decoded == ("SCRAM-SHA-256", b"n,,n=,r=abc")
    assert codec.decode_sasl_initial(_body(wire.sasl_initial("X", None))) == ("X", None)


def test_constants_are_the_documented_messages() -> None:
    assert wire.ready("I") == codec.READY_IDLE
    assert wire.ready("E") == codec.READY_FAILED
    assert codec.ready_for_query("T") == wire.ready("T")
    assert wire.sync() == codec.SYNC
    assert wire.terminate() == codec.TERMINATE
    assert wire.ssl_request() == codec.SSL_REQUEST
    assert codec.command_tag(_body(BACKEND["CommandComplete"])) == "SELECT 1"


# -- untyped first messages -------------------------------------------------------------


def test_startup_message_round_trip_3_0_and_3_2() -> None:
    params = {"user": "app", "database": "invoices", "options": "-c pgseal.tenant=42"}
    for protocol in (codec.PROTOCOL_3_0, codec.PROTOCOL_3_2):
        raw = wire.startup(params, protocol)
        assert codec.startup_length(raw) == len(raw)
        decoded = codec.decode_startup(raw)
        assert decoded == codec.StartupMessage(protocol, params)
        assert isinstance(decoded, codec.StartupMessage)
        assert decoded.encode() == raw


@pytest.mark.parametrize(
    ("raw", "code"),
    [(wire.ssl_request(), codec.SSL_REQUEST_CODE), (wire.gssenc_request(), 80877104)],
)
def test_ssl_and_gssenc_requests_round_trip(raw: bytes, code: int) -> None:
    decoded = codec.decode_startup(raw)
    assert decoded == codec.SpecialRequest(code)
    assert isinstance(decoded, codec.SpecialRequest)
    assert decoded.encode() == raw


@pytest.mark.parametrize("secret", [b"\xaa\xbb\xcc\xdd", bytes(range(32)), bytes(range(256))])
def test_cancel_request_with_3_0_and_3_2_key_lengths(secret: bytes) -> None:
    raw = wire.cancel_request(4242, secret)
    decoded = codec.decode_startup(raw)
    assert decoded == codec.CancelRequest(4242, secret)
    assert isinstance(decoded, codec.CancelRequest)
    assert decoded.encode() == raw
    assert secret.hex() not in repr(decoded)


@pytest.mark.parametrize("secret", [b"", b"abc", bytes(257)])
def test_cancel_request_with_an_impossible_key_length_is_a_violation(secret: bytes) -> None:
    with pytest.raises(ProtocolViolation, match="cancel key"):
        codec.decode_startup(wire.cancel_request(1, secret))


def test_startup_length_waits_for_the_whole_packet() -> None:
    raw = wire.startup({"user": "u"})
    assert codec.startup_length(raw[:3]) is None
    assert codec.startup_length(raw[:-1]) is None
    assert codec.startup_length(raw + b"Q") == len(raw)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (wire.startup({"database": "d"}), "no PostgreSQL user"),
        (wire.startup({"user": "u"}, protocol=2 << 16), "unsupported frontend protocol 2.0"),
        (wire.startup({"user": "u"})[:-1], "truncated|NUL"),
        (wire.untyped(struct.pack("!I", 196608) + b"user\x00\xff\xfe\x00\x00"), "UTF-8"),
        (wire.ssl_request() + b"x", "trailing"),
    ],
)
def test_malformed_startup_packets(raw: bytes, match: str) -> None:
    # The last two: the declared length is fixed up so only the body is wrong.
    raw = struct.pack("!I", len(raw)) + raw[4:]
    with pytest.raises(ProtocolViolation, match=match):
        codec.decode_startup(raw)


@pytest.mark.parametrize("length", [0, 7, 10_001, 0xFFFFFFFF])
def test_startup_length_out_of_range_is_refused_from_the_prefix_alone(length: int) -> None:
    with pytest.raises(ProtocolViolation, match="invalid startup packet length"):
        codec.startup_length(struct.pack("!I", length))


# -- framing across arbitrary TCP chunking ----------------------------------------------

ALL_MESSAGES = list(FRONTEND.values()) + list(BACKEND.values())


def _reassemble(chunks: list[bytes]) -> list[bytes]:
    """What the session does: keep the tail of the buffer, frame the rest."""
    out: list[bytes] = []
    buf = b""
    for chunk in chunks:
        buf += chunk
        last = 0
        for _kind, start, end in codec.frames(buf):
            out.append(buf[start:end])
            last = end
        buf = buf[last:]
    assert buf == b""
    return out


@st.composite
def _split_stream(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    messages = draw(st.lists(st.sampled_from(ALL_MESSAGES), min_size=1, max_size=30))
    # Some messages with random bodies too, big enough to span many chunks.
    extra = draw(
        st.lists(
            st.tuples(st.sampled_from(b"dDQPB"), st.binary(max_size=3000)).map(
                lambda kb: wire.msg(bytes([kb[0]]), kb[1])
            ),
            max_size=5,
        )
    )
    messages = draw(st.permutations(messages + extra))
    stream = b"".join(messages)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=40)))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    return messages, chunks


@settings(max_examples=300, deadline=None)
@given(_split_stream())
def test_framing_does_not_depend_on_how_the_stream_is_cut(
    case: tuple[list[bytes], list[bytes]],
) -> None:
    messages, chunks = case
    assert _reassemble(chunks) == messages


def test_byte_by_byte_delivery() -> None:
    stream = b"".join(ALL_MESSAGES)
    assert _reassemble([stream[i : i + 1] for i in range(len(stream))]) == ALL_MESSAGES


# -- the size limit -------------------------------------------------------------------


def test_a_length_above_the_limit_is_refused_from_the_header_alone() -> None:
    header = b"Q" + struct.pack("!I", 1001)
    with pytest.raises(MessageTooLong) as caught:
        list(codec.frames(header, limit=1000))
    assert (caught.value.declared, caught.value.limit) == (1001, 1000)
    assert caught.value.sqlstate == "08P01"


def test_a_length_at_the_limit_is_accepted_and_waited_for() -> None:
    header = b"d" + struct.pack("!I", 1000)
    assert list(codec.frames(header, limit=1000)) == []
    assert list(codec.frames(header + bytes(996), limit=1000)) == [(0x64, 0, 1001)]


def test_messages_before_an_oversized_one_are_framed_first() -> None:
    walker = codec.frames(wire.sync() + b"Q\x7f\xff\xff\xff", limit=1 << 20)
    assert next(walker) == (0x53, 0, 5)
    with pytest.raises(MessageTooLong):
        next(walker)


def test_the_default_limit_is_one_gibibyte() -> None:
    assert list(codec.frames(b"d" + struct.pack("!I", 1 << 30))) == []
    with pytest.raises(MessageTooLong):
        list(codec.frames(b"d" + struct.pack("!I", (1 << 30) + 1)))


@pytest.mark.parametrize("length", [0, 1, 3])
def test_a_length_below_four_is_a_violation(length: int) -> None:
    with pytest.raises(ProtocolViolation, match="invalid message length"):
        list(codec.frames(b"Q" + struct.pack("!I", length)))


# -- malformed bodies are ProtocolViolation, never another exception ---------------------

DECODERS: dict[str, Callable[[bytes], object]] = {
    "parse": codec.decode_parse,
    "bind": codec.decode_bind,
    "describe": codec.decode_describe,
    "close": codec.decode_close,
    "execute": codec.decode_execute,
    "query": codec.decode_query,
    "row_description": codec.decode_row_description,
    "data_row": codec.decode_data_row,
    "parameter_description": codec.decode_parameter_description,
    "error_fields": codec.decode_error_fields,
    "backend_key_data": codec.decode_backend_key_data,
    "negotiate_protocol_version": codec.decode_negotiate_protocol_version,
    "auth": codec.decode_auth,
    "sasl_mechanisms": codec.sasl_mechanisms,
    "sasl_initial": codec.decode_sasl_initial,
    "startup": lambda body: codec.decode_startup(struct.pack("!I", len(body) + 4) + body),
    "command_tag": codec.command_tag,
}

VALID_BODIES = {
    "parse": _body(FRONTEND["Parse"]),
    "bind": _body(FRONTEND["Bind"]),
    "describe": _body(FRONTEND["Describe statement"]),
    "close": _body(FRONTEND["Close portal"]),
    "execute": _body(FRONTEND["Execute"]),
    "query": _body(FRONTEND["Query"]),
    "row_description": _body(BACKEND["RowDescription"]),
    "data_row": _body(BACKEND["DataRow"]),
    "parameter_description": _body(BACKEND["ParameterDescription"]),
    "error_fields": _body(BACKEND["ErrorResponse"]),
    "backend_key_data": _body(BACKEND["BackendKeyData 3.2"]),
    "negotiate_protocol_version": _body(BACKEND["NegotiateProtocolVersion"]),
    "sasl_initial": _body(FRONTEND["SASLInitialResponse"]),
    "startup": wire.startup({"user": "u", "database": "d"})[4:],
}


@pytest.mark.parametrize("name", sorted(VALID_BODIES))
def test_every_truncation_of_a_valid_body_is_a_violation(name: str) -> None:
    body = VALID_BODIES[name]
    decode = DECODERS[name]
    # A 3.2 cancel key is variable-length: only cuts below pid + 4 bytes are invalid.
    for cut in range(8 if name == "backend_key_data" else len(body)):
        with pytest.raises(ProtocolViolation):
            decode(body[:cut])


@pytest.mark.parametrize(
    "name", sorted(set(VALID_BODIES) - {"backend_key_data", "sasl_initial", "error_fields"})
)
def test_trailing_bytes_after_a_valid_body_are_a_violation(name: str) -> None:
    with pytest.raises(ProtocolViolation):
        DECODERS[name](VALID_BODIES[name] + b"\x00\x01")


@pytest.mark.parametrize(
    ("name", "body", "match"),
    [
        ("describe", b"X\x00", "invalid Describe kind"),
        ("close", b"\x00", "invalid Describe kind"),
        ("bind", _body(wire.bind("", "", [b"a", b"b", b"c"], [0, 1])), "2 parameter formats"),
        ("bind", _body(wire.bind("", "", [b"a"], [2])), "format code"),
        ("bind", b"\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00", "truncated"),
        ("parse", b"\xff\x00SELECT 1\x00\x00\x00", "UTF-8"),
        ("query", b"SELECT 1", "NUL"),
        ("data_row", b"\x00\x01\xff\xff\xff\xf0", "truncated"),
        ("backend_key_data", b"\x00\x00\x00\x01abc", "cancel key"),
    ],
)
def test_specific_malformations(name: str, body: bytes, match: str) -> None:
    with pytest.raises(ProtocolViolation, match=match):
        DECODERS[name](body)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=64))
def test_random_bodies_decode_or_raise_protocol_violation(name: str, body: bytes) -> None:
    with contextlib.suppress(ProtocolViolation):
        DECODERS[name](body)


def test_encoders_refuse_a_nul_inside_a_name() -> None:
    with pytest.raises(ProtocolViolation, match="NUL"):
        codec.encode_parse("a\x00b", "SELECT 1")
