"""The next-best-contact engine, one constraint at a time, on real compiled rules."""

from __future__ import annotations

from typing import Any

import pytest

from projections.nbc.engine import ContactEngine, Decisions, fold_event, fold_tick, next_due, trigger_id
from projections.nbc.rules import compile_rules
from projections.touchpoints import Touchpoint
from projections.view.document import from_state, to_state
from projections.view.fold import initial_view, micros
from services.zones import PINNED
from tests.support.steps import collect
from tests.support.touchpoints import at, call, case, consent, purchase, survey, visit, web_form

# T0 is Monday 2026-03-02 09:00 UTC (10:00 in Paris)


def rule(rule_id: str = "r", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": rule_id, "version": 1, "purpose": "service",
        "when": {"touchpoint": {"type": "web_form", "where": {"fact": "form_id", "eq": "contact"}}},
        "what": {"channel": "call", "action": "call_back", "priority": 50, "expected_value": 10, "valid_for": "2d"},
        "constraints": {"consent": "not_required"},
    }
    base.update(over)
    return base


def engine(*rules: dict[str, Any], **top: Any) -> ContactEngine:
    return ContactEngine(compile_rules({"version": 1, "timezone": "Europe/Paris", "rules": list(rules), **top}, "t"),
                         PINNED)


class Run:
    """Fold a sequence of events and ticks for one customer, collecting decisions."""

    def __init__(self, eng: ContactEngine):
        self.engine, self.sink, self.view = eng, Decisions(), initial_view("c-1")
        self.clock: int | None = None

    def event(self, e: Touchpoint) -> Run:
        self.view = collect(self.sink, fold_event(self.view, e, clock=self.clock, engine=self.engine))
        return self

    def tick(self, days: float = 0, hours: float = 0) -> Run:
        t = micros(at(days, hours))
        self.clock = t
        self.view = collect(self.sink, fold_tick(self.view, t, engine=self.engine))
        return self

    @property
    def fired(self) -> list[tuple[str, str]]:
        return [(f.rule, f.channel) for f in self.sink.triggers]

    @property
    def reasons(self) -> list[tuple[str, str]]:
        return [(rule, reason) for _, rule, _, reason, _, _ in self.sink.suppressions]


def test_a_contact_form_fires_a_call_back_with_its_explanation() -> None:
    run = Run(engine(rule())).event(web_form("w1", at(0)))
    [t] = run.sink.triggers
    assert (t.rule, t.channel, t.action, t.at) == ("r", "call", "call_back", micros(at(0)))
    assert t.valid_until == micros(at(2))
    assert t.trigger_id == trigger_id("c-1", "r", 1, "tp:w1")
    assert t.cause == {"kind": "touchpoint", "id": "w1", "type": "web_form"}
    assert ("form_id", "contact") in t.facts
    assert t.score == 500


def test_the_same_history_gives_the_same_triggers() -> None:
    history = [web_form("w1", at(0)), web_form("w2", at(3))]
    runs = [Run(engine(rule())) for _ in range(2)]
    for run in runs:
        for e in history:
            run.event(e)
    assert [t.trigger_id for t in runs[0].sink.triggers] == [t.trigger_id for t in runs[1].sink.triggers]
    assert len(runs[0].sink.triggers) == 2


def test_a_duplicate_event_decides_nothing_twice() -> None:
    run = Run(engine(rule())).event(web_form("w1", at(0))).event(web_form("w1", at(0)))
    assert len(run.sink.triggers) == 1


def test_where_on_the_event_must_hold() -> None:
    run = Run(engine(rule(when={"touchpoint": {"type": "web_form", "where": {"fact": "form_id", "eq": "other"}}})))
    assert run.event(web_form("w1", at(0))).sink.triggers == []


def test_who_must_hold_or_the_candidate_is_not_eligible() -> None:
    run = Run(engine(rule(who={"fact": "purchases.count", "gte": 1}))).event(web_form("w1", at(0)))
    assert run.fired == [] and run.reasons == [("r", "not_eligible")]


def test_marketing_needs_consent_on_the_channel_used() -> None:
    r = rule(purpose="marketing", what={"channel": "email", "action": "offer", "priority": 1, "expected_value": 1,
                                        "valid_for": "2d"}, constraints={"consent": {"purpose": "marketing"}})
    assert Run(engine(r)).event(web_form("w1", at(0))).reasons == [("r", "no_consent")]
    withdrawn = Run(engine(r)).event(consent("c1", "granted", at(-2))).event(consent("c2", "withdrawn", at(-1)))
    assert withdrawn.event(web_form("w1", at(0))).reasons == [("r", "consent_withdrawn")]
    granted = Run(engine(r)).event(consent("c1", "granted", at(-1))).event(web_form("w1", at(0)))
    [t] = granted.sink.triggers
    assert t.consent is not None and (t.consent["status"], t.consent["event_id"]) == ("granted", "c1")


def test_a_suppression_stops_every_rule_of_its_purpose() -> None:
    r = rule(purpose="marketing", constraints={"consent": {"purpose": "marketing", "channel": "phone"}})
    eng = engine(r, suppressions=[{"id": "complaint", "purposes": ["marketing"],
                                   "while": {"fact": "open_complaints", "gt": 0}}])
    run = Run(eng).event(consent("c1", "granted", at(-1), channel="phone"))
    run.event(case("k1", "case-1", "opened", at(-1), category="complaint")).event(web_form("w1", at(0)))
    assert run.reasons == [("r", "suppression")] and run.fired == []
    run.event(case("k2", "case-1", "resolved", at(0, 1), category="complaint")).event(web_form("w2", at(0, 2)))
    assert run.fired == [("r", "call")]


def test_quiet_hours_defer_to_their_end_and_the_contact_then_fires() -> None:
    r = rule(constraints={"consent": "not_required", "quiet_hours": {"start": "20:00", "end": "09:00",
                                                                       "mode": "defer"}})
    run = Run(engine(r)).event(web_form("w1", at(0, 12)))  # 21:00 UTC = 22:00 in Paris
    assert run.fired == [] and run.reasons == []
    assert next_due(run.view) == micros(at(1, -1))  # 09:00 Paris = 08:00 UTC next day
    run.tick(1, -1.5)
    assert run.fired == []
    run.tick(1, -1)
    [t] = run.sink.triggers
    assert t.at == micros(at(1, -1)) and t.trigger_id == trigger_id("c-1", "r", 1, "tp:w1")


def test_quiet_hours_drop_is_a_suppression() -> None:
    r = rule(constraints={"consent": "not_required", "quiet_hours": {"start": "20:00", "end": "09:00",
                                                                       "mode": "drop"}})
    assert Run(engine(r)).event(web_form("w1", at(0, 12))).reasons == [("r", "quiet_hours")]


def test_a_cooldown_holds_the_rule_back_for_that_customer() -> None:
    r = rule(constraints={"consent": "not_required", "cooldown": "3d"})
    run = Run(engine(r)).event(web_form("w1", at(0))).event(web_form("w2", at(1))).event(web_form("w3", at(3)))
    assert run.fired == [("r", "call"), ("r", "call")]
    assert run.reasons == [("r", "cooldown")]


def test_caps_count_human_contacts_too() -> None:
    r = rule(constraints={"consent": "not_required", "caps": {"per_channel": {"window": "7d", "max": 2}}})
    run = Run(engine(r))
    run.event(call("h1", at(-2), direction="outbound")).event(call("h2", at(-1), direction="inbound"))
    run.event(web_form("w1", at(0)))
    assert run.reasons == [("r", "cap_per_channel")]
    # the web form itself is a web contact, not a call: eight days later the calls are out of the window
    run.event(web_form("w2", at(8)))
    assert run.fired == [("r", "call")]


def test_caps_count_triggers_not_answered_yet() -> None:
    r = rule(constraints={"consent": "not_required", "caps": {"overall": {"window": "7d", "max": 3}}})
    run = Run(engine(r))
    for n in range(4):
        run.event(web_form(f"w{n}", at(n * 0.1)))
    # the forms themselves are contacts: w0 (1) fires (+1 = 2), w1 sees 3 contacts
    assert run.fired == [("r", "call")]
    assert run.reasons == [("r", "cap_overall")] * 3


def test_arbitration_keeps_the_best_per_channel_and_records_the_losers() -> None:
    low = rule("low", what={"channel": "call", "action": "a", "priority": 10, "expected_value": 100,
                            "valid_for": "1d"})
    high = rule("high", what={"channel": "call", "action": "b", "priority": 90, "expected_value": 20,
                              "valid_for": "1d"})
    mail = rule("mail", what={"channel": "mail", "action": "c", "priority": 1, "expected_value": 1, "valid_for": "1d"})
    run = Run(engine(low, high, mail)).event(web_form("w1", at(0)))
    assert sorted(run.fired) == [("high", "call"), ("mail", "mail")]
    winner = next(t for t in run.sink.triggers if t.rule == "high")
    assert winner.losers == ({"rule": "low", "version": 1, "score": "1000", "lost_to": winner.trigger_id},)
    assert ("low", "arbitration") in run.reasons


def test_an_after_rule_fires_when_its_delay_runs_out() -> None:
    r = rule(when={"after": {"event": "purchase", "delay": "3d", "where": {"fact": "amount", "gte": 500}}})
    run = Run(engine(r)).event(purchase("p1", at(0), amount="100.00")).event(purchase("p2", at(0, 1), amount="600.00"))
    assert next_due(run.view) == micros(at(3, 1)) or run.view.lifecycle.deadline is not None
    assert [t.due for t in run.view.contact.timers] == [micros(at(3, 1))]
    run.tick(3)
    assert run.fired == []
    run.tick(3, 2)
    [t] = run.sink.triggers
    assert t.at == micros(at(3, 1)) and t.cause["kind"] == "after" and t.cause["id"] == "p2"


def test_a_timer_due_before_an_event_fires_on_that_event() -> None:
    r = rule(when={"after": {"event": "purchase", "delay": "1d"}})
    run = Run(engine(r)).event(purchase("p1", at(0))).event(call("c1", at(2)))
    assert run.fired == [("r", "call")] and run.sink.triggers[0].at == micros(at(1))


def test_a_case_past_its_sla_escalates_once_and_a_resolved_case_never() -> None:
    r = rule(when={"case_past_sla": {"sla": {"high": "8 business hours", "low": "5d"}}})
    run = Run(engine(r)).event(case("k1", "case-1", "opened", at(0), severity="high"))
    # Monday 10:00 Paris + 8 business hours = Monday 18:00 Paris = 17:00 UTC
    assert [t.due for t in run.view.contact.timers] == [micros(at(0, 8))]
    run.tick(0, 7)
    assert run.fired == []
    run.tick(0, 8)
    run.tick(2)
    assert run.fired == [("r", "call")]
    assert run.sink.triggers[0].cause["kind"] == "case_past_sla"
    solved = Run(engine(r)).event(case("k1", "case-2", "opened", at(0), severity="low"))
    solved.event(case("k2", "case-2", "resolved", at(1), severity="low")).tick(6)
    assert solved.fired == [] and solved.view.contact.timers == ()


def test_a_severity_change_restarts_the_sla_from_the_opening() -> None:
    r = rule(when={"case_past_sla": {"sla": {"high": "8 business hours", "low": "5d"}}})
    run = Run(engine(r)).event(case("k1", "case-1", "opened", at(0), severity="low"))
    run.event(case("k2", "case-1", "updated", at(0, 1), severity="high"))
    assert [t.due for t in run.view.contact.timers] == [micros(at(0, 8))]


def test_a_lifecycle_transition_fires_its_rules() -> None:
    r = rule(when={"lifecycle": {"to": "new"}})
    run = Run(engine(r)).event(purchase("p1", at(0)))
    [t] = run.sink.triggers
    assert t.cause["kind"] == "lifecycle" and t.cause["to"] == "new"


def test_a_late_event_whose_contact_is_already_stale_is_expired() -> None:
    run = Run(engine(rule())).tick(10).event(web_form("w1", at(0)))
    assert run.reasons == [("r", "expired")]


def test_outcomes_come_from_touchpoints_carrying_the_trigger_id_and_purchases_convert() -> None:
    run = Run(engine(rule())).event(web_form("w1", at(0)))
    [t] = run.sink.triggers
    run.event(call("c1", at(0, 1), outcome="no_answer", trigger_id=t.trigger_id))
    run.event(call("c2", at(0, 2), outcome="reached", trigger_id=t.trigger_id))  # the first answer stays
    run.event(purchase("p1", at(2)))
    assert [(o.outcome, o.event_id) for o in run.sink.outcomes] == [("not_reached", "c1"), ("converted", "p1")]
    [issued] = run.view.contact.issued
    assert issued.outcome == "not_reached" and issued.converted


def test_a_purchase_after_the_attribution_window_converts_nothing() -> None:
    run = Run(engine(rule())).event(web_form("w1", at(0))).event(purchase("p1", at(8)))
    assert run.sink.outcomes == []


def test_the_contact_state_survives_storage() -> None:
    r = rule(when={"after": {"event": "purchase", "delay": "3d"}})
    run = Run(engine(r, rule("cb"))).event(purchase("p1", at(0))).event(web_form("w1", at(0, 1)))
    view = run.view
    assert view.contact.timers and view.contact.issued
    assert from_state(to_state(view)) == view


def test_a_survey_with_low_csat_fires_the_manager_call_of_the_default_rules() -> None:
    from services.nbc.rules_file import load_rules
    from services.settings import DEFAULT_RULES_FILE
    eng = ContactEngine(load_rules(DEFAULT_RULES_FILE), PINNED)
    run = Run(eng).event(survey("s1", at(0), csat=2))
    assert run.fired == [("manager_call_after_low_csat", "call")]


@pytest.mark.parametrize("hours", [0, 1, 5])
def test_ticks_change_nothing_when_no_timer_is_due(hours: float) -> None:
    run = Run(engine(rule(when={"after": {"event": "purchase", "delay": "3d"}}))).event(purchase("p1", at(0)))
    before = run.view
    run.tick(0, hours)
    assert run.view.contact == before.contact



# -- found in review ----------------------------------------------------------------------------
def test_a_contact_answering_a_trigger_on_another_channel_leaves_the_trigger_in_its_channel_s_cap() -> None:
    r = Run(engine(rule(constraints={"consent": "not_required", "caps": {"per_channel": {"window": "7d", "max": 1}}})))
    r.event(web_form("w1", at(0)))
    first = r.sink.triggers[0].trigger_id
    r.event(purchase("p1", at(0, 3), trigger_id=first))  # a web purchase naming the call trigger
    r.event(web_form("w3", at(0, 4)))
    assert r.fired == [("r", "call")] and r.reasons == [("r", "cap_per_channel")]


def test_a_deferred_escalation_lapses_when_the_case_is_resolved_meanwhile() -> None:
    r = Run(engine(rule(when={"case_past_sla": {"sla": {"medium": "2h"}}},
                        constraints={"consent": "not_required",
                                     "quiet_hours": {"start": "21:00", "end": "08:00", "mode": "defer"}})))
    r.event(case("c1", "case-1", "opened", at(0, 10)))  # 20:00 Paris: SLA passes at 22:00, in quiet hours
    r.tick(0, 13)
    assert [t.kind for t in r.view.contact.timers] == ["deferred"]
    r.event(case("c2", "case-1", "resolved", at(0, 14)))
    r.tick(1, 0)
    assert r.fired == [] and r.view.contact.timers == () and r.view.contact.escalated == frozenset()


def test_an_event_stamped_ahead_does_not_make_later_contacts_expire() -> None:
    r = Run(engine(rule(what={"channel": "call", "action": "call_back", "priority": 50, "expected_value": 10,
                              "valid_for": "1 business hour"})))
    r.tick(0, 0)
    r.event(visit("v1", at(0, 3)))  # a device three hours fast
    r.event(web_form("w1", at(0, 0.25)))
    assert r.fired == [("r", "call")]


def test_quiet_hours_are_judged_when_a_late_contact_would_be_issued() -> None:
    r = Run(engine(rule(what={"channel": "sms", "action": "promo", "priority": 50, "expected_value": 10,
                              "valid_for": "2d"},
                        constraints={"consent": "not_required",
                                     "quiet_hours": {"start": "21:00", "end": "08:00", "mode": "defer"}})))
    r.tick(0, 13)  # the platform's time: 23:00 in Paris
    r.event(web_form("w1", at(0, 3)))  # the form filled at 13:00 arrives now
    assert r.fired == []
    assert [(t.kind, t.due) for t in r.view.contact.timers] == [("deferred", micros(at(1, -2)))]  # 08:00 Paris
    r.tick(1, -2)
    [t] = r.sink.triggers
    assert t.at == micros(at(1, -2))


def test_a_purchase_naming_a_trigger_after_the_attribution_window_is_reached_not_converted() -> None:
    r = Run(engine(rule())).event(web_form("w1", at(0)))
    r.event(purchase("p1", at(40), trigger_id=r.sink.triggers[0].trigger_id))
    assert [o.outcome for o in r.sink.outcomes] == ["reached"]


def test_a_stage_deadline_passed_before_an_event_is_decided_without_the_event_whoever_comes_first() -> None:
    eng = engine(rule(when={"lifecycle": {"from": ["new"]}}, who={"fact": "purchases.count", "eq": 1},
                      what={"channel": "email", "action": "x", "priority": 1, "expected_value": 1, "valid_for": "30d"}))
    deadline = Run(eng).event(purchase("p1", at(0))).view.lifecycle.deadline
    assert deadline is not None
    days = (deadline - micros(at(0))) / 86_400e6
    late = purchase("p2", at(days + 1))
    event_first = Run(eng).event(purchase("p1", at(0))).tick(days - 1).event(late)
    tick_first = Run(eng).event(purchase("p1", at(0))).tick(days + 0.5).event(late)
    assert [t.trigger_id for t in event_first.sink.triggers] == [t.trigger_id for t in tick_first.sink.triggers]
    assert len(event_first.sink.triggers) == 1
