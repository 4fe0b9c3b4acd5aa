"""pgjdbc (PostgreSQL JDBC 42.x) through a pass-through pgseal.

``PassThrough.java`` runs every scenario twice, straight at Postgres and through
pgseal (two JVMs at once); each test asserts on pgseal's result and that it is
the one Postgres itself gives. The scenarios: Statement and PreparedStatement
(past prepareThreshold: named statements S_n, and Describe of parameters and
columns), binary transfer with prepareThreshold=1, executeBatch of 1000 INSERTs
pipelined under one Sync (reWriteBatchedInserts false and true), a duplicate key
in the middle of a batch, setFetchSize (Execute with a row limit, two portals
open at once), savepoints and autosave=always, setQueryTimeout and cancel() (a
CancelRequest relayed to the right backend), CopyManager in and out,
LISTEN/NOTIFY, getMoreResults over a multi-statement string and
DatabaseMetaData (the driver's own catalog queries).
"""

from __future__ import annotations

import json
from typing import Any

from tests.jdbc.conftest import PassThroughRuns

SUCCESS_NO_INFO = -2  # an update count of a rewritten (multi-row VALUES) batch
EXECUTE_FAILED = -3


def same(runs: PassThroughRuns, name: str) -> dict[str, Any]:
    """The check ``name`` through pgseal, asserted equal to the direct one (timings aside)."""

    def normal(check: dict[str, Any], prefix: str) -> dict[str, Any]:
        text = json.dumps({k: v for k, v in check.items() if k != "elapsed_ms"})
        result: dict[str, Any] = json.loads(text.replace(prefix, "T"))
        return result

    proxy = normal(runs.proxy[name], "jdbc_proxy")
    assert proxy == normal(runs.direct[name], "jdbc_direct")
    return proxy


def test_statement(passthrough: PassThroughRuns) -> None:
    check = same(passthrough, "statement")
    assert check["inserted"] == 3
    assert check["values"] == [["1", "x", "1.50", None, "é€"]]
    assert check["table"] == [["1", "one"], ["2", "two"], ["3", None]]


def test_prepared_statement_past_prepare_threshold(passthrough: PassThroughRuns) -> None:
    check = same(passthrough, "prepared")
    results = check["results"]
    assert len(results) == 12
    assert results[11] == [
        "12",
        "s11'\\\"é",
        "12345678901234567901.5",
        "000bff",
        "2024-02-29 12:34:56.789",
        "00000000-0000-000b-0000-00000000002a",
        "false",
        None,
    ]
    # Reused past prepareThreshold (5): a named server statement.
    assert check["server_statements"] == ["S_1"]
    assert check["param_types"] == [
        "int4", "text", "numeric", "bytea", "timestamp", "uuid", "bool", "int4",
    ]  # fmt: skip
    assert check["column_types"] == check["param_types"]


def test_binary_transfer_with_prepare_threshold_1(passthrough: PassThroughRuns) -> None:
    check = same(passthrough, "binary")
    assert len(check["results"]) == 5
    assert check["results"][4] == [
        "-4",
        "9223372036854775803",
        "0.4",
        "-0.0004",
        "1999-12-30",
        "1700000000004",
        "ffffffff-ffff-ffff-0000-000000000004",
        "04",
        '{"4","2"}',
        "b4",
        "4",
    ]
    assert check["server_statements"], "prepareThreshold=1 names the statement at once"


def test_execute_batch_of_1000_inserts(passthrough: PassThroughRuns) -> None:
    plain = same(passthrough, "batch_rewrite_false")
    rewritten = same(passthrough, "batch_rewrite_true")
    for check in (plain, rewritten):
        assert check["counts"] == 1000
        assert check["rows"] == [["1000", "499500", "4995.00", "32390"]]
    assert plain["counts_sum"] == 1000
    assert rewritten["counts_sum"] == 1000 * SUCCESS_NO_INFO


def test_batch_with_a_duplicate_key_in_the_middle(passthrough: PassThroughRuns) -> None:
    for rewrite in ("false", "true"):
        autocommit = same(passthrough, f"batch_duplicate_autocommit_{rewrite}")
        assert autocommit["raised"] is True
        assert autocommit["exception"]["sqlstate"] == "23505"
        assert autocommit["exception"]["next_sqlstate"] == "23505"
        assert autocommit["exception"]["update_counts"] == [EXECUTE_FAILED] * 7
        # One Sync for the whole batch: one implicit transaction, rolled back.
        assert autocommit["rows_after"] == []
        assert autocommit["usable"] == 42
        tx = same(passthrough, f"batch_duplicate_transaction_{rewrite}")
        assert tx["exception"]["sqlstate"] == "23505"
        assert tx["aborted"]["sqlstate"] == "25P02"
        assert tx["rows_after_rollback"] == []
        assert tx["rows_after_commit"] == [["200"]]


def test_fetch_size_two_portals_in_turns(passthrough: PassThroughRuns) -> None:
    check = same(passthrough, "fetch_size")
    assert (check["rows_a"], check["sum_a"]) == (2500, 2500 * 2501 // 2)
    assert (check["rows_b"], check["sum_b"]) == (300, 300 * 301 // 2)


def test_savepoints_and_autosave(passthrough: PassThroughRuns) -> None:
    check = same(passthrough, "savepoints")
    assert check["duplicate"]["sqlstate"] == "23505"
    assert check["rows"] == [["1"], ["4"], ["5"]]
    autosave = same(passthrough, "autosave")
    assert autosave["duplicate"]["sqlstate"] == "23505"
    assert autosave["rows"] == [["1"], ["4"], ["5"], ["10"], ["11"]]


def test_query_timeout_and_cancel_interrupt_pg_sleep(passthrough: PassThroughRuns) -> None:
    for name, usable in (("query_timeout", 7), ("cancel", 8)):
        check = same(passthrough, name)
        assert check["raised"] is True
        assert check["exception"]["sqlstate"] == "57014"
        assert check["usable"] == usable
        assert passthrough.proxy[name]["elapsed_ms"] < 10_000  # pg_sleep(20) was cut short


def test_copy_manager_in_and_out(passthrough: PassThroughRuns) -> None:
    check = same(passthrough, "copy")
    assert (check["in"], check["csv_in"], check["out"]) == (5000, 2, 5002)
    assert check["out_head"].startswith("-2\tline\\nbreak\t2.5\n-1\tquoted, comma\t\\N\n")
    assert check["bad_row"]["sqlstate"] == "22P02"
    assert check["usable"] == 5002


def test_listen_notify(passthrough: PassThroughRuns) -> None:
    check = same(passthrough, "notify")
    assert check["payloads"] == ["hello", "7000 chars", "from a prepared statement"]


def test_get_more_results_of_a_multi_statement_string(passthrough: PassThroughRuns) -> None:
    check = same(passthrough, "more_results")
    assert check["seen"] == ["rows [[1]]", "count 2", "rows [[b, 2]]", "count 1", "count 1"]
    assert check["error_in_middle"]["sqlstate"] == "22012"
    assert check["usable"] == 9


def test_database_metadata(passthrough: PassThroughRuns) -> None:
    check = same(passthrough, "metadata")
    assert "T_batch_false TABLE" in check["tables"]
    assert "T_copy TABLE" in check["tables"]
    assert check["columns"] == ["id int4 4 NO", "v text 12 YES", "n numeric 2 YES"]
    assert check["primary_keys"] == ["id 1"]
    assert check["type_info_rows"] is True
    assert check["product"] == "PostgreSQL"
