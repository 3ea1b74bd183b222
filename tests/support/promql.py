"""The metric names a PromQL expression reads, and whether Touchstream exports them.

A small tokenizer, not a parser: string literals, label matchers, range and subquery
brackets, grouping clauses and Grafana's ``$variables`` are removed, and what remains that
is neither a function call, a keyword nor a number is a metric name. Good enough for
the expressions of our dashboards and rules; ``promtool check rules`` and a real
Prometheus (tests/e2e/test_ops_prometheus.py) judge their syntax.
"""

from __future__ import annotations

import re

from services.metrics_catalogue import PROCESS_METRICS, catalogue, sample_names

__all__ = ["metric_names", "exported_series"]

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "e"}


def metric_names(expression: str) -> set[str]:
    text = _VARIABLES.sub("1m", _STRINGS.sub("", expression))
    while _MATCHERS.search(text):
        text = _MATCHERS.sub("", text)
    text = _GROUPING.sub("", _RANGES.sub("", text))
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def exported_series() -> set[str]:
    """Every series name a Touchstream process exports, plus Prometheus's own ``up``."""
    names = {name for spec in catalogue() for name in sample_names(spec)}
    return names | set(PROCESS_METRICS) | {"up"}
