"""The Grafana dashboards show only metrics Touchstream exports (histogram series by
their _bucket/_sum/_count names, counters by _total), cover what operators watch
(throughput, latency, lag, errors, dead letters, the lifecycle funnel, webhook deliveries,
next best contact), use the provisioned data source, and are mounted where the
provisioning file looks for them.
A real Prometheus runs every expression in tests/e2e/test_ops_prometheus.py."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tests.support.promql import exported_series, metric_names

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# section of the overview -> metrics that section must read
REQUIRED = {
    "Throughput": {"touchstream_events_total", "touchstream_projected_events_total",
                   "touchstream_worker_records_total"},
    "Latency": {"touchstream_http_request_duration_seconds_bucket", "touchstream_view_latency_seconds_bucket",
                "touchstream_ingest_seconds_bucket"},
    "Lag": {"touchstream_projection_lag_events", "touchstream_projection_lag_seconds",
            "touchstream_worker_partition_lag_records", "touchstream_worker_partition_lag_seconds"},
    "Errors": {"touchstream_http_requests_total", "up"},
    "Dead letters": {"touchstream_dead_letters_total"},
    "Lifecycle funnel": {"touchstream_lifecycle_customers", "touchstream_lifecycle_transitions_total"},
    "Resources": {"process_cpu_seconds_total", "process_resident_memory_bytes"},
    "Webhook deliveries": {"touchstream_webhook_deliveries_total", "touchstream_webhook_attempts_total",
                           "touchstream_webhook_delivery_seconds_bucket", "touchstream_webhook_lag_seconds"},
    "Next best contact": {"touchstream_triggers_fired_total", "touchstream_triggers_suppressed_total",
                          "touchstream_triggers_delivered_total", "touchstream_trigger_outcomes_total"},
}


@cache
def dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found += panel.get("panels", [])  # collapsed rows keep their panels inside
    return found


def sections(board: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Panels under each row, by the row's title."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    current = ""
    for panel in sorted(board["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if panel["type"] == "row":
            current = panel["title"]
            grouped[current] = list(panel.get("panels", []))
        else:
            grouped.setdefault(current, []).append(panel)
    return grouped


def expressions(board_panels: list[dict[str, Any]]) -> list[str]:
    return [target["expr"] for panel in board_panels for target in panel.get("targets", [])]


def test_there_is_a_dashboard_and_each_has_a_stable_uid_and_unique_panel_ids() -> None:
    assert DASHBOARDS
    uids = [dashboard(path)["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids) and all(uids)
    for path in DASHBOARDS:
        ids = [panel["id"] for panel in panels(dashboard(path))]
        assert len(ids) == len(set(ids)), path.name


def test_no_two_panels_overlap() -> None:
    for path in DASHBOARDS:
        cells: dict[tuple[int, int], str] = {}
        for panel in panels(dashboard(path)):
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = panel["title"]


def test_every_expression_reads_only_metrics_touchstream_exports() -> None:
    known = exported_series()
    for path in DASHBOARDS:
        for expr in expressions(panels(dashboard(path))):
            names = metric_names(expr)
            assert names, f"{path.name}: no metric in {expr!r}"
            assert names <= known, f"{path.name}: {names - known} in {expr!r} is exported by no Touchstream process"


def test_the_overview_covers_what_operators_watch() -> None:
    (overview,) = [dashboard(p) for p in DASHBOARDS if dashboard(p)["uid"] == "touchstream-overview"]
    grouped = sections(overview)
    for section, needed in REQUIRED.items():
        assert section in grouped, f"no {section} row"
        read = set().union(*(metric_names(e) for e in expressions(grouped[section])))
        assert needed <= read, f"{section} does not show {needed - read}"


def test_every_panel_uses_the_provisioned_prometheus_data_source() -> None:
    provisioning = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    (source,) = provisioning["datasources"]
    for path in DASHBOARDS:
        for panel in panels(dashboard(path)):
            if panel["type"] == "row":
                continue
            sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
            assert all(s == {"type": "prometheus", "uid": source["uid"]} for s in sources), panel["title"]


def test_grafana_is_given_the_dashboards_where_its_provisioning_looks() -> None:
    provider_file = GRAFANA / "provisioning" / "dashboards" / "touchstream.yaml"
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    (grafana,) = [s for s in compose["services"].values() if s.get("image", "").startswith("grafana/grafana:")]
    mounts = {PurePosixPath(target): (ROOT / "deploy" / source).resolve()
              for source, target, *_ in (volume.split(":") for volume in grafana["volumes"]) if source.startswith(".")}
    assert mounts[PurePosixPath(provider["options"]["path"])] == GRAFANA / "dashboards"
    assert mounts[PurePosixPath("/etc/grafana/provisioning/dashboards")] == provider_file.parent
