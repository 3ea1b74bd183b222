"""Backtest: what a rule file would have decided over the recorded history, emitting nothing.

``touchstream backtest RULES --from --to`` reads every touchpoint the platform accepted
(embedded: the SQLite log, each event under the customer the runner decided; scale-out:
the touchpoints topic, each record under the customer ingest decided), sorts them by
event time and folds them through the same core as the live runtimes, with the given
rules. Time moves exactly: before each event, every customer whose next deadline
(lifecycle or next-best-contact timer) has passed is visited at that very instant, so a
delay, an SLA or the end of quiet hours is decided when it runs out, not at the next
clock tick. Decisions before ``--from`` only build the state (cooldowns, caps); those in
``[from, to)`` are reported:

* would-fire counts per rule, per channel and per day;
* suppressions by reason, per rule;
* overlaps: customers two rules would both have contacted in the window, and which rule
  lost the arbitration to which;
* the call centre's peak hour (calls that became actionable in one hour) and the busiest hours.

Every event is taken as arriving on time. Live, the engine decides in arrival order: a
late event is decided late (its contact may have expired, a cooldown may have started
with a later event), so live and backtest agree on a history that arrived in order and
may differ on events that arrived late. The history is held in memory (a few hundred
bytes per event).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from projections.batch import FoldConfig, Touch, fold_batch
from projections.nbc.engine import Suppression
from projections.nbc.state import Fired
from projections.touchpoints import Touchpoint
from projections.view.fold import instant_of, micros

__all__ = ["run_backtest", "render_table"]

_HOUR = 3_600_000_000


def run_backtest(history: Iterable[tuple[str, Touchpoint]], config: FoldConfig, start: datetime,
                 end: datetime) -> dict[str, Any]:
    """The report of ``config``'s rules over ``history`` ((customer id, touchpoint) pairs,
    any order): ``fold_batch`` in event time, decisions in ``[start, end)`` counted."""
    assert config.engine is not None, "a backtest needs rules"
    began = time.perf_counter()
    # in event time: what the rules would have decided had nothing arrived late (live, a late
    # event is decided late, and may be decided otherwise)
    events = sorted(history, key=lambda pair: (pair[1].occurred_at, pair[1].event_id))
    lo, hi = micros(start), micros(end)
    records = [Touch(n, event, cid) for n, (cid, event) in enumerate(events) if micros(event.occurred_at) < hi]
    result = fold_batch({}, records, config, event_time=True, settle_until=hi - 1)
    fired = [f for f in result.triggers if lo <= f.at < hi]
    stopped = [s for s in result.suppressions if lo <= s.at < hi]
    seconds = time.perf_counter() - began
    return _report(fired, stopped, config, start, end, len(records), len(result.views), seconds)


def _day(us: int) -> str:
    return instant_of(us).date().isoformat()


def _report(fired: list[Fired], stopped: list[Suppression], config: FoldConfig, start: datetime, end: datetime,
            events: int, customers: int, seconds: float) -> dict[str, Any]:
    assert config.engine is not None
    engine = config.engine
    beat = Counter((s.rule, s.detail) for s in stopped if s.reason == "arbitration" and s.detail)
    by_reason = Counter((s.rule, s.reason) for s in stopped)
    per_rule = Counter(f.rule for f in fired)
    per_channel = Counter(f.channel for f in fired)
    per_day: dict[str, Counter[str]] = {}
    for f in fired:
        per_day.setdefault(_day(f.at), Counter())[f.rule] += 1
    by_customer: dict[str, set[str]] = {}
    for f in fired:
        by_customer.setdefault(f.customer_id, set()).add(f.rule)
    overlaps: Counter[tuple[str, str]] = Counter()
    for rules in by_customer.values():
        for a, b in itertools.combinations(sorted(rules), 2):
            overlaps[(a, b)] += 1
    winner_rule = {f.trigger_id: f.rule for f in fired}
    lost: Counter[tuple[str, str]] = Counter()
    for (loser, winner_id), n in beat.items():
        lost[(loser, winner_rule.get(winner_id, "?"))] += n
    calls = Counter(f.at // _HOUR for f in fired if f.channel == "call")
    busiest = calls.most_common(5)
    suppressed: dict[str, dict[str, int]] = {}
    for (rule, reason), n in sorted(by_reason.items()):
        suppressed.setdefault(rule, {})[reason] = n
    return {
        "rules": {"source": engine.rules.source, "version": engine.rules.version,
                  "ids": [f"{r.id} (v{r.version})" for r in engine.rules.rules]},
        "from": start.isoformat(), "to": end.isoformat(),
        "events": events, "customers": customers, "seconds": round(seconds, 3),
        "events_per_second": round(events / seconds) if seconds > 0 else None,
        "would_fire": {"total": len(fired), "per_rule": dict(sorted(per_rule.items())),
                       "per_channel": dict(sorted(per_channel.items())),
                       "per_day": {d: dict(sorted(c.items())) for d, c in sorted(per_day.items())}},
        "suppressed": suppressed,
        "suppressed_by_reason": dict(sorted(Counter(s.reason for s in stopped).items())),
        "overlaps": [{"rules": [a, b], "customers": n} for (a, b), n in overlaps.most_common()],
        "arbitration_losses": [{"loser": a, "winner": b, "times": n} for (a, b), n in lost.most_common()],
        "call_centre": {
            "calls": sum(calls.values()),
            "peak_hour": None if not busiest else {"hour": instant_of(busiest[0][0] * _HOUR).isoformat(),
                                                   "calls": busiest[0][1]},
            "busiest_hours": [{"hour": instant_of(h * _HOUR).isoformat(), "calls": n} for h, n in busiest],
        },
        "trigger_ids": sorted(f.trigger_id for f in fired),
    }


def render_table(report: dict[str, Any]) -> Iterator[str]:
    """The report as readable text (``--format table``)."""
    yield (f"Backtest of {report['rules']['source']} (version {report['rules']['version']}) "
           f"from {report['from']} to {report['to']}")
    yield (f"{report['events']} events, {report['customers']} customers, {report['seconds']} s "
           f"({report['events_per_second']} events/s)")
    yield ""
    width = max([len(r) for r in report["would_fire"]["per_rule"]] + [len(r) for r in report["suppressed"]] + [4])
    yield f"{'rule':<{width}}  {'would fire':>10}  suppressed (by reason)"
    rules = sorted(set(report["would_fire"]["per_rule"]) | set(report["suppressed"]))
    for rule in rules:
        why = ", ".join(f"{k} {v}" for k, v in report["suppressed"].get(rule, {}).items()) or "-"
        yield f"{rule:<{width}}  {report['would_fire']['per_rule'].get(rule, 0):>10}  {why}"
    yield f"{'total':<{width}}  {report['would_fire']['total']:>10}"
    yield ""
    yield "per channel: " + (", ".join(f"{c} {n}" for c, n in report["would_fire"]["per_channel"].items()) or "-")
    centre = report["call_centre"]
    peak = centre["peak_hour"]
    yield (f"call centre: {centre['calls']} calls; peak hour " +
           (f"{peak['hour']} with {peak['calls']} calls" if peak else "-"))
    if report["overlaps"]:
        yield "overlaps (customers both rules would contact): " + ", ".join(
            f"{o['rules'][0]} & {o['rules'][1]} {o['customers']}" for o in report["overlaps"][:10])
    if report["arbitration_losses"]:
        yield "arbitration: " + ", ".join(f"{a['loser']} lost to {a['winner']} {a['times']}x"
                                          for a in report["arbitration_losses"][:10])
