"""The pg gem (libpq underneath) through a pass-through pgseal: exec_params with
text and binary results, prepare/exec_prepared/describe_prepared, send_query and
get_result, libpq pipeline and single-row modes, COPY in and out,
PG::BasicTypeMapForResults (which reads pg_type on creation), a transaction with
an error, a real CancelRequest and LISTEN/NOTIFY. The same script run straight
against Postgres must print the same checks."""

from __future__ import annotations

import pytest

from tests.ruby.conftest import Relay, pg_env, run_ruby

Checks = dict[str, object]


def _run(relay: Relay, direct: bool) -> Checks:
    where = relay.server if direct else relay.proxy
    # A prefix of the same length: the checks quote nothing of it.
    prefix = "rbdirect" if direct else "rbproxy_"
    env = pg_env(where.host, where.port, relay.user, relay.database, RUBY_PREFIX=prefix)
    return run_ruby("pg_passthrough.rb", "all", env)


@pytest.fixture(scope="module")
def through(relay: Relay) -> Checks:
    return _run(relay, direct=False)


@pytest.fixture(scope="module")
def direct(relay: Relay) -> Checks:
    return _run(relay, direct=True)


def test_same_checks_as_straight_to_postgres(through: Checks, direct: Checks) -> None:
    assert through.keys() == direct.keys()
    assert len(through) > 30
    for name, value in direct.items():
        assert through[name] == value, name


def test_exec_params_text_and_binary_results(through: Checks) -> None:
    assert through["exec_params:text"] == ["42", "it's \\ ✓", "\\x0001ff", None, "-12.50"]
    assert through["exec_params:types"] == [23, 25, 17, 23, 1700]
    assert through["exec_params:binary_formats"] == [1, 1, 1, 1, 1]
    # int4 42; the text's UTF-8; the bytea; NULL; numeric -12.50 in its binary form
    assert through["exec_params:binary"] == [
        "0000002a",
        "it's \\ ✓".encode().hex(),
        "0001ff",
        None,
        "0002000040000002000c1388",
    ]
    assert through["exec_params:bad"] == "22P02"
    assert through["exec_params:after"] == "42"


def test_prepare_and_exec_prepared(through: Checks) -> None:
    assert through["prepared:notices"] == ['table "PREFIX_p" does not exist, skipping']
    assert through["prepared:ids"] == 60
    assert through["prepared:describe"] == [1, 23, ["v", "id"]]
    assert through["prepared:row"] == [["v7", "8"]]
    assert through["prepared:binary"] == [b"v7".hex(), "00000008"]
    assert through["prepared:duplicate"] == "42P05"
    assert through["prepared:statements"] == ["sel"]


def test_send_query_and_get_result(through: Checks) -> None:
    # The simple Query stops at its failing statement, as in Postgres.
    assert through["async:results"] == [[["1"]], [["two"]], "42P01"]
    assert through["async:params"] == "2"
    assert through["async:after"] == "ok"


def test_pipeline_mode_and_single_row_mode(through: Checks) -> None:
    # The error aborts the rest of its pipeline up to the sync, not what follows.
    assert through["pipeline:results"] == [[["1"]], "42P01", "aborted", "sync", [["21"]], "sync"]
    assert through["pipeline:single_row"] == [
        [True, [["1"]]],
        [True, [["2"]]],
        [True, [["3"]]],
        [False, []],
    ]
    assert through["pipeline:reset"] == "5"
    assert through["pipeline:status"] == ["UTF8", "UTF8", "on"]


def test_copy_in_and_out(through: Checks) -> None:
    assert through["copy:in"] == [["500", str(sum(range(500)))]]
    assert through["copy:out"] == [f"{i},row {i} \\ ✓,\\x00ff\n" for i in range(3)]
    assert through["copy:coded"] == "coded\ttab"
    assert through["copy:bad"] == "22P02"
    assert through["copy:after"] == "501"


def test_basic_type_map_for_results(through: Checks) -> None:
    assert through["type_map:classes"] == {
        "i": "Integer",
        "f": "Float",
        "t": "TrueClass",
        "d": "Date",
        "ts": "Time",
        "n": "BigDecimal",
        "a": "Array",
        "j": "Hash",
        "z": "NilClass",
    }
    values = through["type_map:values"]
    assert isinstance(values, dict)
    assert values["ts"] == "2024-02-29T12:34:56.500+0000"
    assert values["n"] == "0.125e2"
    assert values["j"] == '{"k"=>[1]}'
    assert through["type_map:params"] == {"i": "42", "b": "false", "a": "[1, 2]"}


def test_transaction_with_an_error_rolls_back(through: Checks) -> None:
    # 42P01, then 25P02 until the rollback, PQTRANS_INERROR (3), idle (0), nothing kept
    assert through["transaction:states"] == ["42P01", "25P02", 3, 0, "0"]
    assert through["transaction:savepoint"] == "{2,3}"


def test_cancel_of_pg_sleep(through: Checks) -> None:
    assert through["cancel:sent"] is None  # PG::Connection#cancel: nil when sent
    assert through["cancel:sqlstate"] == "57014"
    assert through["cancel:fast"] is True
    assert through["cancel:after"] == "usable"
    assert through["cancel:timeout"] == "57014"


def test_listen_notify(through: Checks) -> None:
    # The channel, the notifier's backend pid as BackendKeyData told it, the payload.
    assert through["notify:received"] == [True, True, "hello ✓"]
    assert through["notify:second"] == "second"
    assert through["notify:none"] is None
    assert through["notify:unlistened"] is None
