"""Next-best-contact rule files: what they mean once compiled, and every mistake named precisely."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from functools import reduce
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from projections.nbc.contact_time import BusinessHours, QuietHours, due_at, parse_duration
from projections.nbc.rules import RuleErrors, RuleSet, compile_rules
from projections.predicates.derived import derived_facts
from projections.predicates.errors import RuleError
from projections.predicates.facts import FACTS, event_facts, facts_of
from projections.view.document import to_document
from projections.view.fold import CustomerView, evolve, initial_view
from tests.support.touchpoints import at, call, case, purchase

DEFAULT = Path(__file__).resolve().parents[2] / "rules" / "default.yaml"
RULE = {"id": "r", "version": 1, "purpose": "marketing", "when": {"lifecycle": {"to": "new"}},
        "what": {"channel": "email", "action": "welcome_pack", "priority": 40, "expected_value": 5, "valid_for": "3d"},
        "constraints": {"consent": {"purpose": "marketing"}}}


def default_rules() -> RuleSet:
    return compile_rules(yaml.safe_load(DEFAULT.read_text()), "rules/default.yaml")


def fold(*events) -> CustomerView:  # type: ignore[no-untyped-def]
    return reduce(evolve, events, initial_view("c-1"))


def facts_at(view: CustomerView, days: float) -> dict[str, Any]:
    return facts_of(to_document(view), derived_facts(view, at(days)))


def errors_of(data: Any) -> list[str]:
    with pytest.raises(RuleErrors) as raised:
        compile_rules(data, "rules/x.yaml")
    return [str(e) for e in raised.value.errors]


def with_change(path: str, value: Any) -> dict[str, Any]:
    """A file of one valid rule with the field at ``path`` (dotted) set, or removed when value is ...."""
    rule = copy.deepcopy(RULE)
    *parents, last = path.split(".")
    node = rule
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return {"version": 1, "rules": [rule]}


def test_the_default_rules_compile_with_one_trigger_kind_each_and_the_complaint_suppression() -> None:
    rules = default_rules()
    assert [r.label for r in rules.by_trigger_kind["lifecycle"]] == ["welcome (v1)", "relaunch_declining (v1)",
                                                                    "win_back_lost (v1)"]
    assert {r.id for r in rules.by_trigger_kind["case_past_sla"]} == {"escalation_call_case_past_sla"}
    assert len(rules.rules) == sum(map(len, rules.by_trigger_kind.values())) == 9
    assert rules.timezone == "Europe/Paris" and rules.business_hours == BusinessHours()
    assert [s.id for s in rules.suppressions] == ["no_promotions_while_complaint_open"]
    assert rules.facts >= {"open_complaints", "purchases.count", "preferred_channel"}


def test_a_web_contact_form_asks_for_a_call_back_within_one_business_hour() -> None:
    rule = default_rules().by_id["callback_after_contact_form"]
    assert rule.what.channel == "call" and rule.what.valid_for.business_hours == 1
    friday_evening = datetime(2026, 3, 6, 17, 30, tzinfo=UTC)
    assert due_at(friday_evening, rule.what.valid_for) == datetime(2026, 3, 9, 9, 30, tzinfo=UTC)


def test_an_open_complaint_suppresses_promotions_but_not_service_contacts() -> None:
    rules = default_rules()
    view = fold(purchase("p1", at(0)), purchase("p2", at(20)), call("c1", at(120), direction="inbound"),
                case("s1", "case-1", "opened", at(121), category="complaint"))
    relaunch, escalation = rules.by_id["relaunch_declining"], rules.by_id["escalation_call_case_past_sla"]
    complaining = facts_at(view, 121)
    assert relaunch.when.matches("active", complaining["lifecycle"]["stage"])  # type: ignore[union-attr]
    assert relaunch.who.evaluate(complaining)
    suppression = rules.suppressed_by(relaunch, complaining)
    assert suppression is not None and suppression.id == "no_promotions_while_complaint_open"
    assert not rules.eligible(relaunch, complaining)
    assert rules.eligible(escalation, complaining)
    solved = facts_at(evolve(view, case("s2", "case-1", "resolved", at(122))), 122)
    assert rules.eligible(relaunch, solved)


def test_cross_sell_is_for_a_new_customer_with_a_single_purchase() -> None:
    rule = default_rules().by_id["cross_sell_after_first_purchase"]
    assert rule.who.evaluate(facts_at(fold(purchase("p1", at(0))), 7))
    assert not rule.who.evaluate(facts_at(fold(purchase("p1", at(0)), purchase("p2", at(3))), 7))


def test_the_satisfaction_call_follows_only_high_value_purchases_three_days_later() -> None:
    trigger = default_rules().by_id["satisfaction_call_after_high_value_purchase"].when
    assert trigger.delay.span == timedelta(days=3)  # type: ignore[union-attr]
    assert trigger.where.evaluate(event_facts(purchase("p1", amount="750.00")))  # type: ignore[union-attr]
    assert not trigger.where.evaluate(event_facts(purchase("p2", amount="120.00")))  # type: ignore[union-attr]


def test_relaunch_goes_through_the_preferred_channel_or_falls_back_to_email() -> None:
    what = default_rules().by_id["relaunch_declining"].what
    assert what.channel_for({"preferred_channel": "sms"}) == "sms"
    assert what.channel_for({"preferred_channel": None}) == "email"
    consent = default_rules().by_id["relaunch_declining"].constraints.consent
    assert consent is not None and consent.consent_channel("call") == "phone"


def test_escalation_slas_follow_the_case_severity() -> None:
    trigger = default_rules().by_id["escalation_call_case_past_sla"].when
    assert trigger.sla_for("critical").business_hours == 2  # type: ignore[union-attr]
    assert trigger.sla_for("low").span == timedelta(days=5)  # type: ignore[union-attr]


def test_the_customer_time_zone_comes_from_the_profile_else_the_file() -> None:
    rules = default_rules()
    assert rules.zone_of({"profile": {"timezone": "America/Montreal"}}) == "America/Montreal"
    assert rules.zone_of({"profile": {}}) == "Europe/Paris"


def test_the_message_names_file_rule_version_and_field() -> None:
    data = with_change("who", {"all": [{"fact": "purchases.count", "gte": 1}, {"fact": "purchases.count",
                                                                                "gte": "two"}]})
    data["rules"][0].update(id="welcome", version=2)
    assert errors_of(data) == ["rules/x.yaml: rule welcome (v2): who.all[1].gte: expected a number, got 'two'"]
    with pytest.raises(RuleErrors) as raised:  # the structured form a shell maps to a line
        compile_rules(data, "rules/x.yaml")
    assert raised.value.errors[0].path == ("rules", 0, "who", "all", 1, "gte")
    assert raised.value.errors[0].field == "who.all[1].gte"


@pytest.mark.parametrize(("path", "value", "message"), [
    ("when", ..., "'when' is required"),
    ("constraint", {}, "constraint: unknown field 'constraint' (did you mean 'constraints'?)"),
    ("when.touchpoint", {"type": "call"}, "when: expected exactly one of touchpoint, lifecycle, after, "
     "case_past_sla, found lifecycle, touchpoint"),
    ("when", {"timer": {}}, "when.timer: expected one of touchpoint, lifecycle, after, case_past_sla, got 'timer'"),
    ("when", {"touchpoint": {"type": "webform"}}, "when.touchpoint.type: expected one of call, email, visit, "
     "web_form, purchase, refund, service_case, survey, consent, got 'webform' (did you mean 'web_form'?)"),
    ("when", {"touchpoint": {"type": "web_form", "where": {"fact": "amount", "gt": 1}}},
     "when.touchpoint.where.fact: unknown fact 'amount' (known here: source, channel, trigger_id, form_id, "
     "fields.<field>)"),
    ("when", {"after": {"event": "purchase", "delay": "3 days"}},
     "when.after.delay: expected a duration (90m, 36h, 3d, 2w or 1 business hour), got '3 days'"),
    ("when", {"lifecycle": {"to": ["new", "loyal"]}}, "when.lifecycle.to[1]: expected one of prospect, new, active, "
     "declining, lost, reactivated, got 'loyal'"),
    ("when", {"case_past_sla": {"sla": {"urgent": "1h"}}}, "when.case_past_sla.sla.urgent: unknown field 'urgent' "
     "(expected low, medium, high, critical)"),
    ("what.channel", "phone", "what.channel: expected one of call, email, sms, visit, web, mail, preferred, "
     "got 'phone'"),
    ("what.channel", "preferred", "what.channel: channel preferred needs a fallback_channel for customers with none"),
    ("what.priority", -1, "what.priority: expected a whole number >= 0, got -1"),
    ("what.expected_value", "lots", "what.expected_value: expected an amount >= 0 such as 12.50, got 'lots'"),
    ("what.valid_for", "1.5h", "what.valid_for: expected a duration (90m, 36h, 3d, 2w or 1 business hour), "
     "got '1.5h'"),
    ("what.valid_for", ..., "what: 'valid_for' is required"),
    ("constraints.consent", "not_required", "constraints.consent: a marketing contact needs consent: "
     "not_required is for service contacts only"),
    ("constraints.consent", {"purpose": "sales"}, "constraints.consent.purpose: expected one of marketing, service, "
     "got 'sales'"),
    ("constraints.quiet_hours", {"start": 1260, "end": "08:00", "mode": "defer"}, "constraints.quiet_hours.start: "
     "expected a time of day \"HH:MM\", got 1260 (quote it: YAML reads an unquoted 21:00 as a number)"),
    ("constraints.quiet_hours", {"start": "21:00", "end": "08:00", "mode": "later"},
     "constraints.quiet_hours.mode: expected one of defer, drop, got 'later'"),
    ("constraints.quiet_hours", {"start": "21:00", "end": "21:00", "mode": "drop"},
     "constraints.quiet_hours: start and end are the same time: quiet hours would be all day or none"),
    ("constraints.cooldown", "1 business hour", "constraints.cooldown: business time means nothing here, expected "
     "calendar time such as 30d, got '1 business hour'"),
    ("constraints.caps", {"overall": {"window": "60d", "max": 3}}, "constraints.caps.overall.window: at most 30d: "
     "the view keeps 30 days of contacts, got '60d'"),
    ("constraints.caps", {"per_channel": {"window": "7d", "max": 0}}, "constraints.caps.per_channel.max: expected "
     "a whole number >= 1, got 0"),
])
def test_a_broken_field_is_named_with_its_rule_and_path(path: str, value: Any, message: str) -> None:
    assert errors_of(with_change(path, value)) == [f"rules/x.yaml: rule r (v1): {message}"]


@pytest.mark.parametrize(("data", "message"), [
    ([], "rules/x.yaml: expected a mapping with version, rules, timezone, business_hours, suppressions, got an "
     "empty list"),
    ({"version": 1}, "rules/x.yaml: 'rules' is required"),
    ({"version": 1, "rules": []}, "rules/x.yaml: rules: expected a non-empty list, got an empty list"),
    ({"version": "1", "rules": [RULE]}, "rules/x.yaml: version: expected a whole number >= 1, got '1'"),
    ({"version": 1, "timezone": "Paris", "rules": [RULE]},
     "rules/x.yaml: timezone: expected a time zone such as Europe/Paris or UTC, got 'Paris'"),
    ({"version": 1, "business_hours": {"start": "18:00", "end": "09:00"}, "rules": [RULE]},
     "rules/x.yaml: business_hours.end: business hours end after they start, on the same day"),
    ({"version": 1, "business_hours": {"days": ["mon", "fri", "sun", "moon"]}, "rules": [RULE]},
     "rules/x.yaml: business_hours.days[3]: expected one of mon, tue, wed, thu, fri, sat, sun, got 'moon' "
     "(did you mean 'mon'?)"),
    ({"version": 1, "rules": [{**RULE, "version": "two"}]},
     "rules/x.yaml: rule r: version: expected a whole number >= 1, got 'two'"),
    ({"version": 1, "rules": [{**RULE, "id": "Welcome Pack"}]},
     "rules/x.yaml: rule Welcome Pack (v1): id: expected an identifier (lower case, digits, _), got 'Welcome Pack'"),
    ({"version": 1, "rules": [{k: v for k, v in RULE.items() if k != "id"}]}, "rules/x.yaml: rules[0]: 'id' is "
     "required"),
    ({"version": 1, "suppressions": [{"id": "s", "purposes": ["promo"], "while": {"fact": "open_complaints",
                                                                               "gt": 0}}], "rules": [RULE]},
     "rules/x.yaml: suppression s: purposes[0]: expected one of marketing, service, got 'promo'"),
])
def test_a_broken_file_level_field_is_named_with_its_path(data: Any, message: str) -> None:
    assert errors_of(data) == [message]


def test_two_suppressions_with_one_id_are_an_error() -> None:
    quiet = {"id": "s", "purposes": ["marketing"], "while": {"fact": "open_complaints", "gt": 0}}
    assert errors_of({"version": 1, "suppressions": [quiet, quiet], "rules": [RULE]}) == [
        "rules/x.yaml: suppression s: id: duplicate id 's' (also suppressions[0])"]


def test_every_broken_rule_is_reported_in_file_order_and_duplicates_name_the_first() -> None:
    broken = {**RULE, "id": "b", "what": {**RULE["what"], "channel": "fax"}}  # type: ignore[dict-item]
    data = {"version": 1, "rules": [RULE, broken, {**RULE, "version": 2}]}
    assert errors_of(data) == [
        "rules/x.yaml: rule b (v1): what.channel: expected one of call, email, sms, visit, web, mail, preferred, "
        "got 'fax'",
        "rules/x.yaml: rule r (v2): id: duplicate id 'r' (also rules[0])",
    ]


@pytest.mark.parametrize(("text", "span", "hours"), [
    ("90m", timedelta(minutes=90), None), ("36h", timedelta(hours=36), None), ("3d", timedelta(days=3), None),
    ("2w", timedelta(weeks=2), None), ("1 business hour", None, 1), ("12 business hours", None, 12),
])
def test_durations_are_read_strictly(text: str, span: timedelta | None, hours: int | None) -> None:
    assert parse_duration(text, ("d",))[1:] == (span, hours)


@pytest.mark.parametrize("text", ["0d", "3 d", "3D", "1.5h", "03d", "1 business day", "-2h", "", 3])
def test_a_duration_that_could_be_read_two_ways_is_refused(text: Any) -> None:
    with pytest.raises(RuleError):
        parse_duration(text, ("d",))


def test_business_hours_skip_nights_and_weekends() -> None:
    hours = BusinessHours()
    tuesday = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    assert hours.add(tuesday, 8) == datetime(2026, 3, 4, 13, 0, tzinfo=UTC)
    assert hours.add(datetime(2026, 3, 7, 11, 0, tzinfo=UTC), 1) == datetime(2026, 3, 9, 10, 0, tzinfo=UTC)  # Sat
    assert hours.add(datetime(2026, 3, 3, 7, 0, tzinfo=UTC), 2) == datetime(2026, 3, 3, 11, 0, tzinfo=UTC)


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)).map(lambda d: d.replace(
    tzinfo=UTC)), st.integers(1, 60))
def test_business_time_lands_inside_business_hours_and_grows_with_the_hours(start: datetime, n: int) -> None:
    hours = BusinessHours()
    end = hours.add(start, n)
    assert end.weekday() < 5 and time(9) < end.time() <= time(18)
    assert hours.add(start, n + 1) - end >= timedelta(hours=1)


def test_quiet_hours_across_midnight_defer_to_their_end() -> None:
    quiet = QuietHours(time(21), time(8), "defer")
    assert quiet.contains(time(23)) and quiet.contains(time(7, 59)) and not quiet.contains(time(8))
    late = datetime(2026, 3, 3, 22, 15, tzinfo=UTC)
    assert quiet.ends_after(late) == datetime(2026, 3, 4, 8, 0, tzinfo=UTC)
    noon = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
    assert quiet.ends_after(noon) == noon


clock_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 59]))


@settings(max_examples=200, deadline=None)
@given(clock_times, clock_times, st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)))
def test_a_deferred_contact_leaves_quiet_hours_within_a_day(start: time, end: time, naive: datetime) -> None:
    assume(start != end)
    quiet, moment = QuietHours(start, end, "defer"), naive.replace(tzinfo=UTC)
    released = quiet.ends_after(moment)
    assert not quiet.contains(released.time())
    assert timedelta(0) <= released - moment < timedelta(days=1)
    assert (released == moment) is (not quiet.contains(moment.time()))


anything = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=6) | st.floats(),
                        lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=6), inner,
                                                                                    max_size=2), max_leaves=5)
FIELDS = ["id", "version", "purpose", "when", "when.lifecycle", "when.lifecycle.to", "who", "what", "what.channel",
          "what.priority", "what.expected_value", "what.valid_for", "constraints", "constraints.consent",
          "constraints.caps", "constraints.quiet_hours", "constraints.cooldown", "description"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), anything)
def test_any_value_in_any_field_compiles_or_is_a_rule_error(path: str, value: Any) -> None:
    try:
        rules = compile_rules(with_change(path, value), "rules/x.yaml")
    except RuleErrors as errors:
        assert errors.errors and all(str(e).startswith("rules/x.yaml: ") for e in errors.errors)
    else:
        assert rules.rules[0].what.expected_value >= Decimal(0)


def test_the_reference_documents_every_fact_and_default_rule_and_its_example_compiles() -> None:
    doc = (DEFAULT.parents[1] / "docs" / "RULES.md").read_text()
    assert [name for name in FACTS.facts if f"`{name}`" not in doc] == []
    assert [r.id for r in default_rules().rules if f"`{r.id}`" not in doc] == []
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    rules = compile_rules({"version": 1, "rules": yaml.safe_load(example)}, "docs/RULES.md")
    assert rules.rules[0].label == "relaunch_declining (v1)"
