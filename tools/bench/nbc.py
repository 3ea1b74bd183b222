"""Next-best-contact benchmarks (docs/BENCHMARKS.md): what rule evaluation adds to the fold
per event, with the default rules and with a file of 100 rules; and the backtest's
throughput over a recorded history.

Baselines are measured in the same run on the same decoded events: the fold with
lifecycle stages and no rules (``fold_event`` without an engine).
"""

from __future__ import annotations

import time
from typing import Any

from projections.batch import FoldConfig
from projections.codec import from_dict
from projections.lifecycle.stages import DEFAULT
from projections.nbc.engine import ContactEngine, Decisions, fold_event
from projections.nbc.rules import compile_rules
from projections.view.fold import initial_view
from services.nbc.backtest import run_backtest
from services.nbc.rules_file import load_rules
from services.settings import DEFAULT_RULES_FILE
from services.zones import PINNED
from tools.traffic import TrafficOptions, labelled

__all__ = ["hundred_rules", "rules_overhead", "backtest_throughput", "run_nbc_bench"]

_TYPES = ("call", "email", "visit", "web_form", "purchase", "service_case", "survey")
_WHERE = {
    "call": lambda i: {"fact": "outcome", "in": ["no_answer", "declined", "busy"][: 1 + i % 3]},
    "email": lambda i: {"fact": "status", "eq": ["clicked", "opened", "bounced"][i % 3]},
    "visit": lambda i: {"fact": "duration_minutes", "gte": 10 + i},
    "web_form": lambda i: {"fact": "form_id", "eq": ["contact_request", "newsletter_signup", "account_signup"][i % 3]},
    "purchase": lambda i: {"fact": "amount", "gte": 50 + 25 * i},
    "service_case": lambda i: {"fact": "status", "eq": ["opened", "resolved"][i % 2]},
    "survey": lambda i: {"fact": "csat", "lte": 1 + i % 3},
}
_WHO = [
    {"fact": "purchases.count", "gte": 1},
    {"fact": "lifecycle.stage", "in": ["active", "new"]},
    {"all": [{"fact": "days_since_last_purchase", "lt": 60}, {"fact": "service_cases.open", "eq": 0}]},
    {"any": [{"fact": "channels.phone.count", "gte": 2}, {"fact": "profile.city", "exists": True}]},
    {"not": {"fact": "satisfaction.csat", "lt": 3}},
]
_CHANNELS = ("call", "email", "sms", "visit", "web", "mail")
_STAGES = ("new", "active", "declining", "lost", "reactivated")


def hundred_rules() -> dict[str, Any]:
    """A rule file of 100 rules as a marketing team might grow one: touchpoint rules on
    every type (narrowed by ``where``), lifecycle rules, delays after purchases and
    contacts, SLA escalations; eligibility over stage, purchases, recency, channels and
    satisfaction; consent, quiet hours, cooldowns and caps on most."""
    rules: list[dict[str, Any]] = []
    for i in range(100):
        kind = ("touchpoint", "touchpoint", "lifecycle", "after", "touchpoint", "lifecycle", "after", "touchpoint",
                "lifecycle", "case_past_sla")[i % 10]
        kind_type = _TYPES[i % len(_TYPES)]
        if kind == "touchpoint":
            when: dict[str, Any] = {"touchpoint": {"type": kind_type, "where": _WHERE[kind_type](i // 7)}}
        elif kind == "lifecycle":
            when = {"lifecycle": {"to": _STAGES[i % len(_STAGES)]}}
        elif kind == "after":
            when = {"after": {"event": kind_type, "delay": f"{1 + i % 5}d", "where": _WHERE[kind_type](i // 7)}}
        else:
            when = {"case_past_sla": {"sla": {"critical": "2 business hours", "high": "8 business hours",
                                              "medium": f"{2 + i % 3}d"}}}
        marketing = i % 3 != 0
        channel = _CHANNELS[i % len(_CHANNELS)]
        constraints: dict[str, Any] = {"consent": {"purpose": "marketing"} if marketing else "not_required",
                                       "cooldown": f"{1 + i % 14}d"}
        if i % 2:
            constraints["quiet_hours"] = {"start": "20:00", "end": "09:00", "mode": "defer" if i % 4 == 1 else "drop"}
        if i % 3 != 2:
            constraints["caps"] = {"per_channel": {"window": "7d", "max": 2}, "overall": {"window": "30d", "max": 6}}
        rules.append({"id": f"rule_{i:03d}", "version": 1, "purpose": "marketing" if marketing else "service",
                      "when": when, "who": _WHO[i % len(_WHO)],
                      "what": {"channel": channel, "action": f"action_{i}", "priority": 10 + i % 90,
                               "expected_value": 5 + i % 40, "valid_for": f"{1 + i % 10}d"},
                      "constraints": constraints})
    return {"version": 1, "timezone": "Europe/Paris",
            "suppressions": [{"id": "complaint_open", "purposes": ["marketing"],
                              "while": {"fact": "open_complaints", "gt": 0}}],
            "rules": rules}


def _events(events: int, customers: int) -> list[tuple[str, Any]]:
    options = TrafficOptions(customers=customers, events=events, days=365, duplicate_rate=0.0, late_rate=0.0)
    decoded = [(cid, from_dict({"received_at": e["occurred_at"], **e})) for cid, e in labelled(options)]
    return sorted(decoded, key=lambda pair: (pair[1].occurred_at, pair[1].event_id))


def _fold_seconds(events: list[tuple[str, Any]], engine: ContactEngine | None) -> tuple[float, Decisions]:
    views: dict[str, Any] = {}
    decided = Decisions()
    started = time.perf_counter()
    for cid, event in events:
        step = fold_event(views.get(cid) or initial_view(cid), event, DEFAULT, None, engine)
        views[cid] = step.view
        decided.triggers += step.decisions.triggers
        decided.suppressions += step.decisions.suppressions
    return time.perf_counter() - started, decided


def rules_overhead(events: int, customers: int) -> dict[str, Any]:
    decoded = _events(events, customers)
    engines = {"default_rules": ContactEngine(load_rules(DEFAULT_RULES_FILE), PINNED),
               "hundred_rules": ContactEngine(compile_rules(hundred_rules(), "bench:100 rules"), PINNED)}
    best: dict[str, float] = {}
    decided: dict[str, int] = {}
    candidates: dict[str, int] = {}
    for _ in range(3):  # alternate, keep the best of each: the machine's noise is one-sided
        for name, engine in (("without", None), *engines.items()):
            seconds, sink = _fold_seconds(decoded, engine)
            best[name] = min(best.get(name, seconds), seconds)
            decided[name] = len(sink.triggers)
            candidates[name] = len(sink.triggers) + len(sink.suppressions)
    n = len(decoded)
    out: dict[str, Any] = {"events": n, "customers": customers,
                           "us_per_event_without": round(best["without"] / n * 1e6, 2)}
    for name in engines:
        out[name] = {"rules": len(engines[name].rules.rules), "triggers": decided[name],
                     "candidates_per_event": round(candidates[name] / n, 3),
                     "us_per_event": round(best[name] / n * 1e6, 2),
                     "us_added_per_event": round((best[name] - best["without"]) / n * 1e6, 2)}
    return out


def backtest_throughput(events: int, customers: int) -> dict[str, Any]:
    history = _events(events, customers)
    start, end = history[0][1].occurred_at, history[-1][1].occurred_at
    engine = ContactEngine(load_rules(DEFAULT_RULES_FILE), PINNED)
    reports = [run_backtest(history, FoldConfig(DEFAULT, engine, currency=None), start, end) for _ in range(3)]
    report = max(reports, key=lambda r: r["events_per_second"] or 0)
    baseline = min(_fold_seconds(history, None)[0] for _ in range(3))
    return {"events": len(history), "customers": customers, "rules": len(engine.rules.rules),
            "events_per_second": report["events_per_second"], "would_fire": report["would_fire"]["total"],
            "fold_alone_events_per_second": round(len(history) / baseline)}


def run_nbc_bench(events: int, customers: int) -> dict[str, Any]:
    return {"rules_overhead": rules_overhead(events, customers),
            "backtest": backtest_throughput(events, customers)}


if __name__ == "__main__":  # a quick look: python -m tools.bench.nbc
    import json

    print(json.dumps(run_nbc_bench(40_000, 4_000), indent=2))
