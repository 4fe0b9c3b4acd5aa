"""tokio-postgres through a pass-through pgseal.

The scenario runs once straight against Postgres and once through pgseal: the
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

#: The sample row, sent as binary parameters and read back in binary.
SAMPLE = {
    "int2": -32768,
    "int4": 2147483647,
    "int8": "-9223372036854775808",
    "bool": True,
    "text": "héllo, wörld",
    "bytea": "000102feff",
    "date": "2024-02-29",
    "timestamp": "2023-12-31T23:59:58.123456",
    "timestamptz": "2021-06-01T10:30:00.654321Z",
    "uuid": "6f1d3b1c-2b9a-4f3e-9d7a-0a1b2c3d4e5f",
    "jsonb": {"k": [1, "two", None], "ü": True},
    "int4[]": [1, -2, 3],
    "text[]": ["a", "b c", "", 'd"e', None],
    "null": True,
    "numeric": "-12345.678900",
}

#: The same row in the simple protocol's text.
SAMPLE_TEXT = [
    "-32768",
    "2147483647",
    "-9223372036854775808",
    "t",
    "héllo, wörld",
    "\\x000102feff",
    "2024-02-29",
    "2023-12-31 23:59:58.123456",
    "2021-06-01 10:30:00.654321+00",
    "6f1d3b1c-2b9a-4f3e-9d7a-0a1b2c3d4e5f",
    '{"k": [1, "two", null], "ü": true}',
    "{1,-2,3}",
    '{a,"b c","","d\\"e",NULL}',
    None,
    "-12345.678900",
]


@pytest.fixture(scope="module")
def reports(rust_program: Path, relay: Relay) -> Reports:
    return (
        run_scenario(rust_program, "pass", relay.direct_dsn),
        run_scenario(rust_program, "pass", relay.dsn()),
    )


@pytest.fixture(scope="module")
def got(reports: Reports) -> dict[str, Any]:
    return reports[1]


def test_reports_match_a_direct_connection(reports: Reports) -> None:
    direct, proxied = reports
    assert direct.keys() == proxied.keys()
    assert {k: (v, proxied[k]) for k, v in direct.items() if v != proxied[k]} == {}


def test_binary_parameters_and_results_of_every_type(got: dict[str, Any]) -> None:
    assert got["select"] == SAMPLE
    table = got["table"]
    # tokio-postgres encodes each parameter by the type the Describe reported.
    assert table["insert-params"] == [
        21, 23, 20, 16, 25, 17, 1082, 1114, 1184, 2950, 3802, 1007, 1009, 25, 1700,
    ]  # fmt: skip
    assert table["inserted"] == 2
    assert table["rows"] == [SAMPLE, SAMPLE]
    assert table["text"] == [SAMPLE_TEXT, {"complete": 1}]


def test_prepared_statements_reused_and_closed(got: dict[str, Any]) -> None:
    assert got["prepared-reused"] == {"params": [23], "sum": 2 * sum(range(200))}
    # A fresh named statement per call, closed when dropped.
    assert got["one-shot-sum"] == sum(range(1, 201))
    assert got["prepared-typed"] == "typed!"
    assert sqlstate(got["prepare-syntax-error"]) == "42601"
    assert got["after-syntax-error"] == 7
    assert got["query-rows"] == [1, 2, 3, 4, 5]
    assert got["query-opt-none"] is True


def test_pipelined_queries_with_one_failing(got: dict[str, Any]) -> None:
    # Each query has its own Sync: the failure touches no other query.
    assert [got[f"pipeline-{i}"] for i in range(20) if i != 10] == [
        i + 1 for i in range(20) if i != 10
    ]
    assert sqlstate(got["pipeline-10"]) == "22012"
    assert got["pipeline-inserts"] == {"failed": ["23505"], "rows": 30}


def test_simple_protocol(got: dict[str, Any]) -> None:
    assert got["simple-multi"] == [
        {"complete": 0},
        {"complete": 2},
        ["1", "a"],
        ["2", None],
        {"complete": 2},
        ["x"],
        {"complete": 1},
    ]
    assert sqlstate(got["simple-error"]) == "22012"
    assert got["simple-after-error"] == [["2"], {"complete": 1}]
    assert got["batch-execute"] == "ok"


def test_copy_in_and_out_binary_and_text(got: dict[str, Any]) -> None:
    assert got["copy-in-binary"] == {"copied": 2000, "sum": sum(range(2000)), "sevens": 286}
    assert got["copy-in-text"] == 2
    assert sqlstate(got["copy-in-bad-row"]) == "22P02"
    assert got["copy-rows"] == 2002
    assert got["copy-out-text"].splitlines() == [
        f"{i}\tname\\t{i}\\n\\\\\t\\\\x0{i}00\t2020-01-01 00:00:01+00" for i in range(3)
    ]
    assert got["copy-out-binary"] == {"rows": 2002, "sum": sum(range(2000)) + 10001, "last": "NULL"}


def test_cancel_token_interrupts_a_query(got: dict[str, Any]) -> None:
    assert sqlstate(got["cancel-error"]) == "57014"
    assert got["cancel-fast"] is True
    assert got["cancel-request"] == "ok"
    assert got["cancel-then-query"] == 1


def test_transactions_and_savepoints(got: dict[str, Any]) -> None:
    assert got["tx-setup"] == "ok"
    assert sqlstate(got["tx-error-in-savepoint"]) == "22012"
    assert sqlstate(got["tx-aborted-until-rollback"]) == "25P02"
    assert got["tx-rollback-savepoint"] == got["tx-commit"] == got["tx-nested"] == "ok"
    assert got["tx-dropped"] == 1  # inserted, then rolled back when dropped
    assert got["tx-ids"] == [1, 3, 5]
    # A portal read four rows at a time (Execute with a row limit, PortalSuspended).
    assert got["portal-chunks"] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert got["tx-serializable-read-only"] == {"level": "serializable", "read-only": "on"}
