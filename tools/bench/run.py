"""Run every benchmark of the spine in one go and print figures beside goals and the
same-run baseline (``touchstream bench``; ``--scale quick`` is the smoke test's size;
``--kafka`` adds the scale-out comparison of ``tools.bench.kafka``)."""

from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from services.progress import Meter, meter
from tools.bench import http_scenarios as http
from tools.bench.baseline import naive_load_modify_save
from tools.bench.scale import fold_log, replay_log, write_log
from tools.bench.server import LocalServer
from tools.traffic import TrafficOptions, generate

__all__ = ["Scale", "SCALES", "run_bench", "print_report"]


@dataclass(frozen=True)
class Scale:
    baseline_events: int
    batched_events: int
    batched_customers: int
    single_requests: int
    paced_seconds: float
    paced_rate: float
    reads: int
    small_log: tuple[int, int]
    large_log: tuple[int, int]


SCALES = {
    "full": Scale(3000, 100_000, 20_000, 20_000, 10, 1000, 5000, (50_000, 10_000), (1_000_000, 200_000)),
    "quick": Scale(300, 2000, 400, 300, 1, 200, 100, (3000, 600), (12_000, 2400)),
}


def run_bench(scale_name: str = "full", workdir: Path | None = None, *, spine: bool = True,
              kafka: bool = False) -> dict[str, Any]:
    """The spine's figures (``spine``) and the scale-out comparison (``kafka``:
    ``tools.bench.kafka``, needs the Tansu broker of the ``test`` extra)."""
    base = Path(workdir or tempfile.mkdtemp(prefix="touchstream-bench-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "scale": scale_name,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    if spine:
        results.update(_spine(SCALES[scale_name], base))
    if kafka:
        from tools.bench.kafka import run_kafka_bench

        results["kafka"] = run_kafka_bench(scale_name, base / "kafka")
    return results


def _spine(scale: Scale, base: Path) -> dict[str, Any]:
    with meter("benchmark", total=10) as shown:
        return _measured(scale, base, shown)


def _measured(scale: Scale, base: Path, shown: Meter) -> dict[str, Any]:
    results: dict[str, Any] = {}

    def step(name: str) -> None:
        shown.advance()
        shown.describe(f"benchmark: {name}")

    shown.describe("benchmark: the naive baseline")
    sample = list(generate(TrafficOptions(customers=max(50, scale.baseline_events // 6), events=scale.baseline_events,
                                          seed=5, duplicate_rate=0.0)))
    results["baseline_naive_load_modify_save"] = naive_load_modify_save(sample, base / "naive")
    step("batched HTTP ingest")
    with LocalServer(base / "batched") as server:
        results["batched_http_ingest"] = http.batched_ingest(server, scale.batched_events, scale.batched_customers)
    step("single-event ingest, read-your-writes, reads")
    with LocalServer(base / "single") as server:
        results["single_event_ingest"] = http.single_event_ingest(server, scale.single_requests)
        results["ack_to_visible"] = http.ack_to_visible(server, scale.paced_seconds, scale.paced_rate)
        results["view_reads"] = http.view_reads(server, scale.reads)
    for label, (events, customers) in (("small", scale.small_log), ("large", scale.large_log)):
        step(f"the {label} log")
        directory = base / f"log-{label}"
        results[f"log_{label}"] = {"written": write_log(directory, events, customers), "fold": fold_log(directory)}
    step("replay")
    results["replay"] = replay_log(base / "log-large")
    from tools.bench.lifecycle import run_lifecycle_bench

    step("lifecycle")
    large_events, large_customers = scale.large_log
    results["lifecycle"] = run_lifecycle_bench(base / "lifecycle", events=large_events // 5,
                                               customers=large_customers // 10, deadlines=large_events,
                                               due=large_customers // 10)
    from tools.bench.value import export_cards, refit_customers, rfm_overhead

    step("customer value")
    results["value"] = {"rfm_overhead": rfm_overhead(base / "log-small"), "refit": refit_customers(large_events),
                        # last user of the large log: the export adds copies of its states
                        "export": export_cards(base / "log-large", copies=5)}
    from tools.bench.nbc import run_nbc_bench

    step("next best contact")
    results["nbc"] = run_nbc_bench(events=large_events // 5, customers=large_customers // 10)
    from tools.bench.merge import merge_cost, policy_overhead

    results["merge"] = merge_cost((10, 100, 1000, 10_000) if large_events >= 1_000_000 else (10, 100, 1000))
    policy_events = min(60_000, large_events // 5)
    results["merge_policy"] = policy_overhead(events=policy_events, customers=policy_events // 10)
    from tools.bench.reads import read_latencies

    step("audit and desk reads")
    results["reads"] = read_latencies(base, touchpoints=1000, reads=200 if large_events >= 1_000_000 else 50)
    shown.advance()
    baseline = results["baseline_naive_load_modify_save"]["events_per_second"]
    small, large = results["log_small"]["fold"], results["log_large"]["fold"]
    results["ratios"] = {
        "batched_ingest_vs_naive": round(results["batched_http_ingest"]["events_per_second"] / baseline, 1),
        "fold_cost_large_vs_small": round(large["us_per_event"] / small["us_per_event"], 2),
    }
    return results


def print_report(results: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    if "replay" in results:
        _print_spine(results, console)
    if "kafka" in results:
        from tools.bench.kafka import print_kafka_report

        print_kafka_report(results["kafka"], console)


def _print_spine(r: dict[str, Any], console: Console) -> None:
    rows = [
        ("baseline: naive eventsourcing load-modify-save", f"{r['baseline_naive_load_modify_save']['events_per_second']:,} ev/s", "—"),
        ("batched HTTP ingest → durable log → view updated", f"{r['batched_http_ingest']['events_per_second']:,} ev/s "
         f"(×{r['ratios']['batched_ingest_vs_naive']} baseline; acked {r['batched_http_ingest']['acked_events_per_second']:,}/s)",
         "≥ 10,000 ev/s"),
        ("single-event durable ingest", f"{r['single_event_ingest']['requests_per_second']:,} req/s", "≥ 3,000 req/s"),
        ("ack → visible in view, p99", f"{r['ack_to_visible']['ack_to_visible']['p99_ms']} ms at "
         f"{r['ack_to_visible']['rate_per_second']:.0f} ev/s", "≤ 50 ms"),
        ("GET view p99", f"{r['view_reads']['p99_ms']} ms", "≤ 5 ms"),
        ("fold peak RSS, large log", f"{r['log_large']['fold']['peak_rss_mib']} MiB "
         f"({r['log_large']['fold']['events']:,} ev, {r['log_large']['fold']['customers']:,} customers)", "≤ 512 MiB"),
        ("fold cost per event small → large", f"{r['log_small']['fold']['us_per_event']} → "
         f"{r['log_large']['fold']['us_per_event']} µs (×{r['ratios']['fold_cost_large_vs_small']})", "flat ±20%"),
        ("replay", f"{r['replay']['events_per_second']:,} ev/s (identical: {r['replay']['identical']})", "≥ 50,000 ev/s"),
    ]
    if "value" in r:
        v = r["value"]
        rows += [
            ("value: embedded fold with RFM cells + segments vs without", f"{v['rfm_overhead']['us_per_event_with']} "
             f"(RFM only {v['rfm_overhead']['us_per_event_rfm_only']}) vs "
             f"{v['rfm_overhead']['us_per_event_without']} µs/event (+{v['rfm_overhead']['overhead_percent']}%, "
             f"CPU +{v['rfm_overhead']['cpu_overhead_percent']}%)",
             "≤ +20%"),
            ("value: refit (BG/NBD + Gamma-Gamma) and every lifetime value", f"{v['refit']['seconds']} s for "
             f"{v['refit']['customers']:,} customers ({v['refit']['purchases']:,} purchases)", "≤ 60 s (1M customers)"),
            ("value: every value card as CSV over HTTP, streamed", f"{v['export']['csv_cards_per_second']:,} cards/s "
             f"for {v['export']['cards']:,} cards (runs {v['export']['csv_runs_cards_per_second']}; whole cards "
             f"as JSONL {v['export']['jsonl_cards_per_second']:,}/s)", "≥ 50,000 cards/s (1M cards)"),
        ]
    if "lifecycle" in r:
        lc = r["lifecycle"]
        rows += [
            ("lifecycle: fold cost with stages vs without", f"{lc['fold_overhead']['us_per_event_with']} vs "
             f"{lc['fold_overhead']['us_per_event_without']} µs/event (+{lc['fold_overhead']['overhead_percent']}%)",
             "≤ +10%"),
            ("lifecycle: tick with none due", f"{lc['tick_none_due']['ms_median']} ms median over "
             f"{lc['tick_none_due']['customers']:,} deadlines", "≤ 10 ms (1M customers)"),
            ("lifecycle: per due customer", f"{lc['per_due_customer']['us_pure_per_customer']} µs pure, "
             f"{lc['per_due_customer']['us_runner_per_customer']} µs with load and commit", "≤ 20 µs"),
        ]
    if "merge" in r:
        m = r["merge"]
        rows += [(f"merge: {row['absorbed_events']:,} absorbed events", f"{row['merge_ms']} ms (their fold as a batch: "
                  f"{row['fold_as_batch_ms']} ms)", "proportional") for row in m["rows"]]
    if "merge_policy" in r:
        p = r["merge_policy"]
        rows.append(("merge policy: overhead on the fold", f"+{p['overhead_percent']}% ({p['with_policy_events_per_second']:,}"
                     f" vs {p['without_policy_events_per_second']:,} ev/s; {p['policy_merges_decided']:,} merges decided "
                     f"on {p['conflicts']:,} conflicts in {p['events']:,} events)", "≤ +5%"))
    if "reads" in r:
        d = r["reads"]
        rows += [(f"as-of view, {d['touchpoints']:,} touchpoints", f"p99 {d['as_of_view']['p99_ms']} ms (the plain "
                  f"view: p99 {d['view']['p99_ms']} ms)", "p99 ≤ 50 ms"),
                 (f"desk card, {d['touchpoints']:,} touchpoints", f"p99 {d['desk_card']['p99_ms']} ms", "p99 ≤ 50 ms")]
    if "nbc" in r:
        n = r["nbc"]
        o, b = n["rules_overhead"], n["backtest"]
        rows += [
            ("next best contact: rule evaluation, 100 rules", f"+{o['hundred_rules']['us_added_per_event']} µs/event "
             f"({o['hundred_rules']['us_per_event']} vs {o['us_per_event_without']} µs; "
             f"{o['hundred_rules']['triggers']:,} triggers)", "≤ +50 µs/event"),
            ("next best contact: rule evaluation, default rules", f"+{o['default_rules']['us_added_per_event']} µs/event "
             f"({o['default_rules']['triggers']:,} triggers over {o['events']:,} events)", "—"),
            ("next best contact: backtest", f"{b['events_per_second']:,} ev/s (the fold alone: "
             f"{b['fold_alone_events_per_second']:,} ev/s)", "≥ 20,000 ev/s"),
        ]
    table = Table(title=f"Touchstream bench ({r['scale']}, {r['date']}, {r['machine']['cpus']} CPUs)")
    for column in ("figure", "measured", "goal"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
