"""The 360° view fold, one business rule per test."""

from __future__ import annotations

from decimal import Decimal
from functools import reduce

from projections.touchpoints import CustomerRef, ExternalId
from projections.view.document import from_state, to_document, to_state
from projections.view.fold import RECENT_LIMIT, CustomerView, evolve, initial_view
from tests.support.touchpoints import at, call, case, consent, email, purchase, refund, survey, visit, web_form


def fold(*events) -> CustomerView:  # type: ignore[no-untyped-def]
    return reduce(evolve, events, initial_view("c-1"))


def test_purchases_add_up_revenue_margin_and_average_basket_per_currency() -> None:
    view = fold(purchase("p1", at(0), "100.00", margin="30.00"), purchase("p2", at(1), "50.50"),
                purchase("p3", at(2), "20.00", currency="GBP"))
    doc = to_document(view)["purchases"]
    assert doc["count"] == 3
    assert doc["by_currency"]["EUR"] == {"count": 2, "revenue": "150.50", "margin": "30.00", "average_basket": "75.25",
                                         "refunds": 0, "refunded": "0.0000"}
    assert doc["by_currency"]["GBP"]["margin"] is None
    assert doc["first_at"].startswith("2026-03-02") and doc["last_at"].startswith("2026-03-04")


def test_a_refund_nets_revenue_and_margin_and_is_no_purchase() -> None:
    """+100 then 30 given back: one purchase, net revenue 70, net basket 70 (the case a
    negative purchase used to count twice)."""
    view = fold(purchase("p1", at(0), "100.00", margin="40.00"), refund("r1", at(1), "o-p1", "30.00", margin="12.00"))
    eur = to_document(view)["purchases"]["by_currency"]["EUR"]
    assert (view.purchases, eur["count"], eur["refunds"]) == (1, 1, 1)
    assert (eur["revenue"], eur["refunded"], eur["margin"], eur["average_basket"]) == ("70.00", "30.0000", "28.00", "70.00")
    assert view.purchase_days.count == 1 and view.last_purchase_at == view.first_purchase_at


def test_a_refund_before_its_order_gives_the_same_view_and_alone_has_no_basket() -> None:
    order, back = purchase("p1", at(0), "100.00"), refund("r1", at(3), "o-p1", "100.00")
    assert to_document(fold(back, order)) == to_document(fold(order, back))
    alone = to_document(fold(refund("r2", at(1), "o-unknown", "25.00")))
    assert alone["purchases"]["count"] == 0
    assert alone["purchases"]["by_currency"]["EUR"] == {"count": 0, "revenue": "-25.00", "margin": None,
                                                         "average_basket": None, "refunds": 1, "refunded": "25.0000"}


def test_an_event_applied_twice_counts_once() -> None:
    p = purchase("p1", at(0), "100.00")
    assert fold(p, p) == fold(p)


def test_channel_stats_keep_count_first_and_last_contact_and_the_latest_outcome() -> None:
    view = fold(call("c2", at(2), outcome="no_answer"), call("c1", at(1), outcome="reached"))
    stats = to_document(view)["channels"]["phone"]
    assert stats["count"] == 2
    assert stats["last_outcome"] == "no_answer"  # the later call by event time, though it arrived first
    assert stats["first_at"] < stats["last_at"]


def test_a_case_resolved_is_no_longer_open_and_its_resolution_time_is_measured() -> None:
    view = fold(case("k1", "A", "opened", at(0)), case("k2", "A", "resolved", at(0, hours=6)),
                case("k3", "B", "opened", at(1), severity="high"))
    cases = to_document(view)["service_cases"]
    assert cases == {"open": 1, "oldest_open_at": "2026-03-03T09:00:00.000000+00:00", "resolved": 1,
                     "mean_resolution_seconds": 21600.0}


def test_a_late_update_does_not_reopen_a_case_resolved_after_it() -> None:
    view = fold(case("k1", "A", "opened", at(0)), case("k3", "A", "resolved", at(2)), case("k2", "A", "updated", at(1)))
    assert to_document(view)["service_cases"]["open"] == 0


def test_the_latest_satisfaction_by_event_time_wins() -> None:
    view = fold(survey("s2", at(5), csat=2), survey("s1", at(1), csat=5, nps=9))
    assert to_document(view)["satisfaction"]["csat"] == 2
    assert to_document(view)["satisfaction"]["nps"] == 9


def test_consent_is_tracked_per_channel_and_purpose_by_event_time() -> None:
    view = fold(consent("g", "granted", at(0)), consent("w", "withdrawn", at(3)), consent("s", "granted", at(1), "sms"),
                consent("old", "granted", at(2)))
    by_key = {(c["channel"], c["purpose"]): c for c in to_document(view)["consents"]}
    assert by_key[("email", "marketing")]["status"] == "withdrawn"
    assert by_key[("email", "marketing")]["event_id"] == "w"
    assert by_key[("sms", "marketing")]["status"] == "granted"


def test_only_the_latest_fifty_touchpoints_are_kept_newest_first() -> None:
    view = fold(*[email(f"e{i:03}", at(i)) for i in range(RECENT_LIMIT + 10)])
    recent = to_document(view)["recent"]
    assert len(recent) == RECENT_LIMIT
    assert recent[0]["event_id"] == "e059" and recent[-1]["event_id"] == "e010"
    assert view.touchpoints == RECENT_LIMIT + 10


def test_identifiers_and_profile_attributes_carried_by_events_are_collected() -> None:
    ref = CustomerRef(customer_id="c-1", emails=("ana@example.com",), phones=("+33612345678",),
                      external_ids=(ExternalId("crm", "42"),))
    view = fold(web_form("f1", at(0), {"first_name": "Ana", "message": "call me"}, ref=ref),
                call("c1", at(1), attributes=(("first_name", "Anna"), ("city", "Lyon"))))
    doc = to_document(view)
    assert doc["identity"] == {"emails": ["ana@example.com"], "phones": ["+33612345678"],
                               "external_ids": [{"system": "crm", "id": "42"}]}
    assert doc["profile"] == {"city": "Lyon", "first_name": "Anna"}  # "message" is the request, not the person


def test_contacts_older_than_the_pressure_window_are_forgotten() -> None:
    view = fold(call("old", at(0)), call("new", at(40)))
    assert [m.event_id for m in view.contacts] == ["new"]


def test_the_stored_state_reads_back_to_the_same_view() -> None:
    view = fold(purchase("p1", at(0), "10.00", margin="1.5"), case("k1", "A", "opened", at(1), category="complaint"),
                survey("s1", at(2), csat=4), consent("g", "granted", at(3)), visit("v", at(4)))
    assert from_state(to_state(view)) == view
    assert Decimal(to_document(view)["purchases"]["by_currency"]["EUR"]["revenue"]) == Decimal("10.00")
