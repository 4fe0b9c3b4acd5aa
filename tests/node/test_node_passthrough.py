"""node-postgres through a pass-through pgseal: simple and extended protocol,
named statements, a Pool, queued and pipelined queries with errors among them,
rowMode/type parsers/binary results, savepoints, LISTEN/NOTIFY, a real
CancelRequest, pg-cursor and pg-copy-streams. The same script run straight
against Postgres must print exactly the same checks."""

from __future__ import annotations

import pytest

from tests.node.conftest import Relay, relay_env, run_node_script

Checks = dict[str, object]


@pytest.fixture(scope="module")
def through(relay: Relay) -> Checks:
    return run_node_script("passthrough.js", ["via"], relay_env(relay))


@pytest.fixture(scope="module")
def direct(relay: Relay) -> Checks:
    return run_node_script("passthrough.js", ["via"], relay_env(relay, direct=True))


def test_same_checks_as_straight_to_postgres(through: Checks, direct: Checks) -> None:
    assert through.keys() == direct.keys()
    assert len(through) > 40
    for name, value in direct.items():
        assert through[name] == value, name


def test_simple_protocol(through: Checks) -> None:
    assert through["simple:rows"] == [{"a": 1, "b": "x", "n": None}]
    assert through["simple:fields"] == [["a", 23], ["b", 25], ["n", 23]]
    assert through["simple:multi"] == [[{"a": 1}], [{"b": "two"}], [{"c": 3}]]
    assert through["simple:ddl"] == ["DROP", "CREATE"]
    assert through["simple:insert"] == ["INSERT", 7]
    assert through["simple:empty"] == []
    assert through["simple:large_text"] == 2 * 1024 * 1024


def test_extended_protocol_text_parameters(through: Checks) -> None:
    assert through["extended:row"] == {"s": 42, "t": "hé ✓", "n": True, "b": "000102ff"}
    assert through["extended:untyped"] == ["plain", 25]
    assert through["extended:large_param"] == {
        "n": 3 * 1024 * 1024,
        "h": "b8f98051ce0bacedf329ab6d5fffe05d",
    }
    assert through["extended:jsonb"] == {"a": [1, 2], "b": "c"}
    assert through["extended:array"] == {"a": [3, 1, 2], "n": 3}
    assert through["extended:bad_param"] == "22P02"
    assert through["extended:after_error"] == 5


def test_named_statements_reused(through: Checks) -> None:
    assert through["named:reused"] == 300
    assert through["named:server_statements"] == ["ins", "sel"]
    assert through["named:clash_is_client_side"] is True


def test_pool_of_concurrent_clients(through: Checks) -> None:
    assert through["pool:values"] == list(range(60))
    assert through["pool:backends"] == 5
    assert through["pool:checked_out"] == "read committed"


@pytest.mark.parametrize("mode", ["queued", "pipeline"])
def test_queries_sent_without_awaiting_and_errors_among_them(through: Checks, mode: str) -> None:
    assert through[f"{mode}:in_order"] is True
    assert through[f"{mode}:mixed"] == [
        [],
        {"code": "23505"},
        [{"after_dup": "a"}],
        {"code": "42P01"},
        {"code": "42P01"},
        [{"n": 1}],
        {"code": "23505"},
        [{"simple_after": 7}],
    ]


def test_row_mode_type_parsers_and_binary_results(through: Checks) -> None:
    assert through["rowmode:array"] == [[1, "b", 3]]
    assert through["rowmode:simple"] == [[1, 2]]
    assert through["types:per_query"] == "big:9007199254740993"
    assert through["types:client"] == "num:1.50"
    assert through["binary:fields"] == ["binary"] * 7
    assert through["binary:row"] == {
        "s": 42,
        "i": 7,
        "b": "9007199254740993",
        "t": True,
        "x": "héllo",
        "n": None,
        "p": 11,
    }


def test_transaction_with_savepoints(through: Checks) -> None:
    assert through["tx:codes"] == ["23505", "25P02"]
    assert through["tx:ids"] == [1, 3]
    assert through["tx:rolled_back"] == 2


def test_listen_notify(through: Checks) -> None:
    assert through["notify:received"] == [
        ["via_chan", "one"],
        ["via_chan", "two ✓"],
        ["via_Other", "in tx"],
        ["via_chan", "self"],
    ]
    assert through["notify:usable"] == 1


def test_cancel_request_and_statement_timeout(through: Checks) -> None:
    assert through["cancel:code"] == "57014"
    assert through["cancel:fast"] is True
    assert through["cancel:usable"] == 1
    assert through["timeout:setting"] == "200ms"
    assert through["timeout:code"] == "57014"
    assert through["timeout:usable"] == 2


def test_cursor_reads_in_chunks(through: Checks) -> None:
    assert through["cursor:read"] == {"chunks": 25, "count": 25000, "sum": 25000 * 25001 // 2}
    assert through["cursor:closed_early"] == list(range(1, 11))
    assert through["cursor:usable"] == 3


def test_copy_streams(through: Checks) -> None:
    assert through["copy:from_rowcount"] == 20000
    assert through["copy:to_matches"] is True
    assert through["copy:to_rowcount"] == 20000
    assert through["copy:bad_row"] == "22P02"
    assert through["copy:after_bad"] == 20000
