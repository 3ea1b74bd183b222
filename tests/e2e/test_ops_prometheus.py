"""Prometheus itself judges what Touchstream exports: ``promtool check metrics`` on the
live ``/metrics`` of every process of each runtime, and a real Prometheus server that
scrapes a running Touchstream, evaluates the alert rules and answers PromQL about the
events we posted."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.metrics_catalogue import PROCESS_METRICS, catalogue
from tests.support.api import Api, call, purchase, touchpoint, unique
from tests.support.prometheus import RunningPrometheus
from tests.support.server import RunningServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
T = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: `make services` installs Debian's prometheus package")
    return subprocess.run([binary, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)


def exercise(api: Api) -> None:
    """Accepted, duplicate and rejected events, a read that waits: every family gets samples."""
    uid = unique()
    ref = {"emails": [f"ops.{uid}@example.com"]}
    first = call(f"ops-{uid}-1", T, ref)
    last = api.ingest([first, purchase(f"ops-{uid}-2", T, ref, order_id="o-1", amount="9.50")])
    assert api.post_events(first).json()["duplicate"] == 1
    assert api.post_events({**call(f"ops-{uid}-3", T, ref), "channel": "smoke"}).status_code == 422
    api.find(email=f"ops.{uid}@example.com", min_position=last["position"])


def contact_and_convert(api: Api) -> None:
    """A contact form fires the call-back rule (rules/default.yaml); the customer's purchase
    a minute later converts that trigger. Dated now: a contact decided after its validity
    (an event received long after it happened) is suppressed as expired, not fired."""
    uid = f"nbc-{unique()}"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    api.ingest(touchpoint("web_form", f"{uid}-f", at, customer={"customer_id": uid}, channel="web", form_id="contact"))
    api.ingest(purchase(f"{uid}-p", at + timedelta(minutes=1), {"customer_id": uid}, order_id=f"{uid}-o",
                        amount="120.00"))


def worker_metrics_urls(runtime: Any) -> list[str]:
    stack = getattr(runtime, "stack", None)
    return [f"http://{w.host}:{w.port}/metrics" for w in stack.workers] if stack is not None else []


def test_promtool_finds_nothing_to_complain_about_in_every_process_s_metrics(runtime: Any) -> None:
    exercise(Api(runtime))
    pages = {"api": runtime.client.get("/metrics")}
    for n, url in enumerate(worker_metrics_urls(runtime)):
        pages[f"worker-{n}"] = httpx.get(url, timeout=10)
    for role, page in pages.items():
        assert page.status_code == 200, (role, page.text[:300])
        assert page.headers["content-type"].startswith("text/plain"), role
        checked = promtool_check(page.text)
        assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), (
            role, checked.stdout, checked.stderr)
        families = {f.name: f.type for f in text_string_to_metric_families(page.text)}
        for name, kind in PROCESS_METRICS.items():  # process resources are exported by every process
            assert families.get(name.removesuffix("_total")) == kind, (role, name)
        declared = {s.name.removesuffix("_total") for s in catalogue()}
        assert declared <= families.keys(), (role, declared - families.keys())
    # ingest to view is measured where views are written: the embedded API, or the workers
    folding = [page for role, page in pages.items() if role.startswith("worker")] or [pages["api"]]
    latencies = [v for page in folding for _, v in samples(page.text, "touchstream_view_latency_seconds_count")]
    assert sum(latencies) >= 1, latencies
    if len(pages) > 1:  # workers: lag in records and in seconds for the partitions they own
        lags = [samples(page.text, "touchstream_worker_partition_lag_seconds") for role, page in pages.items()
                if role != "api"]
        assert any(lags) and all(v >= 0 for lag in lags for _, v in lag), lags


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == name]


def test_promtool_does_complain_about_metrics_that_break_the_conventions() -> None:
    bad = ("# HELP touchstream_posts counted\n# TYPE touchstream_posts counter\ntouchstream_posts 1\n"
           "# HELP touchstream_wait_ms waited\n# TYPE touchstream_wait_ms gauge\ntouchstream_wait_ms 3\n")
    checked = promtool_check(bad)
    assert checked.returncode != 0
    assert "_total" in checked.stdout + checked.stderr and "abbreviated units" in checked.stdout + checked.stderr


def dashboard_expressions() -> list[str]:
    found = []
    for path in sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")):
        stack = list(json.loads(path.read_text(encoding="utf-8"))["panels"])
        while stack:
            panel = stack.pop()
            stack += panel.get("panels", [])
            found += [target["expr"] for target in panel.get("targets", [])]
    assert found
    return found


def wait_for(probe: Any, timeout: float, what: str) -> Any:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout} s (last: {last!r})")


def test_a_real_prometheus_scrapes_touchstream_evaluates_the_rules_and_answers_promql(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "touchstream") as server:
        api = Api(server)
        rules = [ROOT / "deploy" / "prometheus" / "alerts.yml"]
        with RunningPrometheus(tmp_path / "prometheus", {"touchstream-api": [f"127.0.0.1:{server.port}"]},
                               rules) as prometheus:
            exercise(api)
            accepted = 'sum(touchstream_events_total{job="touchstream-api",result="accepted"})'
            wait_for(lambda: [r for r in prometheus.query(accepted) if float(r["value"][1]) == 2], 30,
                     "two accepted events seen by Prometheus")
            (up,) = prometheus.query('up{job="touchstream-api"}')
            assert up["value"][1] == "1"
            by_result = {r["metric"]["result"]: float(r["value"][1]) for r in
                         prometheus.query('sum by (result) (touchstream_events_total{job="touchstream-api"})')}
            assert by_result == {"accepted": 2, "duplicate": 1, "rejected": 1}
            assert prometheus.query('process_resident_memory_bytes{job="touchstream-api"} > 0')
            assert prometheus.query("touchstream_projection_lag_events == 0")

            def evaluated() -> list[dict[str, Any]]:
                groups = prometheus.get("/api/v1/rules")["groups"]
                rules_seen = [rule for group in groups for rule in group["rules"]]
                return rules_seen if rules_seen and all(r.get("lastEvaluation", "").startswith("20")
                                                        for r in rules_seen) else []

            for expr in dashboard_expressions():  # Prometheus parses and runs every panel's query
                prometheus.query(expr.replace("$__rate_interval", "5s").replace("$__range", "1m"))

            # the next-best-contact row answers from real figures; a counter is born at its first
            # increment, so one conversion creates the series and a second one moves them
            contact_and_convert(api)
            wait_for(lambda: prometheus.query('touchstream_trigger_outcomes_total{outcome="converted"}'), 30,
                     "a converted trigger seen by Prometheus")
            contact_and_convert(api)
            row = {e for e in dashboard_expressions() if "trigger" in e}
            (conversion,) = [e for e in row if 'outcome="converted"' in e]
            (by_channel,) = [e for e in row if e.startswith("sum by (channel) (rate(touchstream_triggers_fired")]

            def moved(expr: str, label: str) -> dict[str, float]:
                answer = prometheus.query(expr.replace("$__rate_interval", "30s").replace("$__range", "1m"))
                return {r["metric"][label]: float(r["value"][1]) for r in answer if float(r["value"][1]) > 0}

            assert "call" in wait_for(lambda: moved(by_channel, "channel"), 30, "call-backs fired, per channel")
            rates = wait_for(lambda: moved(conversion, "rule"), 30, "a conversion rate per rule")
            assert set(rates) == {"callback_after_contact_form"}, rates  # the welcome pack had no consent
            lag = 'max by (job) (touchstream_projection_lag_events)'
            assert [r["metric"] for r in prometheus.query(lag)] == [{"job": "touchstream-api"}]

            seen = wait_for(evaluated, 20, "every rule evaluated")
            assert all(rule["health"] == "ok" for rule in seen), [(r["name"], r.get("lastError")) for r in seen]
            firing = {rule["name"] for rule in seen if rule["state"] != "inactive"}
            # a healthy platform with no worker job: only the no-worker alert may be pending
            assert firing <= {"TouchstreamNoWorkerUp"}, firing
