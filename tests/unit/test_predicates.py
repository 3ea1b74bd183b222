"""The predicate language shared by next-best-contact eligibility and segments."""

from __future__ import annotations

from decimal import Decimal
from functools import reduce
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.predicates.derived import derived_facts
from projections.predicates.facts import EVENT_FACTS, FACTS, event_facts, facts_of
from projections.predicates.language import RuleError, compile_predicate
from projections.view.document import to_document
from projections.view.fold import CustomerView, evolve, initial_view, micros
from tests.support.strategies import customer_histories
from tests.support.touchpoints import at, call, case, consent, purchase, survey, web_form


def fold(*events) -> CustomerView:  # type: ignore[no-untyped-def]
    return reduce(evolve, events, initial_view("c-1"))


def facts_at(view: CustomerView, days: float) -> dict[str, Any]:
    return facts_of(to_document(view), derived_facts(view, at(days)))


def holds(data: Any, facts: dict[str, Any]) -> bool:
    return compile_predicate(data, "who").evaluate(facts)


def test_a_customer_without_a_second_purchase_in_90_days_is_declining_and_matches_the_relaunch_stages() -> None:
    view = fold(purchase("p1", at(0)), call("c1", at(100), direction="inbound"))
    facts = facts_at(view, 100)
    assert holds({"fact": "lifecycle.stage", "in": ["declining", "lost"]}, facts)
    assert not holds({"fact": "lifecycle.stage", "in": ["new", "active"]}, facts)
    assert holds({"fact": "lifecycle.stage", "not_in": ["new", "active"]}, facts)


def test_money_from_the_document_compares_exactly_as_decimal() -> None:
    facts = facts_at(fold(purchase("p1", at(0), "100.10"), purchase("p2", at(1), "50.40")), 1)
    assert holds({"fact": "purchases.by_currency.EUR.revenue", "eq": 150.5}, facts)
    assert holds({"fact": "purchases.by_currency.EUR.revenue", "gt": 150.49}, facts)
    assert not holds({"fact": "purchases.by_currency.EUR.revenue", "gt": 150.5}, facts)


def test_an_absent_fact_fails_every_comparison_except_exists_false() -> None:
    facts = facts_at(fold(purchase("p1", at(0))), 0)  # no survey: satisfaction.csat is None
    for op, value in [("eq", 3), ("ne", 3), ("in", [3]), ("not_in", [3]), ("gt", 0), ("lte", 5), ("exists", True)]:
        assert not holds({"fact": "satisfaction.csat", op: value}, facts), op
    assert holds({"fact": "satisfaction.csat", "exists": False}, facts)
    assert holds({"not": {"fact": "satisfaction.csat", "lt": 3}}, facts)


def test_consents_are_read_by_channel_and_purpose_latest_first() -> None:
    view = fold(consent("k1", "granted", at(0), channel="sms"), consent("k2", "withdrawn", at(1), channel="sms"),
                consent("k3", "granted", at(0), channel="email"))
    facts = facts_at(view, 1)
    assert holds({"fact": "consent.sms.marketing", "eq": "withdrawn"}, facts)
    assert holds({"fact": "consent.email.marketing", "eq": "granted"}, facts)
    assert holds({"fact": "consent.mail.marketing", "exists": False}, facts)


def test_derived_facts_count_open_complaints_contacts_and_days_since_the_last_purchase() -> None:
    view = fold(purchase("p1", at(0)), case("s1", "case-1", "opened", at(1), category="complaint"),
                case("s2", "case-2", "opened", at(1), category="question"), call("c1", at(2)), call("c2", at(3)))
    derived = derived_facts(view, at(8.5))
    assert derived["open_complaints"] == 1
    assert derived["days_since_last_purchase"] == 8.5
    assert derived["contacts_7d"] == 2 and derived["contacts_30d"] == 5  # the 2 calls; all 5 touchpoints
    assert derived["preferred_channel"] == "call"  # phone: 4 touchpoints, web: 1


def test_the_stated_preferred_channel_wins_over_the_most_used_one() -> None:
    view = fold(call("c1", at(0)), call("c2", at(1)), purchase("p1", at(2), attributes=(("preferred_channel", "sms"),)))
    assert derived_facts(view, at(3))["preferred_channel"] == "sms"


def test_explain_lists_the_facts_read_in_order_and_stops_where_the_answer_is_known() -> None:
    facts = facts_at(fold(purchase("p1", at(0)), survey("v1", at(1), csat=2)), 1)
    predicate = compile_predicate({"any": [{"fact": "satisfaction.csat", "lte": 2},
                                           {"fact": "purchases.count", "gte": 5}]})
    verdict = predicate.explain(facts)
    assert verdict.holds
    assert verdict.read == (("satisfaction.csat", 2),)
    assert predicate.facts == {"satisfaction.csat", "purchases.count"}


def test_event_facts_read_the_touchpoint_fields_and_form_fields() -> None:
    where = compile_predicate({"all": [{"fact": "form_id", "eq": "contact"}, {"fact": "fields.topic", "eq": "loan"}]},
                              "when.touchpoint.where", EVENT_FACTS["web_form"])
    assert where.evaluate(event_facts(web_form("w1", fields={"topic": "loan"})))
    assert not where.evaluate(event_facts(web_form("w2", fields={"topic": "card"})))
    amount = compile_predicate({"fact": "amount", "gte": 500}, "where", EVENT_FACTS["purchase"])
    assert amount.evaluate(event_facts(purchase("p1", amount="500.00")))
    assert not amount.evaluate(event_facts(purchase("p2", amount="499.99")))


def test_every_document_fact_of_the_catalogue_is_a_path_of_the_real_document() -> None:
    view = fold(purchase("p1", at(0), margin="10.00"), purchase("p2", at(1)), purchase("p3", at(2)),
                call("c1", at(1)), survey("v1", at(2), csat=4, nps=9),
                consent("k1", "granted", at(2)), case("s1", "case-1", "resolved", at(3)),
                web_form("w1", at(3), fields={"city": "Lyon"}))
    facts = facts_at(view, 3)
    concrete = {"<channel>": "phone", "<currency>": "EUR", "<attribute>": "city", "<consent_channel>": "email",
                "<purpose>": "marketing"}
    for name, fact in FACTS.facts.items():
        if fact.source in ("document", "derived"):
            path = ".".join(concrete.get(part, part) for part in name.split("."))
            assert holds({"fact": path, "exists": True}, facts), name


@pytest.mark.parametrize(("data", "message"), [
    ({"all": [{"fact": "purchases.count", "gte": 1}, {"fact": "purchases.count", "gte": "two"}]},
     "who.all[1].gte: expected a number, got 'two'"),
    ({"fact": "lifecycle.stag", "eq": "new"},
     "who.fact: unknown fact 'lifecycle.stag' (did you mean 'lifecycle.stage'?)"),
    ({"fact": "channels.phon.count", "gt": 1}, "who.fact: unknown fact 'channels.phon.count': 'phon' is not a "
     "channel (one of atm, email, event, field, ivr, mail, mobile_app, online_banking, phone, sms, store, web)"),
    ({"fact": "lifecycle.stage", "eq": "lsot"},
     "who.eq: expected one of prospect, new, active, declining, lost, reactivated, got 'lsot' (did you mean 'lost'?)"),
    ({"fact": "lifecycle.stage", "gt": 2}, "who.gt: gt compares numbers; 'lifecycle.stage' is a string"),
    ({"fact": "purchases.count", "equals": 1}, "who.equals: unknown operator 'equals' (one of eq, ne, in, not_in, "
     "gt, gte, lt, lte, contains, exists)"),
    ({"fact": "purchases.count", "gte": 1, "lt": 3}, "who: one operator per comparison, found gte and lt: combine "
     "comparisons with all"),
    ({"fact": "purchases.count"}, "who: fact 'purchases.count' needs an operator: one of eq, ne, in, not_in, gt, "
     "gte, lt, lte, contains, exists"),
    ({"any": []}, "who.any: expected a non-empty list of predicates, got an empty list"),
    ({"not": {"fact": "purchases.count", "in": []}}, "who.not.in: expected a non-empty list of values, got an "
     "empty list"),
    ({"all": [{"fact": "purchases.count", "gt": 1}], "any": []}, "who: 'all' stands alone in its mapping, found "
     "'any' beside it"),
    ({"alll": []}, "who.alll: unknown key 'alll' (a predicate is all, any, not or fact) (did you mean 'all'?)"),
    ([{"fact": "purchases.count", "gt": 1}], "who: expected a predicate (a mapping with all, any, not or fact), "
     "got a list"),
    ({"fact": "identity.emails", "eq": "a@b.c"}, "who.eq: 'identity.emails' is a list: use contains or exists"),
    ({"fact": "purchases.count", "contains": "x"}, "who.contains: contains reads a list fact; 'purchases.count' is "
     "a number"),
    ({"fact": "purchases.count", "eq": True}, "who.eq: expected a number, got true"),
    ({"fact": "purchases.count", "exists": "yes"}, "who.exists: expected true or false, got 'yes'"),
    ({"fact": "lifecycle.stage", "in": ["new", 3]}, "who.in[1]: expected a string, got 3"),
])
def test_a_mistake_is_reported_at_its_exact_path(data: Any, message: str) -> None:
    with pytest.raises(RuleError) as raised:
        compile_predicate(data, "who")
    assert str(raised.value) == message


# Leaves valid for the catalogue, with values that match and miss real documents.
LEAVES = [
    {"fact": "lifecycle.stage", "in": ["new", "active"]}, {"fact": "lifecycle.stage", "eq": "declining"},
    {"fact": "lifecycle.stage", "not_in": ["prospect"]}, {"fact": "purchases.count", "gte": 2},
    {"fact": "purchases.count", "lt": 1}, {"fact": "satisfaction.csat", "lte": 2},
    {"fact": "satisfaction.nps", "ne": 10}, {"fact": "service_cases.open", "gt": 0},
    {"fact": "channels.phone.count", "gte": 1}, {"fact": "consent.email.marketing", "eq": "granted"},
    {"fact": "open_complaints", "gt": 0}, {"fact": "days_since_last_purchase", "gt": 30.5},
    {"fact": "preferred_channel", "eq": "call"}, {"fact": "identity.emails", "contains": "ana@example.com"},
    {"fact": "profile.city", "eq": "Lyon"}, {"fact": "value.rfm.segment", "exists": True},
    {"fact": "purchases.by_currency.EUR.revenue", "gte": 1000}, {"fact": "contacts_7d", "exists": False},
]
predicates = st.recursive(
    st.sampled_from(LEAVES),
    lambda inner: st.one_of(st.lists(inner, min_size=1, max_size=3).map(lambda items: {"all": items}),
                            st.lists(inner, min_size=1, max_size=3).map(lambda items: {"any": items}),
                            inner.map(lambda item: {"not": item})),
    max_leaves=8,
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    view = fold(*draw(customer_histories()))
    return facts_of(to_document(view), derived_facts(view, at(days=draw(st.integers(0, 200)))))


@settings(max_examples=60, deadline=None)
@given(predicates, documents())
def test_not_is_the_exact_negation_on_real_documents(data: dict[str, Any], facts: dict[str, Any]) -> None:
    assert holds({"not": data}, facts) is (not holds(data, facts))
    assert compile_predicate(data).explain(facts).holds is holds(data, facts)


anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.decimals(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(predicates, st.dictionaries(st.sampled_from([leaf["fact"] for leaf in LEAVES]), anything))
def test_evaluation_never_raises_whatever_the_facts_hold(data: dict[str, Any], values: dict[str, Any]) -> None:
    facts: dict[str, Any] = {}
    for name, value in values.items():  # put each value at its dotted path, clobbering as it goes
        *parents, last = name.split(".")
        node = facts
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    verdict = compile_predicate(data).explain(facts)
    assert isinstance(verdict.holds, bool)
    assert {name for name, _ in verdict.read} <= compile_predicate(data).facts


def test_the_catalogue_states_a_type_and_a_description_for_every_fact() -> None:
    for name, fact in FACTS.facts.items():
        assert fact.type in ("string", "number", "boolean", "list"), name
        assert fact.source in ("document", "derived", "caller") and fact.description, name
    assert Decimal("1") == compile_predicate({"fact": "purchases.count", "eq": 1}).value  # type: ignore[attr-defined]


def test_value_card_facts_read_the_card_the_shell_computes_when_a_view_is_read() -> None:
    from services.settings import Settings
    from services.value.card import value_card
    from services.value.service import TimeBase

    view = fold(purchase("p1", at(0), "300.00", margin="90.00"), purchase("p2", at(30), "200.00", margin="60.00"))
    card = value_card(view, None, None, TimeBase(micros(at(40)), "request"), Settings(value_currency="EUR"))
    facts = facts_of(to_document(view), {"value": card})
    assert holds({"fact": "value.historical.revenue", "eq": 500}, facts)
    assert holds({"fact": "value.rfm.recency_days", "eq": 10}, facts)
    assert holds({"fact": "value.lifetime_value.value", "gt": 0}, facts)
    assert holds({"fact": "value.rfm.segment", "exists": False}, facts)  # no portfolio quintiles given
