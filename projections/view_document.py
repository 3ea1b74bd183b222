"""The two written forms of a customer view.

* ``to_state`` / ``from_state``: the stored form, complete (including the set of applied
  event ids) so a view store can resume folding; ``from_state(to_state(v)) == v``.
  Instants are integers (microseconds since the Unix epoch, UTC): a view is written on
  every batch that touches it, and integers are several times cheaper than ISO text.
* ``to_document``: the published 360° document (HTTP, Redis, Kafka; Avro
  ``schemas/view/customer_view``): readable figures, derived values computed, internal
  bookkeeping left out.

Both are plain JSON-able dicts whose keys serialise in a fixed order, so the same view
always gives the same bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from projections.codec import format_instant
from projections.view import (
    Attribute,
    CaseState,
    ChannelStats,
    ConsentState,
    ContactMark,
    CurrencyTotals,
    CustomerView,
    Recent,
    Score,
)

__all__ = ["to_state", "from_state", "to_document"]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _t(moment: datetime | None) -> int | None:
    return None if moment is None else (moment - _EPOCH) // _US


def _ti(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=micros)


def _i(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _stamp(stamp: tuple[datetime, str] | None) -> list[int | str] | None:
    return None if stamp is None else [(stamp[0] - _EPOCH) // _US, stamp[1]]


def _stamp_in(raw: list[int | str] | None) -> tuple[datetime, str] | None:
    return None if raw is None else (_i(raw[0]), raw[1])  # type: ignore[arg-type]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else format_instant(moment)


def to_state(view: CustomerView) -> dict[str, Any]:
    return {
        "customer_id": view.customer_id,
        "emails": sorted(view.emails),
        "phones": sorted(view.phones),
        "external_ids": sorted([list(x) for x in view.external_ids]),
        "first_seen": _t(view.first_seen),
        "last_seen": _t(view.last_seen),
        "touchpoints": view.touchpoints,
        "profile": [[k, a.value, _stamp(a.stamp)] for k, a in view.profile],
        "channels": [
            [k, s.count, _t(s.first_at), _t(s.last_at), s.last_outcome, _stamp(s.outcome_stamp)]
            for k, s in view.channels
        ],
        "recent": [[_t(r.occurred_at), r.event_id, r.type, r.channel, r.summary] for r in view.recent],
        "purchases": view.purchases,
        "first_purchase_at": _t(view.first_purchase_at),
        "last_purchase_at": _t(view.last_purchase_at),
        "currencies": [
            [k, c.count, str(c.revenue), str(c.margin), c.margin_count] for k, c in view.currencies
        ],
        "cases": [
            [k, _t(c.opened_at), c.status, _stamp(c.status_stamp), c.severity, c.category,
             _stamp(c.category_stamp)]
            for k, c in view.cases
        ],
        "csat": None if view.csat is None else [view.csat.value, _stamp(view.csat.stamp)],
        "nps": None if view.nps is None else [view.nps.value, _stamp(view.nps.stamp)],
        "consents": [[ch, p, c.status, _stamp(c.stamp), c.source] for (ch, p), c in view.consents],
        "contacts": [[_t(m.occurred_at), m.event_id, m.channel, m.by_company] for m in view.contacts],
        "applied": sorted(view.applied),
    }


def from_state(d: dict[str, Any]) -> CustomerView:
    return CustomerView(
        customer_id=d["customer_id"],
        emails=frozenset(d["emails"]),
        phones=frozenset(d["phones"]),
        external_ids=frozenset((s, i) for s, i in d["external_ids"]),
        first_seen=_ti(d["first_seen"]),
        last_seen=_ti(d["last_seen"]),
        touchpoints=d["touchpoints"],
        profile=tuple((k, Attribute(v, _stamp_in(s))) for k, v, s in d["profile"]),  # type: ignore[arg-type]
        channels=tuple(
            (k, ChannelStats(n, _i(f), _i(la), o, _stamp_in(s)))
            for k, n, f, la, o, s in d["channels"]
        ),
        recent=tuple(Recent(_i(t), e, ty, ch, su) for t, e, ty, ch, su in d["recent"]),
        purchases=d["purchases"],
        first_purchase_at=_ti(d["first_purchase_at"]),
        last_purchase_at=_ti(d["last_purchase_at"]),
        currencies=tuple(
            (k, CurrencyTotals(n, Decimal(r), Decimal(m), mc)) for k, n, r, m, mc in d["currencies"]
        ),
        cases=tuple(
            (k, CaseState(_i(o), st, _stamp_in(ss), sev, cat, _stamp_in(cs)))  # type: ignore[arg-type]
            for k, o, st, ss, sev, cat, cs in d["cases"]
        ),
        csat=None if d["csat"] is None else Score(d["csat"][0], _stamp_in(d["csat"][1])),  # type: ignore[arg-type]
        nps=None if d["nps"] is None else Score(d["nps"][0], _stamp_in(d["nps"][1])),  # type: ignore[arg-type]
        consents=tuple(
            ((ch, p), ConsentState(st, _stamp_in(s), src))  # type: ignore[arg-type]
            for ch, p, st, s, src in d["consents"]
        ),
        contacts=tuple(ContactMark(_i(t), e, ch, by) for t, e, ch, by in d["contacts"]),
        applied=frozenset(d["applied"]),
    )


def _mean_resolution_seconds(cases: list[CaseState]) -> float | None:
    resolved = [(c.status_stamp[0] - c.opened_at).total_seconds() for c in cases if not c.is_open]
    return round(sum(resolved) / len(resolved), 3) if resolved else None


def to_document(view: CustomerView) -> dict[str, Any]:
    """The published 360° view (schemas/view/customer_view)."""
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
        ],
        "purchases": {
            "count": view.purchases,
            "first_at": _iso(view.first_purchase_at),
            "last_at": _iso(view.last_purchase_at),
            "by_currency": {
                k: {"count": c.count, "revenue": str(c.revenue),
                    "margin": str(c.margin) if c.margin_count else None,
                    "average_basket": str((c.revenue / c.count).quantize(Decimal("0.01")))}
                for k, c in view.currencies
            },
        },
        "service_cases": {
            "open": len(open_cases),
            "oldest_open_at": _iso(min((c.opened_at for c in open_cases), default=None)),
            "resolved": len(cases) - len(open_cases),
            "mean_resolution_seconds": _mean_resolution_seconds(cases),
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
    }
