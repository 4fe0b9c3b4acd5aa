"""The session state machine driven by scripts, no sockets (tests/proxy/playbook.py).

Each script is what a real client and a real Postgres would exchange; the
session must relay it byte for byte (except where pgseal deliberately differs:
its own BackendKeyData, its own errors) and keep its queue of expected
responses aligned, which is what later column encryption relies on.
"""

from __future__ import annotations

import pytest

from proxy import codec
from proxy.session import (
    Close,
    ConnectUpstream,
    ForwardCancel,
    Phase,
    RegisterCancelKey,
    Session,
    SessionLimits,
    StartClientTLS,
)
from tests.proxy import wire
from tests.proxy.playbook import Playbook

STARTUP = {"user": "app", "database": "shop"}
UPSTREAM_KEY = (4711, b"\x0a\x0b\x0c\x0d")


def _error_fields(raw: bytes) -> dict[str, str]:
    assert raw[:1] in (b"E", b"N"), raw
    return codec.decode_error_fields(raw[5:])


def connect(
    pb: Playbook, protocol: int = codec.PROTOCOL_3_0, key: tuple[int, bytes] = UPSTREAM_KEY
) -> bytes:
    """Startup through trust auth to READY; returns the BackendKeyData the client got."""
    pb.client(wire.startup(STARTUP, protocol))
    (action,) = pb.actions(ConnectUpstream)
    assert isinstance(action, ConnectUpstream)
    assert action.startup.params == STARTUP
    pb.call(pb.session.server_connected).to_server(wire.startup(STARTUP, protocol))
    pb.server(
        wire.auth_ok(),
        wire.parameter_status("server_version", "18.0"),
        wire.backend_key_data(*key),
        wire.ready(),
    )
    out = pb.take_client()
    head = wire.auth_ok() + wire.parameter_status("server_version", "18.0")
    assert out.startswith(head)
    assert out.endswith(wire.ready())
    client_key = out[len(head) : -len(wire.ready())]
    pb.actions(RegisterCancelKey)
    assert pb.session.phase is Phase.READY
    return client_key


@pytest.fixture(params=[None, 1, 7], ids=["whole", "bytewise", "chunks7"])
def pb(request: pytest.FixtureRequest) -> Playbook:
    """A ready session, played with whole inputs, byte by byte and in 7-byte chunks."""
    playbook = Playbook(Session(1), chunk=request.param)
    connect(playbook)
    return playbook


# -- startup and authentication ---------------------------------------------------------


def test_ssl_and_gssenc_requests_get_n_without_tls_then_startup_goes_on() -> None:
    pb = Playbook(Session(1))
    pb.client(wire.ssl_request()).to_client(b"N")
    pb.client(wire.gssenc_request()).to_client(b"N")
    pb.client(wire.startup(STARTUP))
    pb.actions(ConnectUpstream)
    assert pb.session.phase is Phase.CONNECTING
    pb.done()


def test_ssl_request_with_tls_answers_s_and_asks_for_the_upgrade() -> None:
    pb = Playbook(Session(1, tls_available=True))
    pb.client(wire.ssl_request()).to_client(b"S")
    pb.actions(StartClientTLS)
    pb.done()


def test_bytes_pipelined_behind_ssl_request_are_refused() -> None:
    # CVE-2021-23214: they would be read as if they had come over TLS.
    pb = Playbook(Session(1, tls_available=True))
    pb.client(wire.ssl_request() + wire.startup(STARTUP))
    fields = _error_fields(pb.take_client())
    assert (fields["S"], fields["C"]) == ("FATAL", "08P01")
    pb.actions(Close)
    assert pb.session.phase is Phase.CLOSED


@pytest.mark.parametrize("secret", [b"\x01\x02\x03\x04", bytes(range(32))])
def test_cancel_request_is_forwarded_and_the_connection_closes(secret: bytes) -> None:
    pb = Playbook(Session(1))
    pb.client(wire.cancel_request(99, secret))
    pb.actions(ForwardCancel(99, secret), Close)
    pb.done()


def test_md5_authentication_is_relayed_and_bytes_sent_early_wait_for_the_upstream() -> None:
    pb = Playbook(Session(1))
    pb.client(wire.startup(STARTUP))
    pb.actions(ConnectUpstream)
    pb.call(pb.session.server_connected).to_server(wire.startup(STARTUP))
    pb.server(wire.auth(5, b"salt")).to_client(wire.auth(5, b"salt"))
    pb.client(wire.password("md5" + "a" * 32)).to_server(wire.password("md5" + "a" * 32))
    pb.server(wire.auth_ok(), wire.backend_key_data(*UPSTREAM_KEY), wire.ready())
    out = pb.take_client()
    assert out.startswith(wire.auth_ok())
    assert out.endswith(wire.ready())
    pb.actions(RegisterCancelKey)
    pb.done()


def test_scram_plus_is_not_offered_to_a_relayed_client() -> None:
    pb = Playbook(Session(1))
    pb.client(wire.startup(STARTUP))
    pb.actions(ConnectUpstream)
    pb.call(pb.session.server_connected).to_server(wire.startup(STARTUP))
    pb.server(wire.auth_sasl("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"))
    pb.to_client(wire.auth_sasl("SCRAM-SHA-256"))
    first = wire.sasl_initial("SCRAM-SHA-256", b"n,,n=,r=nonce")
    pb.client(first).to_server(first)
    pb.server(wire.auth(11, b"r=nonce2,s=c2FsdA==,i=4096"))
    pb.to_client(wire.auth(11, b"r=nonce2,s=c2FsdA==,i=4096"))
    pb.client(wire.sasl_response(b"c=biws,r=nonce2,p=proof"))
    pb.to_server(wire.sasl_response(b"c=biws,r=nonce2,p=proof"))
    pb.done()


def test_authentication_failure_is_relayed_and_closes() -> None:
    pb = Playbook(Session(1))
    pb.client(wire.startup(STARTUP))
    pb.actions(ConnectUpstream)
    pb.call(pb.session.server_connected).to_server(wire.startup(STARTUP))
    failure = wire.error("28P01", 'password authentication failed for user "app"', "FATAL")
    pb.server(failure).to_client(failure)
    pb.actions(Close)
    pb.done()


def test_negotiate_protocol_version_is_relayed_during_startup() -> None:
    pb = Playbook(Session(1))
    pb.client(wire.startup(STARTUP, codec.PROTOCOL_3_2))
    pb.actions(ConnectUpstream)
    pb.call(pb.session.server_connected).to_server(wire.startup(STARTUP, codec.PROTOCOL_3_2))
    negotiate = wire.negotiate_protocol_version(0, [])
    pb.server(negotiate, wire.auth_ok())
    pb.to_client(negotiate, wire.auth_ok())
    pb.done()


@pytest.mark.parametrize("secret", [b"\x0a\x0b\x0c\x0d", bytes(range(32)), bytes(range(256))])
def test_backend_key_data_is_swapped_for_pgseals_own_of_the_same_length(secret: bytes) -> None:
    pb = Playbook(Session(1))
    protocol = codec.PROTOCOL_3_0 if len(secret) == 4 else codec.PROTOCOL_3_2
    pb.client(wire.startup(STARTUP, protocol))
    pb.actions(ConnectUpstream)
    pb.call(pb.session.server_connected).to_server(wire.startup(STARTUP, protocol))
    pb.server(wire.auth_ok(), wire.backend_key_data(4711, secret), wire.ready())
    out = pb.take_client()
    given = out[len(wire.auth_ok()) : -len(wire.ready())]
    assert given[:1] == b"K"
    pid, client_secret = codec.decode_backend_key_data(given[5:])
    assert len(client_secret) == len(secret)
    assert (pid, client_secret) != (4711, secret)
    (register,) = pb.actions(RegisterCancelKey)
    assert register == RegisterCancelKey(pid, client_secret, 4711, secret)
    pb.done()


def test_two_sessions_get_different_cancel_keys() -> None:
    first = connect(Playbook(Session(1)))
    second = connect(Playbook(Session(2)))
    assert first != second


# -- simple query -----------------------------------------------------------------------


def test_simple_query_with_several_statements(pb: Playbook) -> None:
    q = wire.query("SELECT 1; SELECT 'a', NULL; UPDATE t SET x = 1")
    pb.client(q).to_server(q)
    assert pb.session.in_flight == 1
    answer = [
        wire.row_description(wire.int4_field()),
        wire.data_row(b"1"),
        wire.command_complete("SELECT 1"),
        wire.row_description(wire.int4_field("a"), wire.int4_field("b")),
        wire.data_row(b"a", None),
        wire.command_complete("SELECT 1"),
        wire.command_complete("UPDATE 3"),
        wire.ready(),
    ]
    pb.server(*answer).to_client(*answer)
    assert pb.session.idle
    pb.done()


def test_empty_query_and_transaction_status(pb: Playbook) -> None:
    pb.client(wire.query("BEGIN")).to_server(wire.query("BEGIN"))
    pb.server(wire.command_complete("BEGIN"), wire.ready("T"))
    pb.to_client(wire.command_complete("BEGIN"), wire.ready("T"))
    assert pb.session.txn_status == "T"
    assert not pb.session.idle  # inside a transaction block
    pb.client(wire.query("")).to_server(wire.query(""))
    pb.server(wire.empty_query(), wire.ready("T")).to_client(wire.empty_query(), wire.ready("T"))
    pb.client(wire.query("SELECT x")).to_server(wire.query("SELECT x"))
    err = wire.error("42703", 'column "x" does not exist')
    pb.server(err, wire.ready("E")).to_client(err, wire.ready("E"))
    assert pb.session.txn_status == "E"
    pb.client(wire.query("ROLLBACK")).to_server(wire.query("ROLLBACK"))
    pb.server(wire.command_complete("ROLLBACK"), wire.ready("I"))
    pb.to_client(wire.command_complete("ROLLBACK"), wire.ready("I"))
    assert pb.session.idle
    pb.done()


def test_queries_pipelined_in_one_read(pb: Playbook) -> None:
    pb.client(wire.query("SELECT 1"), wire.query("SELECT 2"))
    pb.to_server(wire.query("SELECT 1"), wire.query("SELECT 2"))
    assert pb.session.in_flight == 2
    pb.server(wire.command_complete("SELECT 1"), wire.ready())
    pb.to_client(wire.command_complete("SELECT 1"), wire.ready())
    assert pb.session.in_flight == 1
    pb.server(wire.command_complete("SELECT 1"), wire.ready())
    pb.to_client(wire.command_complete("SELECT 1"), wire.ready())
    assert pb.session.idle
    pb.done()


# -- extended query -----------------------------------------------------------------


def test_extended_pipeline_with_named_and_unnamed_statements_and_portals(pb: Playbook) -> None:
    batch = [
        wire.parse("s1", "SELECT $1::int", [23]),
        wire.describe("S", "s1"),
        wire.bind("p1", "s1", [b"5"]),
        wire.describe("P", "p1"),
        wire.execute("p1", 1),
        wire.execute("p1", 0),
        wire.parse("", "SELECT 2"),
        wire.bind("", ""),
        wire.execute(""),
        wire.sync(),
        wire.bind("", ""),  # the unnamed statement reused
        wire.execute(""),
        wire.close("S", "s1"),
        wire.close("P", "p1"),
        wire.sync(),
    ]
    pb.client(*batch).to_server(*batch)
    assert set(pb.session.statements) == {""}
    assert pb.session.statements[""].query == "SELECT 2"
    assert pb.session.in_flight == 15
    first = [
        wire.parse_complete(),
        wire.parameter_description(23),
        wire.row_description(wire.int4_field()),
        wire.bind_complete(),
        wire.row_description(wire.int4_field()),
        wire.data_row(b"5"),
        wire.portal_suspended(),
        wire.command_complete("SELECT 0"),
        wire.parse_complete(),
        wire.bind_complete(),
        wire.data_row(b"2"),
        wire.command_complete("SELECT 1"),
        wire.ready("I"),
    ]
    pb.server(*first).to_client(*first)
    assert pb.session.in_flight == 5
    second = [
        wire.bind_complete(),
        wire.data_row(b"2"),
        wire.command_complete("SELECT 1"),
        wire.close_complete(),
        wire.close_complete(),
        wire.ready("I"),
    ]
    pb.server(*second).to_client(*second)
    assert pb.session.idle
    pb.done()


def test_parse_and_close_maintain_the_statement_registry(pb: Playbook) -> None:
    pb.client(wire.parse("a", "SELECT 1"), wire.parse("b", "SELECT $1", [25]), wire.flush())
    pb.to_server(wire.parse("a", "SELECT 1"), wire.parse("b", "SELECT $1", [25]), wire.flush())
    assert pb.session.statements["b"].param_types == (25,)
    pb.server(wire.parse_complete(), wire.parse_complete())
    pb.to_client(wire.parse_complete(), wire.parse_complete())
    assert pb.session.in_flight == 0  # Flush asks for no answer of its own
    pb.client(wire.close("S", "a"), wire.sync()).to_server(wire.close("S", "a"), wire.sync())
    assert set(pb.session.statements) == {"b"}
    pb.server(wire.close_complete(), wire.ready()).to_client(wire.close_complete(), wire.ready())
    assert pb.session.idle
    pb.done()


def test_an_error_mid_pipeline_skips_to_sync_and_the_next_batch_stays_aligned(
    pb: Playbook,
) -> None:
    batch = [
        wire.parse("", "SELECT 1/0"),
        wire.bind(),
        wire.execute(),
        wire.parse("", "SELECT 2"),  # skipped by the server
        wire.bind(),
        wire.execute(),
        wire.sync(),
        wire.parse("", "SELECT 3"),
        wire.bind(),
        wire.describe("P"),
        wire.execute(),
        wire.sync(),
    ]
    pb.client(*batch).to_server(*batch)
    err = wire.error("22012", "division by zero")
    pb.server(wire.parse_complete(), wire.bind_complete(), err, wire.ready())
    pb.to_client(wire.parse_complete(), wire.bind_complete(), err, wire.ready())
    assert pb.session.in_flight == 5
    rest = [
        wire.parse_complete(),
        wire.bind_complete(),
        wire.row_description(wire.int4_field()),
        wire.data_row(b"3"),
        wire.command_complete("SELECT 1"),
        wire.ready(),
    ]
    pb.server(*rest).to_client(*rest)
    assert pb.session.idle
    pb.done()


def test_a_pgseal_error_waits_behind_in_flight_responses(pb: Playbook) -> None:
    first = [wire.parse("", "SELECT 1"), wire.bind(), wire.execute(), wire.sync()]
    pb.client(*first).to_server(*first)
    refusal = codec.encode_error("0A000", "pgseal: refused")
    # pgseal refuses the next Parse: nothing of it reaches the server, and the
    # rest of its batch is skipped up to Sync exactly as Postgres would.
    pb.call(lambda: pb.session.refuse(refusal, simple_query=False))
    pb.client(wire.bind(), wire.execute(), wire.sync()).to_server(wire.sync())
    answer = [wire.parse_complete(), wire.bind_complete(), wire.command_complete("SELECT 1")]
    pb.server(*answer).to_client(*answer)
    pb.server(wire.ready()).to_client(wire.ready(), refusal)
    pb.server(wire.ready()).to_client(wire.ready())
    assert pb.session.idle
    pb.done()


def test_a_pgseal_error_with_nothing_in_flight_goes_out_at_once(pb: Playbook) -> None:
    refusal = codec.encode_error("0A000", "pgseal: refused")
    pb.call(lambda: pb.session.refuse(refusal, simple_query=True))
    pb.to_client(refusal, wire.ready())
    pb.client(wire.query("SELECT 1")).to_server(wire.query("SELECT 1"))
    pb.server(wire.command_complete("SELECT 1"), wire.ready())
    pb.to_client(wire.command_complete("SELECT 1"), wire.ready())
    pb.done()


def test_a_simple_query_refusal_is_answered_in_order_with_its_own_ready(pb: Playbook) -> None:
    pb.client(wire.query("BEGIN")).to_server(wire.query("BEGIN"))
    refusal = codec.encode_error("0A000", "pgseal: refused")
    pb.call(lambda: pb.session.refuse(refusal, simple_query=True))
    pb.client(wire.query("SELECT 2")).to_server(wire.query("SELECT 2"))
    pb.server(wire.command_complete("BEGIN"), wire.ready("T"))
    pb.to_client(wire.command_complete("BEGIN"), wire.ready("T"), refusal, wire.ready("T"))
    pb.server(wire.command_complete("SELECT 1"), wire.ready("T"))
    pb.to_client(wire.command_complete("SELECT 1"), wire.ready("T"))
    pb.done()


def test_function_call(pb: Playbook) -> None:
    call = wire.function_call(1598, [], [], 0)
    pb.client(call).to_server(call)
    assert pb.session.in_flight == 1
    pb.server(wire.function_call_response(b"0.5"), wire.ready())
    pb.to_client(wire.function_call_response(b"0.5"), wire.ready())
    assert pb.session.idle
    pb.done()


# -- COPY ----------------------------------------------------------------------------


def test_copy_in_by_simple_query(pb: Playbook) -> None:
    q = wire.query("COPY t FROM STDIN")
    pb.client(q).to_server(q)
    pb.server(wire.copy_response(b"G", 0, 0)).to_client(wire.copy_response(b"G", 0, 0))
    data = [wire.copy_data(b"1\n"), wire.copy_data(b"2\n"), wire.copy_done()]
    pb.client(*data).to_server(*data)
    pb.server(wire.command_complete("COPY 2"), wire.ready())
    pb.to_client(wire.command_complete("COPY 2"), wire.ready())
    assert pb.session.idle
    pb.done()


def test_copy_in_with_data_and_syncs_pipelined_behind_it(pb: Playbook) -> None:
    # psycopg/pgjdbc style: the COPY in extended mode with its Sync, the data
    # right behind; the server ignores Sync while in copy-in mode.
    batch = [
        wire.parse("", "COPY t FROM STDIN"),
        wire.bind(),
        wire.execute(),
        wire.sync(),
        wire.copy_data(b"1\n"),
        wire.copy_done(),
        wire.sync(),
        wire.query("SELECT 1"),
    ]
    pb.client(*batch).to_server(*batch)
    answer = [
        wire.parse_complete(),
        wire.bind_complete(),
        wire.copy_response(b"G", 0, 0),
        wire.command_complete("COPY 1"),
        wire.ready(),
    ]
    pb.server(*answer).to_client(*answer)
    assert pb.session.in_flight == 1
    pb.server(wire.command_complete("SELECT 1"), wire.ready())
    pb.to_client(wire.command_complete("SELECT 1"), wire.ready())
    assert pb.session.idle
    pb.done()


def test_copy_in_with_a_sync_sent_during_the_copy(pb: Playbook) -> None:
    batch = [wire.parse("", "COPY t FROM STDIN"), wire.bind(), wire.execute(), wire.sync()]
    pb.client(*batch).to_server(*batch)
    head = [wire.parse_complete(), wire.bind_complete(), wire.copy_response(b"G", 0, 0)]
    pb.server(*head).to_client(*head)
    pb.client(wire.copy_data(b"1\n"), wire.flush(), wire.sync(), wire.copy_done(), wire.sync())
    pb.to_server(wire.copy_data(b"1\n"), wire.flush(), wire.sync(), wire.copy_done(), wire.sync())
    pb.server(wire.command_complete("COPY 1"), wire.ready())
    pb.to_client(wire.command_complete("COPY 1"), wire.ready())
    assert pb.session.idle
    pb.done()


def test_copy_in_that_fails_midway_keeps_the_queue_aligned(pb: Playbook) -> None:
    # The server rejects a row while the client is still sending; the client
    # notices late, ends the copy and goes on with a new pipeline.
    batch = [wire.parse("", "COPY t FROM STDIN"), wire.bind(), wire.execute(), wire.sync()]
    pb.client(*batch).to_server(*batch)
    head = [wire.parse_complete(), wire.bind_complete(), wire.copy_response(b"G", 0, 0)]
    pb.server(*head).to_client(*head)
    pb.client(wire.copy_data(b"x\n")).to_server(wire.copy_data(b"x\n"))
    err = wire.error("22P02", 'invalid input syntax for type integer: "x"')
    pb.server(err).to_client(err)
    pb.client(wire.sync()).to_server(wire.sync())
    pb.server(wire.ready()).to_client(wire.ready())
    assert pb.session.idle
    nxt = [wire.parse("", "SELECT 1"), wire.bind(), wire.execute(), wire.sync()]
    pb.client(*nxt).to_server(*nxt)
    assert pb.session.in_flight == 4
    answer = [
        wire.parse_complete(),
        wire.bind_complete(),
        wire.command_complete("SELECT 1"),
        wire.ready(),
    ]
    pb.server(*answer).to_client(*answer)
    assert pb.session.idle
    pb.done()


def test_copy_done_after_a_failed_simple_copy_expects_nothing(pb: Playbook) -> None:
    q = wire.query("COPY t FROM STDIN")
    pb.client(q).to_server(q)
    pb.server(wire.copy_response(b"G", 0, 0)).to_client(wire.copy_response(b"G", 0, 0))
    err = wire.error("22P02", "bad row")
    pb.client(wire.copy_data(b"x\n")).to_server(wire.copy_data(b"x\n"))
    pb.server(err, wire.ready()).to_client(err, wire.ready())
    # The server ignores CopyData/CopyDone outside COPY; they expect no answer.
    pb.client(wire.copy_data(b"y\n"), wire.copy_done())
    pb.to_server(wire.copy_data(b"y\n"), wire.copy_done())
    assert pb.session.idle
    pb.client(wire.parse("", "SELECT 1"), wire.bind(), wire.execute(), wire.sync())
    pb.to_server(wire.parse("", "SELECT 1"), wire.bind(), wire.execute(), wire.sync())
    answer = [wire.parse_complete(), wire.bind_complete()]
    pb.server(*answer).to_client(*answer)
    assert pb.session.in_flight == 2  # Execute and Sync still expected
    pb.server(wire.command_complete("SELECT 1"), wire.ready())
    pb.to_client(wire.command_complete("SELECT 1"), wire.ready())
    assert pb.session.idle
    pb.done()


def test_copy_out(pb: Playbook) -> None:
    q = wire.query("COPY t TO STDOUT")
    pb.client(q).to_server(q)
    answer = [
        wire.copy_response(b"H", 0, 0),
        wire.copy_data(b"1\n"),
        wire.copy_data(b"2\n"),
        wire.copy_done(),
        wire.command_complete("COPY 2"),
        wire.ready(),
    ]
    pb.server(*answer).to_client(*answer)
    assert pb.session.idle
    pb.done()


def test_copy_both_is_relayed(pb: Playbook) -> None:
    q = wire.query("START_REPLICATION SLOT s LOGICAL 0/0")
    pb.client(q).to_server(q)
    pb.server(wire.copy_response(b"W", 0), wire.copy_data(b"w-data"))
    pb.to_client(wire.copy_response(b"W", 0), wire.copy_data(b"w-data"))
    pb.client(wire.copy_data(b"r-status")).to_server(wire.copy_data(b"r-status"))
    pb.client(wire.copy_done()).to_server(wire.copy_done())
    pb.server(wire.copy_done(), wire.command_complete("START_REPLICATION"), wire.ready())
    pb.to_client(wire.copy_done(), wire.command_complete("START_REPLICATION"), wire.ready())
    assert pb.session.idle
    pb.done()


# -- asynchronous messages ----------------------------------------------------------


def test_notifications_notices_and_parameter_status_pass_at_any_time(pb: Playbook) -> None:
    note = wire.notification(77, "jobs", "42")
    pb.server(note).to_client(note)  # while idle
    pb.client(wire.query("LISTEN jobs")).to_server(wire.query("LISTEN jobs"))
    answer = [
        wire.notice("hello"),
        wire.command_complete("LISTEN"),
        note,
        wire.parameter_status("TimeZone", "Europe/Berlin"),
        wire.ready(),
    ]
    pb.server(*answer).to_client(*answer)
    assert pb.session.server_params["TimeZone"] == "Europe/Berlin"
    assert pb.session.idle
    batch = [wire.parse("", "SELECT 1"), wire.bind(), wire.execute(), wire.sync()]
    pb.client(*batch).to_server(*batch)
    answer = [
        wire.parse_complete(),
        note,
        wire.bind_complete(),
        wire.parameter_status("application_name", "x"),
        wire.data_row(b"1"),
        wire.notice("mid-result"),
        wire.command_complete("SELECT 1"),
        note,
        wire.ready(),
    ]
    pb.server(*answer).to_client(*answer)
    assert pb.session.idle
    pb.done()


# -- SQL-level prepared statements ----------------------------------------------------


def test_prepare_and_deallocate_by_sql(pb: Playbook) -> None:
    q = wire.query('PREPARE q1(int) AS SELECT $1; PREPARE "Q 2" AS SELECT 2')
    pb.client(q).to_server(q)
    assert {"q1", "Q 2"} <= set(pb.session.statements)
    assert pb.session.statements["q1"].sql_level
    pb.client(wire.query("DEALLOCATE q1")).to_server(wire.query("DEALLOCATE q1"))
    assert "q1" not in pb.session.statements
    q = wire.query('deallocate prepare "Q 2"')
    pb.client(q).to_server(q)
    assert "Q 2" not in pb.session.statements
    pb.done()


def test_deallocate_all_drops_every_named_statement(pb: Playbook) -> None:
    # Postgres keeps protocol-level named statements and SQL PREPAREd ones in
    # one table: DEALLOCATE ALL removes both, never the unnamed statement.
    pb.client(wire.parse("proto", "SELECT 1"), wire.parse("", "SELECT 2"), wire.sync())
    pb.to_server(wire.parse("proto", "SELECT 1"), wire.parse("", "SELECT 2"), wire.sync())
    pb.server(wire.parse_complete(), wire.parse_complete(), wire.ready())
    pb.to_client(wire.parse_complete(), wire.parse_complete(), wire.ready())
    q = wire.query("PREPARE sqlp AS SELECT 3")
    pb.client(q).to_server(q)
    pb.server(wire.command_complete("PREPARE"), wire.ready())
    pb.to_client(wire.command_complete("PREPARE"), wire.ready())
    assert {"proto", "sqlp"} <= set(pb.session.statements)
    pb.client(wire.query("DEALLOCATE ALL")).to_server(wire.query("DEALLOCATE ALL"))
    pb.server(wire.command_complete("DEALLOCATE ALL"), wire.ready())
    pb.to_client(wire.command_complete("DEALLOCATE ALL"), wire.ready())
    assert "proto" not in pb.session.statements
    assert "sqlp" not in pb.session.statements
    pb.done()


def test_discard_all_drops_statements_and_portals_but_discard_plans_keeps_them(
    pb: Playbook,
) -> None:
    pb.client(wire.parse("s", "SELECT 1"), wire.flush()).to_server(
        wire.parse("s", "SELECT 1"), wire.flush()
    )
    pb.server(wire.parse_complete()).to_client(wire.parse_complete())
    pb.client(wire.query("DISCARD PLANS")).to_server(wire.query("DISCARD PLANS"))
    assert "s" in pb.session.statements  # only cached plans are dropped
    pb.server(wire.command_complete("DISCARD PLANS"), wire.ready())
    pb.to_client(wire.command_complete("DISCARD PLANS"), wire.ready())
    pb.client(wire.query("DISCARD ALL")).to_server(wire.query("DISCARD ALL"))
    pb.server(wire.command_complete("DISCARD ALL"), wire.ready())
    pb.to_client(wire.command_complete("DISCARD ALL"), wire.ready())
    assert "s" not in pb.session.statements
    assert not pb.session.portals
    pb.done()


def test_a_simple_query_drops_the_unnamed_statement(pb: Playbook) -> None:
    # exec_simple_query starts with drop_unnamed_stmt().
    pb.client(wire.parse("", "SELECT 1"), wire.sync()).to_server(
        wire.parse("", "SELECT 1"), wire.sync()
    )
    pb.server(wire.parse_complete(), wire.ready()).to_client(wire.parse_complete(), wire.ready())
    assert "" in pb.session.statements
    pb.client(wire.query("SELECT 2")).to_server(wire.query("SELECT 2"))
    assert "" not in pb.session.statements
    pb.done()


# -- endings and bad input ------------------------------------------------------------


def test_upstream_death_sends_fatal_08006_and_closes(pb: Playbook) -> None:
    pb.client(wire.query("SELECT pg_sleep(10)")).to_server(wire.query("SELECT pg_sleep(10)"))
    pb.call(pb.session.server_closed)
    fields = _error_fields(pb.take_client())
    assert (fields["S"], fields["C"]) == ("FATAL", "08006")
    pb.actions(Close)
    assert pb.session.phase is Phase.CLOSED
    pb.client(wire.query("SELECT 1"))  # nothing more is read
    pb.server(wire.ready())
    pb.done()


def test_terminate_is_forwarded_and_closes(pb: Playbook) -> None:
    pb.client(wire.terminate()).to_server(wire.terminate())
    pb.actions(Close)
    pb.done()


def test_a_message_over_the_limit_is_refused_without_buffering_it() -> None:
    pb = Playbook(Session(1, limits=SessionLimits(max_message_size=1000)))
    connect(pb)
    pb.client(b"Q" + (1001).to_bytes(4, "big") + b"SELECT")
    fields = _error_fields(pb.take_client())
    assert (fields["S"], fields["C"]) == ("FATAL", "08P01")
    assert "1001" in fields["M"]
    assert "1000" in fields["M"]
    pb.actions(Close)
    assert pb.session._cbuf == b""
    pb.done()


def test_an_unknown_frontend_message_type_is_a_protocol_violation(pb: Playbook) -> None:
    pb.client(wire.msg(b"!", b"??"))
    fields = _error_fields(pb.take_client())
    assert (fields["S"], fields["C"]) == ("FATAL", "08P01")
    pb.actions(Close)
    pb.done()


def test_a_malformed_server_message_is_a_fatal_error_for_this_connection(pb: Playbook) -> None:
    pb.client(wire.query("SELECT 1")).to_server(wire.query("SELECT 1"))
    pb.server(b"Z\x00\x00\x00\x02")
    fields = _error_fields(pb.take_client())
    assert (fields["S"], fields["C"]) == ("FATAL", "08P01")
    pb.actions(Close)
    pb.done()


@pytest.mark.parametrize("ready", [b"Z\x00\x00\x00\x04", b"Z\x00\x00\x00\x05X"])
def test_a_ready_for_query_without_a_valid_status_is_a_violation(
    pb: Playbook, ready: bytes
) -> None:
    pb.client(wire.query("SELECT 1")).to_server(wire.query("SELECT 1"))
    pb.server(ready)
    fields = _error_fields(pb.take_client())
    assert (fields["S"], fields["C"]) == ("FATAL", "08P01")
    pb.actions(Close)
    pb.done()
