"""The 360° customer view: everything the company knows about one customer.

Business rule: the view is a fold of the customer's touchpoints, and the fold is
order-insensitive and idempotent. Every part of the state is either a sum, a min/max, a
set union, or "last writer wins" ordered by (occurred_at, event_id), so any arrival
order of the same events gives the same view, and an event seen twice (same event_id)
counts once. Late and out-of-order events (offline field sales, delayed web forms)
therefore land exactly where they belong.

The state it folds into is in ``projections.view.state``.

``evolve`` is total: a touchpoint type it does not know only counts as a touchpoint.
"""

from __future__ import annotations

import bisect
from decimal import Decimal
from typing import TypeVar

from projections.lifecycle.stages import DEFAULT as LIFECYCLE_DEFAULT
from projections.lifecycle.stages import Buy, LifecycleConfig, advance, amount_units, on_purchase
from projections.touchpoints import (
    Call,
    Consent,
    Purchase,
    Refund,
    ServiceCase,
    Survey,
    Touchpoint,
    WebForm,
)
from projections.value.purchase_days import add_purchase_day
from projections.view.state import (
    CASES_LIMIT,
    PRESSURE_MARKS_LIMIT,
    PRESSURE_WINDOW,
    RECENT_LIMIT,
    SEEN_LIMIT,
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
    Stamp,
    initial_view,
    instant_of,
    micros,
)

__all__ = [
    "RECENT_LIMIT",
    "PRESSURE_WINDOW",
    "Stamp",
    "Attribute",
    "ChannelStats",
    "CurrencyTotals",
    "CaseState",
    "ClosedCases",
    "Score",
    "ConsentState",
    "ContactMark",
    "Recent",
    "CustomerView",
    "initial_view",
    "evolve",
    "tick",
    "micros",
    "instant_of",
]


_K = TypeVar("_K")
_V = TypeVar("_V")


def _union(held: frozenset, new: tuple | list) -> frozenset:  # type: ignore[type-arg]
    return held if held.issuperset(new) else held.union(new)


def _later(a: Stamp | None, b: Stamp) -> bool:
    return a is None or b > a


def _put(pairs: tuple[tuple[_K, _V], ...], key: _K, value: _V) -> tuple[tuple[_K, _V], ...]:
    """Sorted association tuple with ``key`` set to ``value`` (deterministic order)."""
    merged = dict(pairs)
    merged[key] = value
    return tuple(sorted(merged.items()))


def _min(a: int | None, b: int) -> int:
    return b if a is None or b < a else a


def _max(a: int | None, b: int) -> int:
    return b if a is None or b > a else a


def evolve(view: CustomerView, event: Touchpoint,
           lifecycle: LifecycleConfig | None = LIFECYCLE_DEFAULT, clock: int | None = None) -> CustomerView:
    """The view after ``event``; the same view when the event was already applied.

    ``lifecycle``: the stage rules (``projections.lifecycle.stages``); None leaves stages out.
    ``clock``: the latest clock tick the log showed before this event (µs), if any: time
    has reached it for every customer, including those the tick did not need to visit."""
    if event.event_id in view.seen:
        return view
    at = micros(event.occurred_at)
    stamp: Stamp = (at, event.event_id)
    lc = view.lifecycle
    if lifecycle is not None:
        if isinstance(event, Purchase):
            buy = Buy(at, event.event_id, event.currency, amount_units(event.amount))
            if clock is not None and lc.deadline is not None and lc.deadline <= clock:
                # a tick reached this instant without visiting (its limit): time first
                lc = advance(lc, clock, lifecycle)
            seen = view.last_seen if clock is None else _max(view.last_seen, clock)
            lc = on_purchase(lc, seen, buy, lifecycle)
        elif lc.deadline is not None:
            now = at if clock is None or at >= clock else clock
            if now >= lc.deadline:
                lc = advance(lc, now, lifecycle)
    purchases, first_purchase, last_purchase, days, currencies = (
        view.purchases, view.first_purchase_at, view.last_purchase_at, view.purchase_days, view.currencies,
    )
    cases, closed, csat, nps, consents = view.cases, view.closed_cases, view.csat, view.nps, view.consents
    match event:
        case Purchase():
            purchases += 1
            days = add_purchase_day(days, at, event.currency, event.amount)
            first_purchase = _min(first_purchase, at)
            last_purchase = _max(last_purchase, at)
            currencies = _purchase(currencies, event)
        case Refund():
            currencies = _refund(currencies, event)
        case ServiceCase():
            cases, closed = _case(cases, closed, event, stamp)
        case Survey():
            if event.csat is not None and _later(csat and csat.stamp, stamp):
                csat = Score(event.csat, stamp)
            if event.nps is not None and _later(nps and nps.stamp, stamp):
                nps = Score(event.nps, stamp)
        case Consent():
            key = (event.consent_channel, event.purpose)
            current = dict(consents).get(key)
            if _later(current and current.stamp, stamp):
                consents = _put(consents, key, ConsentState(event.status, stamp, event.source))
        case _:
            pass  # other touchpoints only count in the envelope-level figures below
    ref = event.customer
    last_seen = _max(view.last_seen, at)
    return CustomerView(
        customer_id=view.customer_id,
        emails=_union(view.emails, ref.emails),
        phones=_union(view.phones, ref.phones),
        external_ids=_union(view.external_ids, [(x.system, x.id) for x in ref.external_ids]),
        first_seen=_min(view.first_seen, at),
        last_seen=last_seen,
        touchpoints=view.touchpoints + 1,
        profile=_profile(view.profile, event, stamp),
        channels=_channels(view.channels, event, stamp),
        recent=_recent(view.recent, event, at),
        purchases=purchases,
        first_purchase_at=first_purchase,
        last_purchase_at=last_purchase,
        purchase_days=days,
        currencies=currencies,
        cases=cases,
        closed_cases=closed,
        csat=csat,
        nps=nps,
        consents=consents,
        contacts=_contacts(view.contacts, event, at, last_seen),
        seen=(*view.seen[1 - SEEN_LIMIT:], event.event_id) if len(view.seen) >= SEEN_LIMIT
        else (*view.seen, event.event_id),
        lifecycle=lc,
        contact=view.contact,
    )


def tick(view: CustomerView, at: int,
         lifecycle: LifecycleConfig | None = LIFECYCLE_DEFAULT) -> CustomerView:
    """The view once time has reached ``at`` (a clock tick from the log): the lifecycle
    crosses every deadline up to then. A tick is not customer activity: nothing else
    changes, and the same view comes back when no deadline has passed."""
    lc = view.lifecycle
    if lifecycle is None or lc.deadline is None or at < lc.deadline:
        return view
    return view._replace(lifecycle=advance(lc, at, lifecycle))


def _profile(profile: tuple, event: Touchpoint, stamp: Stamp) -> tuple:  # type: ignore[type-arg]
    carried = list(event.attributes)
    if isinstance(event, WebForm):
        carried += [(k, v) for k, v in event.fields if k in _PROFILE_FORM_FIELDS]
    if not carried:
        return profile
    current = dict(profile)
    for key, value in carried:
        held = current.get(key)
        if _later(held and held.stamp, stamp):
            current[key] = Attribute(value, stamp)
    return tuple(sorted(current.items()))


# Form fields that describe the person rather than the request.
_PROFILE_FORM_FIELDS = frozenset(
    {"first_name", "last_name", "company", "city", "postcode", "country", "language", "timezone"}
)


def _channels(channels: tuple, event: Touchpoint, stamp: Stamp) -> tuple:  # type: ignore[type-arg]
    name = event.channel.value
    held: ChannelStats | None = dict(channels).get(name)
    outcome = getattr(event, "outcome", None) or getattr(event, "status", None)
    if held is None:
        stats = ChannelStats(1, stamp[0], stamp[0], outcome, stamp if outcome else None)
    else:
        newer = outcome is not None and _later(held.outcome_stamp, stamp)
        stats = ChannelStats(
            held.count + 1,
            min(held.first_at, stamp[0]),
            max(held.last_at, stamp[0]),
            outcome if newer else held.last_outcome,
            stamp if newer else held.outcome_stamp,
        )
    return _put(channels, name, stats)


def _summary(event: Touchpoint) -> str:
    match event:
        case Call():
            return f"{event.direction} call, {event.outcome}"
        case Purchase():
            return f"order {event.order_id}: {event.amount:.2f} {event.currency}"
        case Refund():
            return f"refund of order {event.order_id}: {event.amount:.2f} {event.currency}"
        case ServiceCase():
            return f"case {event.case_id} {event.status} ({event.severity})"
        case Consent():
            return f"{event.consent_channel}/{event.purpose} consent {event.status}"
        case WebForm():
            return f"form {event.form_id}"
        case _:
            status = getattr(event, "status", None) or getattr(event, "purpose", None)
            return f"{event.type} {status}" if status else event.type


def _recent(recent: tuple[Recent, ...], event: Touchpoint, at: int) -> tuple[Recent, ...]:
    """The latest RECENT_LIMIT touchpoints, oldest first (kept sorted by insertion)."""
    entry = Recent(at, event.event_id, event.type, event.channel.value, _summary(event))
    if len(recent) >= RECENT_LIMIT and entry < recent[0]:
        return recent
    merged = list(recent)
    bisect.insort(merged, entry)
    return tuple(merged[-RECENT_LIMIT:])


def _contacts(contacts: tuple[ContactMark, ...], event: Touchpoint, at: int, last_seen: int) -> tuple[ContactMark, ...]:
    """Contacts of the last 30 days before the latest event: the contact-pressure ledger,
    oldest first.

    The window is anchored on the customer's latest event time, which only grows, so
    pruning early removes exactly what pruning at the end would (order-insensitive).
    """
    horizon = last_seen - PRESSURE_WINDOW
    marks = list(contacts)
    if marks and marks[0].occurred_at < horizon:
        del marks[: bisect.bisect_left(marks, (horizon,))]
    if at >= horizon:
        bisect.insort(marks, ContactMark(at, event.event_id, event.channel.value, event.initiated_by_company))
    return tuple(marks[-PRESSURE_MARKS_LIMIT:])


def _purchase(currencies: tuple, event: Purchase) -> tuple:  # type: ignore[type-arg]
    held = dict(currencies).get(event.currency) or _NO_MONEY
    totals = held._replace(
        count=held.count + 1,
        revenue=held.revenue + event.amount,
        margin=held.margin + (event.margin if event.margin is not None else 0),  # a zero margin keeps its scale
        margin_count=held.margin_count + (event.margin is not None),
    )
    return _put(currencies, event.currency, totals)


_NO_MONEY = CurrencyTotals(0, Decimal(0), Decimal(0), 0)  # no refunds: refunded 0.0000


def _refund(currencies: tuple, event: Refund) -> tuple:  # type: ignore[type-arg]
    """Money given back: net revenue (and margin, by what the refund states) go down, the
    purchase count does not move. A sum, so its place among the purchases never matters:
    a refund folded before its order gives the same totals."""
    held = dict(currencies).get(event.currency) or _NO_MONEY
    totals = held._replace(
        revenue=held.revenue - event.amount,
        margin=held.margin - (event.margin if event.margin is not None else 0),
        refunds=held.refunds + 1,
        refunded=held.refunded + event.amount,
    )
    return _put(currencies, event.currency, totals)


def _case(cases: tuple, closed: ClosedCases, event: ServiceCase,  # type: ignore[type-arg]
          stamp: Stamp) -> tuple[tuple, ClosedCases]:  # type: ignore[type-arg]
    held: CaseState | None = dict(cases).get(event.case_id)
    if held is None:
        state = CaseState(stamp[0], event.status, stamp, event.severity, event.category,
                          stamp if event.category else None)
    else:
        state = held._replace(opened_at=min(held.opened_at, stamp[0]))
        if _later(held.status_stamp, stamp):
            state = state._replace(status=event.status, status_stamp=stamp, severity=event.severity)
        if event.category and _later(held.category_stamp, stamp):
            state = state._replace(category=event.category, category_stamp=stamp)
    cases = _put(cases, event.case_id, state)
    if len(cases) <= CASES_LIMIT:
        return cases, closed
    # Bounded: every open case stays; the resolved case resolved longest ago is folded into
    # the closed-cases totals (a later update of that case would count as a new case).
    resolved = [(c.status_stamp, k) for k, c in cases if not c.is_open]
    if not resolved:
        return cases, closed
    _, gone = min(resolved)
    case = dict(cases)[gone]
    closed = ClosedCases(closed.count + 1, closed.resolution_us + case.status_stamp[0] - case.opened_at)
    return tuple((k, c) for k, c in cases if k != gone), closed
