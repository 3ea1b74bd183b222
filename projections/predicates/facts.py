"""Facts: what rules and segments may read about a customer, and where each value comes from.

A *facts mapping* is the published 360° document (``view_document.to_document``) as a
nested dict, augmented by ``facts_of`` with what the document states in a form a rule can
compare (consents keyed by channel and purpose, money as ``Decimal``) and with *derived*
facts the caller supplies. A fact name is a dotted path into that mapping
(``lifecycle.stage``, ``channels.phone.count``); a missing key or ``None`` is an absent fact.

Every name a rule may use is declared in ``FACTS`` with its type and where it comes from:

* ``document``: read from the document, nothing to do;
* ``derived``: computed by ``projections.predicates.derived.derived_facts(view, at)`` — relative to an instant the caller
  gives, since the core reads no clock;
* ``caller``: not in the stored view's document (the value card: RFM, lifetime value,
  P(alive), computed by the shell when a view is read, docs/VALUE.md); the caller adds
  them, and a rule reading an absent fact simply does not match.

A ``<placeholder>`` segment stands for any value of its kind (``PLACEHOLDERS``).
Event facts (``EVENT_FACTS``, read by ``when.touchpoint.where``) are the touchpoint
dataclass fields, derived from ``projections.touchpoints`` so the two never drift.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from projections import touchpoints as tp
from projections.lifecycle.stages import STAGES
from projections.value.rfm import Segment

__all__ = ["Fact", "Catalogue", "PLACEHOLDERS", "CONTACT_CHANNELS", "CONTACT_CHANNEL_OF", "FACTS", "EVENT_FACTS",
           "facts_of", "event_facts"]

CONTACT_CHANNELS = ("call", "email", "sms", "visit", "web", "mail")
"""The channels a next best contact goes through (channel systems that consume triggers)."""

CONTACT_CHANNEL_OF = {"phone": "call", "ivr": "call", "email": "email", "sms": "sms", "mail": "mail",
                      "web": "web", "online_banking": "web", "store": "visit", "field": "visit"}
"""Touchpoint channel -> the contact channel that reaches the customer the same way."""


class Fact(NamedTuple):
    type: str  # string | number | boolean | list
    description: str
    source: str = "document"  # document | derived | caller
    values: tuple[str, ...] | None = None  # the closed set a string fact takes, if any


_IDENT = re.compile(r"[a-z0-9_]+\Z")
PLACEHOLDERS: dict[str, Any] = {
    "<channel>": frozenset(c.value for c in tp.Channel),
    "<currency>": re.compile(r"[A-Z]{3}\Z"),
    "<attribute>": _IDENT,
    "<consent_channel>": _IDENT,
    "<purpose>": _IDENT,
    "<field>": _IDENT,
}


class Catalogue:
    """Declared fact names, ``<placeholder>`` segments included; ``find`` resolves a name."""

    def __init__(self, facts: Mapping[str, Fact]) -> None:
        self.facts = dict(facts)
        self._split = [(name.split("."), fact) for name, fact in self.facts.items()]

    def find(self, name: str) -> Fact | None:
        parts = name.split(".")
        for pattern, fact in self._split:
            if len(pattern) == len(parts) and all(map(_segment_matches, pattern, parts)):
                return fact
        return None

    def names(self) -> list[str]:
        return list(self.facts)


def _segment_matches(pattern: str, part: str) -> bool:
    kind = PLACEHOLDERS.get(pattern)
    if kind is None:
        return pattern == part
    return part in kind if isinstance(kind, frozenset) else kind.match(part) is not None


_D, _C = "derived", "caller"
FACTS = Catalogue({
    "customer_id": Fact("string", "the customer's id"),
    "touchpoints": Fact("number", "touchpoints ever folded into the view"),
    "profile.<attribute>": Fact("string", "a profile attribute (first_name, city, language, timezone...)"),
    "identity.emails": Fact("list", "the customer's known email addresses"),
    "identity.phones": Fact("list", "the customer's known phone numbers (E.164)"),
    "channels.<channel>.count": Fact("number", "touchpoints through a channel (phone, email, web, store...)"),
    "channels.<channel>.last_outcome": Fact("string", "the latest outcome or status seen on that channel"),
    "purchases.count": Fact("number", "purchases ever made"),
    "purchases.by_currency.<currency>.count": Fact("number", "purchases in a currency"),
    "purchases.by_currency.<currency>.revenue": Fact("number", "historical value: total spent in a currency, net of refunds"),
    "purchases.by_currency.<currency>.margin": Fact("number", "total margin in a currency, when stated, net of refunds"),
    "purchases.by_currency.<currency>.average_basket": Fact("number", "net revenue per purchase in a currency"),
    "purchases.by_currency.<currency>.refunds": Fact("number", "refunds in a currency (money given back; no purchase)"),
    "purchases.by_currency.<currency>.refunded": Fact("number", "the money refunds gave back in a currency"),
    "service_cases.open": Fact("number", "service cases currently open"),
    "service_cases.resolved": Fact("number", "service cases resolved"),
    "service_cases.mean_resolution_seconds": Fact("number", "mean time to resolve a case"),
    "satisfaction.csat": Fact("number", "the latest CSAT answer, 1..5"),
    "satisfaction.nps": Fact("number", "the latest NPS answer, 0..10"),
    "consent.<consent_channel>.<purpose>": Fact("string", "the consent's latest status", values=tp.CONSENT_STATUSES),
    "lifecycle.stage": Fact("string", "the lifecycle stage", values=STAGES),
    "lifecycle.rule": Fact("string", "why the customer is in that stage"),
    "lifecycle.typical_interval_days": Fact("number", "the customer's typical days between purchases"),
    "lifecycle.transitions": Fact("number", "stage changes so far"),
    "days_since_first_purchase": Fact("number", "days since the first purchase", _D),
    "days_since_last_purchase": Fact("number", "days since the latest purchase", _D),
    "days_since_last_seen": Fact("number", "days since the latest touchpoint of any kind", _D),
    "days_in_stage": Fact("number", "days since the customer entered the current stage", _D),
    "open_complaints": Fact("number", "open service cases of category complaint", _D),
    "preferred_channel": Fact("string", "profile preferred_channel, else the contact channel the customer "
                              "uses most", _D, CONTACT_CHANNELS),
    "contacts_7d": Fact("number", "contacts in the last 7 days, both directions, human ones included", _D),
    "contacts_30d": Fact("number", "contacts in the last 30 days, both directions, human ones included", _D),
    # The value card (services/value/card.py) is computed when a view is read, against the
    # portfolio's quintiles: the caller passes it as ``{"value": value_card(...)}``.
    "value.rfm.segment": Fact("string", "RFM segment (projections.value.rfm)", _C, tuple(s.value for s in Segment)),
    "value.rfm.scores.r": Fact("number", "RFM recency score 1..5", _C),
    "value.rfm.scores.f": Fact("number", "RFM frequency score 1..5", _C),
    "value.rfm.scores.m": Fact("number", "RFM monetary score 1..5", _C),
    "value.rfm.recency_days": Fact("number", "days since the last purchase in the value currency", _C),
    "value.rfm.frequency": Fact("number", "purchases, every currency", _C),
    "value.rfm.monetary": Fact("number", "total spend in the value currency", _C),
    "value.monetary.total_spend": Fact("number", "total spend in the value currency", _C),
    "value.monetary.orders": Fact("number", "purchases in the value currency", _C),
    "value.monetary.average_order_value": Fact("number", "total spend / purchases, in the value currency", _C),
    "value.monetary.mean_repeat_purchase_value": Fact(
        "number", "spend per purchase day after the first (the spend model's monetary value)", _C),
    "value.historical.revenue": Fact("number", "historical value: revenue in the value currency", _C),
    "value.historical.margin": Fact("number", "margin in the value currency, when stated", _C),
    "value.lifetime_value.value": Fact("number", "lifetime value (seed formula), in the value currency", _C),
    "value.p_alive": Fact("number", "probability the customer is still buying (BG/NBD), 0..1", _C),
    "value.expected_purchases_90d": Fact("number", "purchases expected over the next 90 days (BG/NBD)", _C),
})

_ENVELOPE_SKIPPED = {"event_id", "occurred_at", "received_at", "customer", "attributes", "lines", "fields"}
_ENUMS = {"channel": tuple(c.value for c in tp.Channel), "direction": tp.CALL_DIRECTIONS,
          "outcome": tp.CALL_OUTCOMES, "initiated_by": tp.VISIT_INITIATORS, "severity": tp.CASE_SEVERITIES}
_STATUS = {"email": tp.EMAIL_STATUSES, "service_case": tp.CASE_STATUSES, "consent": tp.CONSENT_STATUSES}


def _event_catalogue(cls: type[tp.Touchpoint]) -> Catalogue:
    facts = {}
    for f in dataclasses.fields(cls):
        if f.name in _ENVELOPE_SKIPPED:
            continue
        kind = "number" if re.match(r"(int|Decimal)\b", str(f.type)) else "string"
        values = _STATUS.get(cls.type) if f.name == "status" else _ENUMS.get(f.name)
        facts[f.name] = Fact(kind, f"the {cls.type}'s {f.name.replace('_', ' ')}", "event", values)
    if cls is tp.WebForm:
        facts["fields.<field>"] = Fact("string", "a field the form carried", "event")
    return Catalogue(facts)


EVENT_FACTS: dict[str, Catalogue] = {name: _event_catalogue(cls) for name, cls in tp.TOUCHPOINT_TYPES.items()}


@functools.lru_cache(maxsize=64)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in _ENVELOPE_SKIPPED)


def event_facts(event: tp.Touchpoint) -> dict[str, Any]:
    """The facts ``when.touchpoint.where`` reads: the event's fields, form fields as a mapping."""
    # a class is hashable: mypy checks a frozen dataclass's instance __hash__ instead
    facts: dict[str, Any] = {name: getattr(event, name) for name in _field_names(type(event))}  # type: ignore[arg-type]
    facts["channel"] = event.channel.value
    if isinstance(event, tp.WebForm):
        facts["fields"] = dict(event.fields)
    return facts


_MONEY = ("revenue", "margin", "average_basket", "refunded")


def facts_of(document: Mapping[str, Any], derived: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The facts mapping of a 360° document plus the derived and caller facts given."""
    facts = dict(document)
    consent: dict[str, dict[str, str]] = {}
    for c in document.get("consents") or ():
        consent.setdefault(c["channel"], {})[c["purpose"]] = c["status"]
    facts["consent"] = consent
    purchases = document.get("purchases")
    if purchases:
        by_currency = {k: {**v, **{m: Decimal(v[m]) for m in _MONEY if v.get(m) is not None}}
                       for k, v in (purchases.get("by_currency") or {}).items()}
        facts["purchases"] = {**purchases, "by_currency": by_currency}
    facts.update(derived or {})
    return facts

