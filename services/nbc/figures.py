"""Next-best-contact figures: per-rule counts committed with the views, and their counters.

A figure is keyed (rule id, rule version, channel or "", figure): ``fired``,
``suppressed:<reason>``, ``reached``, ``not_reached``, ``declined``, ``converted`` (from
the fold, atomically with the views) and ``delivered`` (a channel system acknowledged a
webhook). ``rule_figures`` shapes them for ``GET /v1/analytics/triggers``.
"""

from __future__ import annotations

from typing import Any

from services import metrics

__all__ = ["count_contact_figures", "count_delivered", "rule_figures"]

Figures = dict[tuple[str, int, str, str], int]


def count_contact_figures(figures: Figures) -> None:
    """Counters for a committed batch's figures (never for a batch that failed)."""
    for (rule, _, channel, figure), n in figures.items():
        if figure == "fired":
            metrics.child(metrics.TRIGGERS_FIRED, rule, channel).inc(n)
        elif figure.startswith("suppressed:"):
            metrics.child(metrics.TRIGGERS_SUPPRESSED, rule, figure.removeprefix("suppressed:")).inc(n)
        else:
            metrics.child(metrics.TRIGGER_OUTCOMES, rule, channel, figure).inc(n)


def count_delivered(rule: str, channel: str) -> None:
    metrics.child(metrics.TRIGGERS_DELIVERED, rule, channel).inc()


def rule_figures(figures: Figures) -> list[dict[str, Any]]:
    """Per rule and version: fired, suppressed by reason, delivered, reached, not reached,
    declined, converted, by channel and in total, and the conversion rate (converted /
    fired)."""
    rules: dict[tuple[str, int], dict[str, Any]] = {}
    for (rule, version, channel, figure), n in sorted(figures.items()):
        entry = rules.setdefault((rule, version), {
            "rule": rule, "version": version, "fired": 0, "delivered": 0, "reached": 0, "not_reached": 0,
            "declined": 0, "converted": 0, "suppressed": {}, "channels": {}})
        if figure.startswith("suppressed:"):
            reason = figure.removeprefix("suppressed:")
            entry["suppressed"][reason] = entry["suppressed"].get(reason, 0) + n
            continue
        entry[figure] = entry.get(figure, 0) + n
        per = entry["channels"].setdefault(channel, {})
        per[figure] = per.get(figure, 0) + n
    for entry in rules.values():
        entry["conversion_rate"] = round(entry["converted"] / entry["fired"], 4) if entry["fired"] else None
        entry["reach_rate"] = round(entry["reached"] / entry["fired"], 4) if entry["fired"] else None
    return list(rules.values())
