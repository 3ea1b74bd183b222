"""Properties of the next-best-contact engine: the facts it reads are the document's,
caps are never exceeded, no trigger goes through a channel whose consent is withdrawn,
ids are deterministic, and the same history gives the same triggers."""

from __future__ import annotations

import dataclasses
from functools import reduce
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.nbc.engine import ContactEngine, Decisions, fold_event, fold_tick
from projections.nbc.rules import compile_rules
from projections.predicates.derived import derived_facts
from projections.predicates.facts import CONTACT_CHANNEL_OF, FACTS, facts_of
from projections.predicates.language import lookup
from projections.touchpoints import Touchpoint
from projections.view.document import to_document
from projections.view.facts import view_facts
from projections.view.fold import evolve, initial_view, instant_of, micros
from services.zones import PINNED
from tests.support.steps import collect
from tests.support.strategies import customer_histories

# Concrete fact names: each placeholder of the catalogue filled with the values histories use.
_FILL = {"<channel>": ["phone", "email", "web", "store"], "<currency>": ["EUR", "USD"],
         "<attribute>": ["city", "timezone", "first_name"], "<consent_channel>": ["email", "phone", "sms"],
         "<purpose>": ["marketing", "service"], "<field>": ["topic"]}


def _names() -> list[str]:
    names = [""]
    out = []
    for pattern in FACTS.names():
        names = [""]
        for part in pattern.split("."):
            names = [f"{n}.{v}" if n else v for n in names for v in _FILL.get(part, [part])]
        out += names
    return [n for n in out if not n.startswith("value.")]


NAMES = _names()


@settings(max_examples=150)
@given(customer_histories(), st.integers(0, 400))
def test_the_lazy_facts_equal_the_documents(events, days) -> None:  # type: ignore[no-untyped-def]
    view = reduce(evolve, events, initial_view("c-1"))
    at = (view.last_seen or 0) + days * 86_400_000_000
    eager = facts_of(to_document(view), derived_facts(view, instant_of(at)))
    lazy = view_facts(view, at)
    assert [(n, lookup(lazy, n)) for n in NAMES] == [(n, lookup(eager, n)) for n in NAMES]


def _rules(cap_window: str, cap_max: int) -> ContactEngine:
    base: dict[str, Any] = {"version": 1, "purpose": "marketing",
                            "constraints": {"consent": {"purpose": "marketing"},
                                            "caps": {"per_channel": {"window": cap_window, "max": cap_max},
                                                     "overall": {"window": cap_window, "max": cap_max + 1}}}}
    rules = [
        {**base, "id": "on_call", "when": {"touchpoint": {"type": "call"}},
         "what": {"channel": "email", "action": "a", "priority": 10, "expected_value": 5, "valid_for": "3d"}},
        {**base, "id": "on_purchase", "when": {"touchpoint": {"type": "purchase"}},
         "what": {"channel": "sms", "action": "b", "priority": 20, "expected_value": 5, "valid_for": "3d"}},
        {**base, "id": "after_purchase", "when": {"after": {"event": "purchase", "delay": "2d"}},
         "what": {"channel": "email", "action": "c", "priority": 30, "expected_value": 5, "valid_for": "3d"}},
        {**base, "id": "on_stage", "when": {"lifecycle": {"to": "new"}},
         "what": {"channel": "email", "action": "d", "priority": 40, "expected_value": 5, "valid_for": "3d"}},
    ]
    return ContactEngine(compile_rules({"version": 1, "rules": rules}, "property"), PINNED)


def arriving(events: list[Touchpoint]) -> list[Touchpoint]:
    """The events as the platform receives them, in list order: each received no earlier
    than the one before it (a late event is received late); the platform's clock keeps up
    with arrivals (it ticks every minute), so it is passed as each event's clock."""
    out, latest = [], None
    for event in events:
        latest = event.occurred_at if latest is None else max(latest, event.occurred_at)
        out.append(dataclasses.replace(event, received_at=latest))
    return out


def run(engine: ContactEngine, events: list[Touchpoint], tick_days: int) -> tuple[Decisions, Any]:
    sink = Decisions()
    view = initial_view("c-1")
    clock = None
    for event in arriving(events):
        view = collect(sink, fold_event(view, event, clock=micros(event.received_at), engine=engine))
    if view.last_seen is not None:
        clock = view.last_seen + tick_days * 86_400_000_000
        view = collect(sink, fold_tick(view, clock, engine=engine))
    return sink, view


@settings(max_examples=200)
@given(customer_histories(), st.sampled_from(["1d", "3d", "7d"]), st.integers(1, 3), st.integers(0, 5))
def test_caps_are_never_exceeded(events, window, cap, tick_days) -> None:  # type: ignore[no-untyped-def]
    """No trigger fires when the contacts known at its decision (the ledger, human ones
    included, and the triggers decided before it) already fill a window of the cap's
    width around it: per channel ``cap``, overall ``cap`` + 1."""
    engine = _rules(window, cap)
    span = int(window[:-1]) * 86_400_000_000
    sink = Decisions()
    view = initial_view("c-1")
    steps = [("event", e) for e in arriving(events)] + [("tick", None)]
    for kind, event in steps:
        before = len(sink.triggers)
        if kind == "event":
            view = collect(sink, fold_event(view, event, clock=micros(event.received_at), engine=engine))
        elif view.last_seen is not None:
            view = collect(sink, fold_tick(view, view.last_seen + tick_days * 86_400_000_000, engine=engine))
        for n in range(before, len(sink.triggers)):
            t = sink.triggers[n]
            around = [f for f in sink.triggers[:n] if abs(f.at - t.at) < span]
            # the step's own event is unknown to timers fired before it (at their earlier instants)
            marks = [m for m in view.contacts if abs(m.occurred_at - t.at) < span
                     and not (event is not None and m.event_id == event.event_id and m.occurred_at > t.at)]
            same = sum(1 for f in around if f.channel == t.channel) + sum(
                1 for m in marks if CONTACT_CHANNEL_OF.get(m.channel) == t.channel)
            assert same < cap, (t.rule, t.channel, t.at, same)
            assert len(around) + len(marks) < cap + 1, (t.rule, t.at)


@settings(max_examples=150)
@given(customer_histories(), st.integers(0, 5))
def test_no_trigger_goes_through_a_channel_whose_consent_is_withdrawn(events, tick_days) -> None:  # type: ignore[no-untyped-def]
    engine = _rules("7d", 5)
    sink = Decisions()
    view = initial_view("c-1")
    for event in arriving(events):
        before = len(sink.triggers)
        view = collect(sink, fold_event(view, event, clock=micros(event.received_at), engine=engine))
        for t in sink.triggers[before:]:  # decided on this step: the consent in force now
            held = dict(view.consents).get(({"email": "email", "sms": "sms"}[t.channel], "marketing"))
            assert held is not None and held.status == "granted"
            assert t.consent is not None and t.consent["status"] == "granted"


@settings(max_examples=100)
@given(customer_histories(), st.integers(0, 5))
def test_the_same_history_gives_the_same_triggers_with_the_same_ids(events, tick_days) -> None:  # type: ignore[no-untyped-def]
    engine = _rules("7d", 2)
    first, view_a = run(engine, events, tick_days)
    second, view_b = run(_rules("7d", 2), list(events), tick_days)
    assert first.triggers == second.triggers and view_a == view_b
    assert len({t.trigger_id for t in first.triggers}) == len(first.triggers)

