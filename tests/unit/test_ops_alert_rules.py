"""The alert rules are valid for Prometheus itself (``promtool check rules``), behave as
their scenarios say (``promtool test rules``), read only metrics Touchstream exports, and
every alert has a scenario where it fires and one where it stays quiet."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promql import exported_series, metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
# What operators must be told about (the list): alert name -> a metric it reads.
REQUIRED = {
    "TouchstreamIngestErrors": "touchstream_http_requests_total",
    "TouchstreamProjectionLagGrowing": "touchstream_projection_lag_events",
    "TouchstreamPartitionLagGrowing": "touchstream_worker_partition_lag_records",
    "TouchstreamWorkerDown": "up",
    "TouchstreamDeadLetters": "touchstream_dead_letters_total",
    "TouchstreamViewsStale": "touchstream_projection_lag_seconds",
    "TouchstreamViewLatencyHigh": "touchstream_view_latency_seconds_bucket",
    "TouchstreamWebhookFailures": "touchstream_webhook_deliveries_total",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: `make services` installs Debian's prometheus package")
    return path


@cache
def rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_prometheus_accepts_the_rules_file() -> None:
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_prometheus_accepts_the_deployed_configuration_with_its_rule_files() -> None:
    config = PROMETHEUS / "prometheus.yml"
    result = subprocess.run([promtool(), "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout and f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_every_rule_scenario_passes_in_promtool() -> None:
    assert RULE_TESTS, "no promtool rule tests"
    result = subprocess.run([promtool(), "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_tests_do_fail_when_an_alert_misbehaves(tmp_path: Path) -> None:
    """The scenarios bite: the same scenarios against a rule file whose ingest alert has
    a threshold nobody reaches must fail."""
    broken = RULES.read_text(encoding="utf-8").replace("> 0.05", "> 0.99")
    assert broken != RULES.read_text(encoding="utf-8")
    (tmp_path / "alerts.yml").write_text(broken, encoding="utf-8")
    (tmp_path / "tests").mkdir()
    for test in RULE_TESTS:
        shutil.copy(test, tmp_path / "tests" / test.name)
    result = subprocess.run([promtool(), "test", "rules", *map(str, (tmp_path / "tests").glob("*.yml"))],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "TouchstreamIngestErrors" in result.stdout + result.stderr


def test_the_required_alerts_exist_with_a_severity_and_a_summary() -> None:
    for name, metric in REQUIRED.items():
        assert name in rules(), f"missing alert {name}"
        assert metric in metric_names(rules()[name]["expr"]), f"{name} does not read {metric}"
    for name, rule in rules().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_every_rule_reads_only_metrics_touchstream_exports() -> None:
    known = exported_series()
    for name, rule in rules().items():
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{name} reads {unknown}, which no Touchstream process exports"


def test_every_alert_has_a_scenario_where_it_fires_and_one_where_it_stays_quiet() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert set(rules()) <= fires, f"never seen firing: {set(rules()) - fires}"
    assert set(rules()) <= quiet, f"never seen quiet: {set(rules()) - quiet}"


def test_prometheus_loads_the_rules_file_it_is_given() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == [RULES.name]
    for path in RULE_TESTS:
        (rule_file,) = yaml.safe_load(path.read_text(encoding="utf-8"))["rule_files"]
        assert (path.parent / rule_file).resolve() == RULES
