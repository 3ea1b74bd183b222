"""The benchmark harness runs end to end (at a small scale) and reports every figure.

No timing is asserted here: speed goals live in ``make bench`` and docs/BENCHMARKS.md.
This keeps the harness itself from rotting unnoticed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.bench.run import run_bench


@pytest.mark.e2e
def test_the_quick_benchmark_reports_every_figure_and_an_identical_replay(tmp_path: Path) -> None:
    results = run_bench("quick", tmp_path)
    assert results["baseline_naive_load_modify_save"]["events"] == 300
    assert results["batched_http_ingest"]["accepted"] == results["batched_http_ingest"]["events"] == 2000
    assert results["single_event_ingest"]["accepted"] == 300
    assert results["ack_to_visible"]["missing"] == 0
    assert results["view_reads"]["samples"] == 100
    assert results["log_large"]["fold"]["events"] == results["log_large"]["written"]["events"] == 12_000
    assert results["replay"]["identical"] is True and results["replay"]["exit_code"] == 0
    assert results["replay"]["position"] == 12_000
    lifecycle = results["lifecycle"]
    assert lifecycle["fold_overhead"]["events"] == 2400 and lifecycle["fold_overhead"]["purchases"] > 0
    assert lifecycle["tick_none_due"]["customers"] == 12_000  # every tick visited nobody (checked inside)
    assert lifecycle["per_due_customer"]["due"] == lifecycle["per_due_customer"]["transitions"] == 240
    value = results["value"]
    assert value["rfm_overhead"]["events"] == 3000  # the small log, folded with and without RFM cells
    assert value["refit"]["customers"] == 12_000 and value["refit"]["converged"] is True
    assert value["refit"]["spend_parameters"] is not None and value["refit"]["portfolio_lifetime_value"] > 0
    assert [row["absorbed_events"] for row in results["merge"]["rows"]] == [10, 100, 1000]
    reads = results["reads"]  # the as-of view and the desk card of one customer with 1,000 touchpoints
    assert reads["touchpoints"] == 1000 and reads["as_of_view"]["p99_ms"] > 0 and reads["desk_card"]["p99_ms"] > 0
    policy = results["merge_policy"]  # the same log folded with and without the merge policy
    assert policy["events"] == 2400 and 0 < policy["policy_merges_decided"] <= policy["conflicts"]
    export = value["export"]  # every card of the large log's customers, each stored five times
    assert export["cards"] == 5 * export["customers_folded"] and len(export["csv_runs_cards_per_second"]) == 3
