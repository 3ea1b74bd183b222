"""The metrics catalogue follows Prometheus naming conventions and docs/METRICS.md is
generated from it, so a metric added, renamed or re-documented in code without
regenerating the document fails here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from services import metrics
from services.metrics_catalogue import METRICS_DOC, catalogue, render_markdown, sample_names

ROOT = Path(__file__).resolve().parents[2]
SNAKE = re.compile(r"^touchstream_[a-z][a-z0-9]*(_[a-z0-9]+)*$")
# Labels name kinds of things, never a person: no label may hold identifiers or payloads.
PERSONAL = re.compile(r"customer|email|phone|name|address|identifier|ip|user", re.I)


def test_docs_metrics_md_is_generated_from_the_code() -> None:
    assert METRICS_DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/METRICS.md is stale: run `touchstream metrics-doc --out docs/METRICS.md`")


def test_the_metrics_doc_command_reports_a_stale_document(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "services.cli", "metrics-doc"]
    printed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert printed == render_markdown()
    checked = subprocess.run([*command, "--check"], cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_every_metric_has_the_prefix_a_snake_case_name_and_help() -> None:
    specs = catalogue()
    assert len(specs) == len({s.name for s in specs}) >= 20
    for spec in specs:
        assert SNAKE.match(spec.name), spec.name
        assert spec.help.strip() and spec.help.rstrip().endswith("."), spec.name


def test_counters_end_in_total_and_nothing_else_does() -> None:
    for spec in catalogue():
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name


def test_durations_are_in_seconds_and_histograms_say_what_they_count() -> None:
    for spec in catalogue():
        assert not re.search(r"_(ms|millis|milliseconds|micros|minutes|hours|kb|mb)(_|$)", spec.name), spec.name
        if spec.kind == "histogram":
            assert spec.unit == "seconds" or spec.name.endswith("_events"), spec.name
            assert list(spec.buckets) == sorted(spec.buckets) and spec.buckets
        if "latency" in spec.name or "duration" in spec.name or "lag_seconds" in spec.name:
            assert spec.unit == "seconds", spec.name


def test_no_label_can_carry_customer_data() -> None:
    for spec in catalogue():
        for label in spec.labels:
            assert not PERSONAL.search(label), f"{spec.name}: label {label!r}"


def test_histograms_store_bucket_sum_and_count_series() -> None:
    (spec,) = [s for s in catalogue() if s.name == "touchstream_http_request_duration_seconds"]
    assert sample_names(spec) == {f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count"}
    (events,) = [s for s in catalogue() if s.name == "touchstream_events_total"]
    assert sample_names(events) == {"touchstream_events_total"}


def test_every_declared_metric_is_emitted_by_some_module() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "services").rglob("*.py")
                        if p.name not in ("metrics.py", "metrics_catalogue.py"))
    declared = [n for n in metrics.__all__ if n.isupper()]
    silent = [n for n in declared if not re.search(rf"metrics\.{n}\b", sources)]
    assert not silent, f"declared but never emitted: {silent}"
