"""The facts of a view, computed when a rule reads them.

``view_facts(view, at)`` is the mapping ``facts_of(to_document(view), derived_facts(view,
at))`` would give for every name of the facts catalogue, but each top-level section
(``purchases``, ``consent``, ``lifecycle``, a derived fact...) is built the first time a
predicate reads it: a decision reads a handful of facts, and rendering the whole 360°
document for it cost more than the rest of the decision. A property test holds the two
equal on arbitrary views.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from projections.predicates.derived import DERIVED
from projections.view.fold import CustomerView
from projections.view.state import mean_resolution_seconds

__all__ = ["view_facts", "SECTIONS"]

_CENT = Decimal("0.01")


def _by_currency(v: CustomerView) -> dict[str, Any]:
    return {k: {"count": c.count, "revenue": c.revenue, "margin": c.margin if c.margin_count else None,
                "average_basket": (c.revenue / c.count).quantize(_CENT) + 0 if c.count else None,
                "refunds": c.refunds, "refunded": c.refunded}
            for k, c in v.currencies}


class _Lazy(dict):  # type: ignore[type-arg]
    """A section whose costly keys are built on first read."""

    __slots__ = ("_view", "_builders")

    def __init__(self, view: CustomerView, plain: dict[str, Any], builders: dict[str, Callable[[CustomerView], Any]]):
        super().__init__(plain)
        self._view, self._builders = view, builders

    def __missing__(self, key: str) -> Any:
        build = self._builders.get(key)
        if build is None:
            raise KeyError(key)
        self[key] = value = build(self._view)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


def _purchases(v: CustomerView) -> dict[str, Any]:
    return _Lazy(v, {"count": v.purchases}, {"by_currency": _by_currency})


def _cases(v: CustomerView) -> dict[str, Any]:
    cases = [c for _, c in v.cases]
    open_ = sum(1 for c in cases if c.is_open)
    mean = mean_resolution_seconds(cases, v.closed_cases)
    return {"open": open_, "resolved": len(cases) - open_ + v.closed_cases.count, "mean_resolution_seconds": mean}


def _consent(v: CustomerView) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for (channel, purpose), c in v.consents:
        out.setdefault(channel, {})[purpose] = c.status
    return out


def _lifecycle(v: CustomerView) -> dict[str, Any]:
    lc = v.lifecycle
    return {"stage": lc.stage, "rule": lc.rule, "transitions": lc.seq,
            "typical_interval_days": None if lc.interval is None else round(lc.interval / 86_400e6, 3)}


# The one builder of a view's facts, section by section: rules read them through
# ``view_facts`` (lazily, with the time-dependent derived facts), segments through
# ``projections.segments.membership.segment_facts`` (the timeless ones).
SECTIONS: dict[str, Callable[[CustomerView], Any]] = {
    "customer_id": lambda v: v.customer_id,
    "touchpoints": lambda v: v.touchpoints,
    "profile": lambda v: {k: a.value for k, a in v.profile},
    "identity": lambda v: {"emails": sorted(v.emails), "phones": sorted(v.phones)},
    "channels": lambda v: {k: {"count": s.count, "last_outcome": s.last_outcome} for k, s in v.channels},
    "purchases": _purchases,
    "service_cases": _cases,
    "satisfaction": lambda v: {"csat": None if v.csat is None else v.csat.value,
                               "nps": None if v.nps is None else v.nps.value},
    "consent": _consent,
    "lifecycle": _lifecycle,
}


class _Facts(_Lazy):
    """A dict (predicates' lookups test for one first) whose sections are built on first read."""

    __slots__ = ("_at", "_extra")

    def __init__(self, view: CustomerView, at: int, extra: Mapping[str, Any]):
        super().__init__(view, {}, SECTIONS)
        self._at, self._extra = at, extra

    def __missing__(self, key: str) -> Any:
        if key in self._extra:
            value = self._extra[key]
        elif (build := SECTIONS.get(key)) is not None:
            value = build(self._view)
        elif (compute := DERIVED.get(key)) is not None:
            value = compute(self._view, self._at)
        else:
            raise KeyError(key)
        self[key] = value
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._extra or key in SECTIONS or key in DERIVED

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*SECTIONS, *DERIVED, *self._extra]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*SECTIONS, *DERIVED, *self._extra]))


def view_facts(view: CustomerView, at: int, extra: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """The facts of ``view`` at instant ``at`` (µs), computed on demand; ``extra`` (the
    caller's facts, such as ``value``) takes precedence."""
    return _Facts(view, at, extra or {})
