"""pgx v4 and lib/pq through a pass-through pgseal.

Each scenario runs once straight against Postgres and once through pgseal: the
two reports must agree check for check, and the values that matter are also
asserted outright (so a report that is wrong both ways still fails).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import Relay
from tests.scenarios import run_scenario, sqlstate

Reports = tuple[dict[str, Any], dict[str, Any]]

#: The row every type check reads back, however it travelled (binary or text).
TYPES = {
    "int2": -32767,
    "int4": 2147483647,
    "int8": "-9223372036854775807",
    "bool": True,
    "text": "héllo, wörld",
    "bytea": "000102feff",
    "date": "2024-02-29",
    "timestamp": "2023-12-31T23:59:58.123456Z",
    "timestamptz": "2021-06-01T10:30:00.654321Z",
    "uuid": "6f1d3b1c-2b9a-4f3e-9d7a-0a1b2c3d4e5f",
    "null": True,
}

#: Checks whose value differs between a direct connection and pgseal by design.
BY_DESIGN: dict[str, tuple[object, object]] = {
    # None since pgseal passes the backend's pid (with a secret of its own):
    # pgconn's PID() is the backend's through pgseal too.
}


def assert_same_reports(reports: Reports) -> None:
    direct, proxied = reports
    assert direct.keys() == proxied.keys()
    differ = {k: (direct[k], proxied[k]) for k in direct if direct[k] != proxied[k]}
    assert differ == {k: v for k, v in BY_DESIGN.items() if k in direct}


@pytest.fixture(scope="module")
def pgx_reports(go_program: Path, relay: Relay) -> Reports:
    return (
        run_scenario(go_program, "pgx-pass", relay.direct_dsn),
        run_scenario(go_program, "pgx-pass", relay.dsn()),
    )


@pytest.fixture(scope="module")
def pq_reports(go_program: Path, relay: Relay) -> Reports:
    return (
        run_scenario(go_program, "pq-pass", relay.direct_dsn + "?sslmode=disable"),
        run_scenario(go_program, "pq-pass", relay.dsn(sslmode="disable")),
    )


def test_pgx_reports_match_a_direct_connection(pgx_reports: Reports) -> None:
    assert_same_reports(pgx_reports)


@pytest.mark.parametrize("mode", ["extended", "simple"])
def test_pgx_types_binary_and_simple_protocol(pgx_reports: Reports, mode: str) -> None:
    got = pgx_reports[1]
    expected = {
        **TYPES,
        "numeric": "12345678900e-6",
        "jsonb": {"k": [1, "two", None], "ü": True},
        "int4[]": [1, -2, 3],
        "text[]": ["a", "b c", "", 'd"e'],
    }
    assert got[f"{mode}-select"] == expected
    assert [got[f"{mode}-insert-{i}"] for i in (1, 2, 3)] == ["ok"] * 3
    assert got[f"{mode}-table"] == [expected, expected]


def test_pgx_statement_cache(pgx_reports: Reports) -> None:
    assert pgx_reports[1]["statement-cache-sum"] == 2 * sum(range(200))


@pytest.mark.parametrize("mode", ["extended", "simple"])
def test_pgx_send_batch_with_an_error_in_the_middle(pgx_reports: Reports, mode: str) -> None:
    got = pgx_reports[1]
    ok = [got[f"{mode}-batch-ok-{i}"] for i in range(52)]
    assert ok == ["INSERT 0 1"] * 50 + ["SELECT 1", "UPDATE 10"]
    assert got[f"{mode}-batch-ok-close"] == "ok"
    assert got[f"{mode}-batch-error-0"] == "INSERT 0 1"
    # Postgres skips to the Sync: every later result reports the error.
    for i in (1, 2, 3):
        assert sqlstate(got[f"{mode}-batch-error-{i}"]) == "22012"
    assert sqlstate(got[f"{mode}-batch-error-close"]) == "22012"
    # ... and rolls back the implicit transaction, the insert before the error too.
    assert got[f"{mode}-batch-rows"] == [50, 10]
    assert sqlstate(got[f"{mode}-batch-syntax-0"]) == "42601"
    assert got[f"{mode}-batch-rows-after-syntax"] == 50


def test_pgx_copy_from_binary_and_copy_to(pgx_reports: Reports) -> None:
    got = pgx_reports[1]
    assert got["copy-from-rows"] == 2000
    assert got["copy-from-check"] == [sum(range(2000)), len(range(0, 2000, 7))]
    assert got["copy-to"]["tag"] == "COPY 3"
    assert got["copy-to"]["text"].splitlines()[1] == (
        "1\tname\\t1\\n\\\\\t\\\\x0100\t2020-01-01 00:00:01+00\t1.25\t{t,1}"
    )
    assert got["copy-to-binary"]["tag"] == "COPY 2000"
    assert got["copy-to-binary"]["bytes"] > 2000 * 40
    assert sqlstate(got["copy-from-bad-row"]) == "22P02"
    assert got["copy-after-bad-row"] == 2000


def test_pgx_transactions_and_savepoints(pgx_reports: Reports) -> None:
    got = pgx_reports[1]
    assert sqlstate(got["tx-error-in-savepoint"]) == "22012"
    assert sqlstate(got["tx-aborted-until-rollback"]) == "25P02"
    assert got["tx-rollback-savepoint"] == got["tx-after-savepoint"] == got["tx-commit"] == "ok"
    assert got["tx-ids"] == [1, 3, 5]
    assert got["tx-status-idle"] == "I"


def test_pgx_listen_notify(pgx_reports: Reports) -> None:
    got = pgx_reports[1]
    assert got["notifications"] == ["go_chan:payload-1", "go_chan:payload-2"]
    assert got["notification-0-from-sender"] is got["notification-1-from-sender"] is True
    assert got["notification-buffered"] == "payload-3"


def test_pgx_pool_with_concurrent_goroutines(pgx_reports: Reports) -> None:
    got = pgx_reports[1]
    assert got["pool-errors"] == ""
    assert got["pool-sums"] == [g * sum(range(100)) for g in range(8)]
    assert got["pool-rows"] == 80
    assert got["pool-max-conns"] == 4


def test_pgx_context_timeout_sends_a_cancel_request(pgx_reports: Reports) -> None:
    got = pgx_reports[1]
    assert sqlstate(got["timeout-error"]) == "context"
    assert got["timeout-fast"] is True
    assert got["timeout-conn-closed"] is True
    # The backend stopped sleeping: the CancelRequest reached it through pgseal.
    assert got["timeout-backend-cancelled"] is True
    assert sqlstate(got["cancel-error"]) == "57014"
    assert got["cancel-then-value"] == 1
    assert sqlstate(got["pool-timeout-error"]) == "context"
    assert got["pool-timeout-backend-cancelled"] is True
    assert [got[f"pool-after-timeout-{i}"] for i in range(4)] == [1, 2, 3, 4]


def test_pq_reports_match_a_direct_connection(pq_reports: Reports) -> None:
    assert_same_reports(pq_reports)


def test_pq_types_text_format(pq_reports: Reports) -> None:
    assert pq_reports[1]["types"] == {
        **TYPES,
        "int2": -32768,
        "int8": "-9223372036854775808",
        "numeric": "12345.678900",
        "jsonb": '{"k": [1, "two", null], "ü": true}',
        "int8[]": [1, -2, 3],
        "text[]": ["a", "b c", "", 'd"e', "NULL"],
        "present": "x",
    }


def test_pq_prepare_exec_query_and_arrays(pq_reports: Reports) -> None:
    got = pq_reports[1]
    assert got["exec-updated"] == 10
    assert got["query-any"] == ["3:upd", "50:n50", "99:n99"]
    assert got["query-array-column"] == len(range(2, 100, 3))
    assert sqlstate(got["bad-parameter"]) == "22P02"
    assert got["after-bad-parameter"] == 100


def test_pq_transactions(pq_reports: Reports) -> None:
    got = pq_reports[1]
    assert sqlstate(got["tx-error"]) == "22P02"
    assert got["tx-rollback-to-savepoint"] == got["tx-after-savepoint"] == "ok"
    assert got["tx-commit"] == got["tx-rollback"] == "ok"
    assert got["tx-ids"] == [500, 501]


def test_pq_copy_in(pq_reports: Reports) -> None:
    got = pq_reports[1]
    assert got["copy-in-flush"] == got["copy-in-commit"] == "ok"
    assert got["copy-in-rows"] == [500, 100, "c\t1001\\"]


def test_pq_cancel_on_context(pq_reports: Reports) -> None:
    got = pq_reports[1]
    # lib/pq sends a CancelRequest and waits for the server's answer.
    assert sqlstate(got["cancel-error"]) == "57014"
    assert got["cancel-fast"] is True
    assert got["cancel-then-query"] == 1
    assert got["cancel-backend-still-sleeping"] == 0
