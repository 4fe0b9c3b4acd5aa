"""The 1-minute soak with faults (tests/ops/soak.py); ``bench/soak`` runs long ones."""

from __future__ import annotations

from pathlib import Path

from tests.ops.soak import SoakOptions, run_soak


async def test_soak_one_minute_with_faults_loses_nothing(tmp_path: Path) -> None:
    report = await run_soak(SoakOptions(clients=50, seconds=60), tmp_path)
    print(report.text())  # the figures, with -s or on failure
    assert report.ok, report.text()
    # The run did what it claims: load, every kind of fault, rows to check.
    assert report.faults["postgres restarted"] == 1
    for kind in ("client killed mid-query", "query cancelled", "upstream link reset"):
        assert report.faults[kind] >= 1, kind
    assert report.faults["upstream delayed"] + report.faults["upstream stalled"] >= 1
    assert report.rows_verified >= 1000
    assert report.ops["read"] >= 1000
    assert report.ops["search"] >= 100
    assert report.rows_lost == 0
    assert report.envelopes_checked >= 3 * report.rows_verified
