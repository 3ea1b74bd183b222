"""Derived facts: what a rule reads about a customer that depends on *now*.

The core reads no clock, so these are computed at an instant the caller gives (the event
or clock tick being evaluated), then passed to ``facts.facts_of`` beside the document.
Each name here is declared in ``facts.FACTS`` with source ``derived``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from projections.predicates.facts import CONTACT_CHANNEL_OF, CONTACT_CHANNELS
from projections.view.fold import CustomerView, micros

__all__ = ["derived_facts", "preferred_channel", "DERIVED"]

_DAY_US = 86_400 * 1_000_000
_WEEK_US, _MONTH_US = 7 * _DAY_US, 30 * _DAY_US  # the windows of projections.view.pressure.WINDOWS


def _days(now: int, then: int | None) -> float | None:
    return None if then is None else round((now - then) / _DAY_US, 3)


def preferred_channel(view: CustomerView) -> str | None:
    """The profile's ``preferred_channel`` when it names a contact channel; otherwise the
    contact channel of the touchpoint channel the customer used most (ties: the latest
    used, then the name), or None for a customer seen on no reachable channel."""
    stated = dict(view.profile).get("preferred_channel")
    if stated is not None and stated.value in CONTACT_CHANNELS:
        return stated.value
    ranked = sorted(((s.count, s.last_at, CONTACT_CHANNEL_OF[name]) for name, s in view.channels
                     if name in CONTACT_CHANNEL_OF), reverse=True)
    return ranked[0][2] if ranked else None


def _contacts(view: CustomerView, now: int, span: int) -> int:
    since = now - span
    return sum(1 for mark in view.contacts if since < mark.occurred_at <= now)


DERIVED: dict[str, Any] = {
    "days_since_first_purchase": lambda v, now: _days(now, v.first_purchase_at),
    "days_since_last_purchase": lambda v, now: _days(now, v.last_purchase_at),
    "days_since_last_seen": lambda v, now: _days(now, v.last_seen),
    "days_in_stage": lambda v, now: _days(now, v.lifecycle.since if v.lifecycle.since is not None else v.first_seen),
    "open_complaints": lambda v, now: sum(1 for _, c in v.cases if c.is_open and c.category == "complaint"),
    "preferred_channel": lambda v, now: preferred_channel(v),
    # the contact-pressure ledger (projections.view.pressure), both directions, human contacts included
    "contacts_7d": lambda v, now: _contacts(v, now, _WEEK_US),
    "contacts_30d": lambda v, now: _contacts(v, now, _MONTH_US),
}
"""Each derived fact as a function of (view, instant in µs): computed one at a time by
``projections.view.facts`` when a rule reads it."""


def derived_facts(view: CustomerView, at: datetime) -> dict[str, Any]:
    """The derived facts of ``view`` at instant ``at`` (timezone-aware)."""
    now = micros(at)
    return {name: compute(view, now) for name, compute in DERIVED.items()}
