"""The two written forms of a customer view.

* ``to_state`` / ``from_state``: the stored form, complete (including the window of
  recently folded event ids) so a view store can resume folding;
  ``from_state(to_state(v)) == v``. It carries ``STATE_FORMAT``: a store holding another
  format is rebuilt from the log (views are derived data).
  Records are written as arrays in field order and instants as the view keeps them
  (integer microseconds), so storing and loading a view is mostly copying.
* ``to_document``: the published 360° document (HTTP, Redis, Kafka; Avro
  ``schemas/view/customer_view``): readable figures, ISO 8601 instants, derived values
  computed, internal bookkeeping left out.

Both are plain JSON-able values whose serialisation is fixed, so the same view always
gives the same bytes.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any

from projections.codec import format_instant
from projections.lifecycle.stages import Buy, Lifecycle, Transition, dwell, transition_id
from projections.nbc.state import contact_from, contact_state
from projections.view.fold import (
    Attribute,
    CaseState,
    ChannelStats,
    ClosedCases,
    ConsentState,
    ContactMark,
    CurrencyTotals,
    CustomerView,
    Recent,
    Score,
    instant_of,
)
from projections.view.state import PurchaseDays, mean_resolution_seconds

__all__ = ["STATE_FORMAT", "StateFormatError", "VALUE_FIELDS", "check_format", "to_state", "from_state", "value_view", "to_document",
           "lifecycle_document", "transition_document", "contact_document", "facts_document"]


def _stamp(raw: list[Any] | None) -> tuple[int, str] | None:
    return None if raw is None else (raw[0], raw[1])


STATE_FORMAT = 6
"""The stored form's version: 4 bounds the state (an idempotency window instead of every
event id, resolved cases folded into totals beyond ``CASES_LIMIT``); 5 adds the distinct
purchase days (``projections.value.purchase_days``)."""


class StateFormatError(ValueError):
    """A stored state of another format: rebuild the store from the log."""


def to_state(view: CustomerView) -> dict[str, Any]:
    return {
        "format": STATE_FORMAT,
        "customer_id": view.customer_id,
        "emails": sorted(view.emails),
        "phones": sorted(view.phones),
        "external_ids": sorted(view.external_ids),
        "first_seen": view.first_seen,
        "last_seen": view.last_seen,
        "touchpoints": view.touchpoints,
        "profile": [(k, *a) for k, a in view.profile],
        "channels": [(k, *s) for k, s in view.channels],
        "recent": [tuple(r) for r in view.recent],
        "purchases": view.purchases,
        "first_purchase_at": view.first_purchase_at,
        "last_purchase_at": view.last_purchase_at,
        "purchase_days": _purchase_days_state(view.purchase_days),
        "currencies": [(k, c.count, str(c.revenue), str(c.margin), c.margin_count, c.refunds, str(c.refunded))
                       for k, c in view.currencies],
        "cases": [(k, *c) for k, c in view.cases],
        "closed_cases": tuple(view.closed_cases),
        "csat": None if view.csat is None else tuple(view.csat),
        "nps": None if view.nps is None else tuple(view.nps),
        "consents": [(ch, p, *c) for (ch, p), c in view.consents],
        "contacts": [tuple(m) for m in view.contacts],
        "seen": view.seen,
        "lifecycle": _lifecycle_state(view.lifecycle),
        "contact": contact_state(view.contact),
    }


VALUE_FIELDS = ("format", "customer_id", "purchases", "first_purchase_at", "last_purchase_at", "purchase_days",
                "currencies")
"""The keys of a stored state that ``value_view`` reads: a store may hand the value card
an object of these alone (the embedded store extracts them in SQLite)."""


def check_format(d: dict[str, Any]) -> None:
    """Refuse a stored state (or its value fields) written in another state format."""
    _check_format(d)


def value_view(d: dict[str, Any]) -> CustomerView:
    """The part of a stored view the value card reads (purchases, their days, currencies),
    decoded alone: an export of every card need not decode every view's contacts, cases
    and lifecycle. ``value_card`` gives the same card from it as from ``from_state``."""
    _check_format(d)
    return CustomerView(customer_id=d["customer_id"], **_value_fields(d))


def _check_format(d: dict[str, Any]) -> None:
    if d.get("format") != STATE_FORMAT:
        raise StateFormatError(f"stored state format {d.get('format', 'before 4')}, expected {STATE_FORMAT}")


def _value_fields(d: dict[str, Any]) -> dict[str, Any]:
    """The stored purchases, their days and currencies, as ``CustomerView`` fields."""
    return {
        "purchases": d["purchases"],
        "first_purchase_at": d["first_purchase_at"],
        "last_purchase_at": d["last_purchase_at"],
        "purchase_days": _purchase_days_from(d["purchase_days"]),
        "currencies": tuple((k, CurrencyTotals(n, Decimal(r), Decimal(m), mc, rn, Decimal(rd)))
                            for k, n, r, m, mc, rn, rd in d["currencies"]),
    }


def average_basket(c: CurrencyTotals) -> str | None:
    """Net revenue per purchase, rounded half-even to the cent; None before a purchase (a
    refund alone)."""
    if not c.count:
        return None
    return str((c.revenue / c.count).quantize(Decimal("0.01")) + 0)  # + 0: no negative zero ("-0.00")


def _purchase_days_state(days: PurchaseDays) -> list[Any]:
    return [days.count, days.first_day, format(days.bits, "x"), [(k, str(v)) for k, v in days.first_day_spend]]


def _purchase_days_from(raw: list[Any]) -> PurchaseDays:
    count, first_day, bits, spend = raw
    return PurchaseDays(count, first_day, int(bits, 16), tuple((k, Decimal(v)) for k, v in spend))


def _lifecycle_state(lc: Lifecycle) -> list[Any]:
    return [lc.stage, lc.since, lc.rule, lc.evaluated, lc.deadline, [tuple(b) for b in lc.buys], lc.interval,
            lc.seq, [tuple(t) for t in lc.history]]


def _lifecycle_from(raw: list[Any] | None) -> Lifecycle:
    if raw is None:  # stored before stages existed: a replay rebuilds them
        return Lifecycle()
    stage, since, rule, evaluated, deadline, buys, interval, seq, history = raw
    return Lifecycle(stage, since, rule, evaluated, deadline, tuple(Buy(*b) for b in buys), interval, seq,
                     tuple(Transition(*t) for t in history))


def from_state(d: dict[str, Any]) -> CustomerView:
    _check_format(d)
    return CustomerView(
        customer_id=d["customer_id"],
        emails=frozenset(d["emails"]),
        phones=frozenset(d["phones"]),
        external_ids=frozenset((s, i) for s, i in d["external_ids"]),
        first_seen=d["first_seen"],
        last_seen=d["last_seen"],
        touchpoints=d["touchpoints"],
        profile=tuple((k, Attribute(v, _stamp(s))) for k, v, s in d["profile"]),  # type: ignore[arg-type]
        channels=tuple((k, ChannelStats(n, f, la, o, _stamp(s))) for k, n, f, la, o, s in d["channels"]),
        recent=tuple(Recent(*r) for r in d["recent"]),
        **_value_fields(d),
        cases=tuple(
            (k, CaseState(o, st, _stamp(ss), sev, cat, _stamp(cs)))  # type: ignore[arg-type]
            for k, o, st, ss, sev, cat, cs in d["cases"]
        ),
        closed_cases=ClosedCases(*d["closed_cases"]),
        csat=None if d["csat"] is None else Score(d["csat"][0], _stamp(d["csat"][1])),  # type: ignore[arg-type]
        nps=None if d["nps"] is None else Score(d["nps"][0], _stamp(d["nps"][1])),  # type: ignore[arg-type]
        consents=tuple(
            ((ch, p), ConsentState(st, _stamp(s), src))  # type: ignore[arg-type]
            for ch, p, st, s, src in d["consents"]
        ),
        contacts=tuple(ContactMark(*m) for m in d["contacts"]),
        seen=tuple(d["seen"]),
        lifecycle=_lifecycle_from(d.get("lifecycle")),
        contact=contact_from(d.get("contact")),
    )


def _iso(us: int | None) -> str | None:
    return None if us is None else _format_micros(us)


@lru_cache(maxsize=1 << 16)
def _format_micros(us: int) -> str:
    # A document renders the same instants again and again (the latest 50 touchpoints are
    # re-rendered each time the view changes): formatting each once is most of its cost.
    return format_instant(instant_of(us))


def to_document(view: CustomerView) -> dict[str, Any]:
    """The published 360° view (schemas/view/customer_view)."""
    return _document(view, True)


def facts_document(view: CustomerView) -> dict[str, Any]:
    """The document rules read facts from: ``to_document`` without the parts no fact names
    (the latest touchpoints, the lifecycle history), which are most of its cost."""
    return _document(view, False)


def _document(view: CustomerView, whole: bool) -> dict[str, Any]:
    cases = [c for _, c in view.cases]
    open_cases = [c for c in cases if c.is_open]
    return {
        "customer_id": view.customer_id,
        "identity": {
            "emails": sorted(view.emails),
            "phones": sorted(view.phones),
            "external_ids": [{"system": s, "id": i} for s, i in sorted(view.external_ids)],
        },
        "profile": {k: a.value for k, a in view.profile},
        "first_seen": _iso(view.first_seen),
        "last_seen": _iso(view.last_seen),
        "touchpoints": view.touchpoints,
        "channels": {
            k: {"count": s.count, "first_at": _iso(s.first_at), "last_at": _iso(s.last_at),
                "last_outcome": s.last_outcome}
            for k, s in view.channels
        },
        "recent": [
            {"occurred_at": _iso(r.occurred_at), "event_id": r.event_id, "type": r.type,
             "channel": r.channel, "summary": r.summary}
            for r in reversed(view.recent)  # newest first
        ] if whole else [],
        "purchases": {
            "count": view.purchases,
            "first_at": _iso(view.first_purchase_at),
            "last_at": _iso(view.last_purchase_at),
            "by_currency": {
                k: {"count": c.count, "revenue": str(c.revenue),
                    "margin": str(c.margin) if c.margin_count else None,
                    "average_basket": average_basket(c),
                    "refunds": c.refunds, "refunded": str(c.refunded)}
                for k, c in view.currencies
            },
        },
        "service_cases": {
            "open": len(open_cases),
            "oldest_open_at": _iso(min((c.opened_at for c in open_cases), default=None)),
            "resolved": len(cases) - len(open_cases) + view.closed_cases.count,
            "mean_resolution_seconds": mean_resolution_seconds(cases, view.closed_cases),
        },
        "satisfaction": {
            "csat": None if view.csat is None else view.csat.value,
            "csat_at": None if view.csat is None else _iso(view.csat.stamp[0]),
            "nps": None if view.nps is None else view.nps.value,
            "nps_at": None if view.nps is None else _iso(view.nps.stamp[0]),
        },
        "consents": [
            {"channel": ch, "purpose": p, "status": c.status, "at": _iso(c.stamp[0]),
             "event_id": c.stamp[1], "source": c.source}
            for (ch, p), c in view.consents
        ],
        "lifecycle": lifecycle_document(view, whole),
    }


def transition_document(customer_id: str, t: Transition, dwell_us: int) -> dict[str, Any]:
    """A ``LifecycleStageChanged`` event (schemas/lifecycle/stage_changed); ``dwell_us``:
    the time spent in the previous stage (``projections.lifecycle.stages.dwell``)."""
    return {"transition_id": transition_id(customer_id, t), "customer_id": customer_id, "sequence": t.seq, "at": _iso(t.at),
            "from_stage": t.from_stage, "to_stage": t.to_stage, "reason": t.reason, "cause_event_ids": [t.cause],
            "dwell_seconds": round(dwell_us / 1e6, 3)}


def lifecycle_document(view: CustomerView, history: bool = True) -> dict[str, Any]:
    lc = view.lifecycle
    return {
        "stage": lc.stage,
        "since": _iso(lc.since if lc.since is not None else view.first_seen),
        "rule": lc.rule,
        "next_review_at": _iso(lc.deadline),
        "typical_interval_days": None if lc.interval is None else round(lc.interval / 86_400e6, 3),
        "transitions": lc.seq,
        "history": [transition_document(view.customer_id, t, dwell(t, view.first_seen)) for t in reversed(lc.history)]  # newest first
        if history else [],
    }


def contact_document(view: CustomerView) -> dict[str, Any]:
    """The customer's next-best-contact state, for the customer card: the latest triggers
    and what became of them, the pending timers, and the latest suppressions (why no
    contact was proposed)."""
    state = view.contact
    return {
        "triggers": [{"trigger_id": i.trigger_id, "rule": i.rule, "version": i.version, "channel": i.channel,
                      "at": _iso(i.at), "valid_until": _iso(i.valid_until), "outcome": i.outcome,
                      "converted": i.converted} for i in reversed(state.issued)],
        "pending": [{"rule": t.rule, "kind": t.kind, "due_at": _iso(t.due)} for t in state.timers],
        "cooldowns": {rule: _iso(at) for rule, at in state.last_fired},
        "recent_suppressions": [{"rule": s.rule, "version": s.version, "reason": s.reason, "at": _iso(s.at)}
                                for s in reversed(state.suppressed)],
    }
