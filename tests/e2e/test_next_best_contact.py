"""Next best contact over HTTP, on every runtime, with the default rules (rules/default.yaml).

Time is what the test says: events are dated in January 2023 and the clock only moves
when the test posts a tick. BASE is Monday 2023-01-02 09:00 UTC, 10:00 in Paris (the
rule file's zone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api import (
    Api,
    bearer,
    call,
    consent,
    iso,
    purchase,
    service_case,
    survey,
    touchpoint,
    unique,
)

pytestmark = pytest.mark.e2e

BASE = datetime(2023, 1, 2, 9, 0, tzinfo=UTC)


def hours(n: float) -> datetime:
    return BASE + timedelta(hours=n)


def post_tick(api: Api, at: datetime) -> int:
    response = api.client.post("/v1/clock/ticks", json={"at": iso(at)}, headers=bearer(api.runtime.keys.admin))
    assert response.status_code == 202, response.text
    return int(response.json()["position"])


def triggers(api: Api, uid: str, channel: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"customer_id": uid, "limit": 100}
    if channel is not None:
        params["channel"] = channel
    response = api.get("/v1/triggers", **params)
    assert response.status_code == 200, response.text
    return list(response.json()["triggers"])


def contact_form(event_id: str, when: datetime, uid: str) -> dict[str, Any]:
    return touchpoint("web_form", event_id, when, customer={"customer_id": uid}, channel="web", form_id="contact")


def test_a_contact_form_gets_a_call_back_whose_outcome_and_conversion_are_measured(api: Api) -> None:
    uid = f"nbc-{unique()}"
    me = {"customer_id": uid}
    api.ingest(consent(f"{uid}-k", hours(0), me, consent_channel="email", purpose="marketing", status="granted"))
    position = api.ingest(contact_form(f"{uid}-f", hours(4), uid))["position"]  # 14:00 Paris
    view = api.customer(uid, min_position=position)
    [card] = view["next_best_contact"]["triggers"]
    assert (card["rule"], card["channel"], card["outcome"]) == ("callback_after_contact_form", "call", None)

    [trigger] = triggers(api, uid, "call")
    assert trigger["trigger_id"] == card["trigger_id"]
    assert (trigger["action"], trigger["script"], trigger["priority"]) == ("call_back", "contact-request-v1", 90)
    assert trigger["rule"] == {"id": "callback_after_contact_form", "version": 1, "purpose": "service"}
    assert trigger["at"] == iso(hours(4)) and trigger["valid_until"] == iso(hours(5))  # one business hour
    assert trigger["cause"] == {"kind": "touchpoint", "id": f"{uid}-f", "type": "web_form"}
    assert {"fact": "form_id", "value": "contact"} in trigger["explanation"]["facts"]
    assert trigger["explanation"]["consent"] is None  # a call the customer asked for needs none

    # the adviser calls back, reaching the customer; two days later they buy: converted
    api.ingest(call(f"{uid}-c", hours(4.5), me, trigger_id=trigger["trigger_id"]))
    position = api.ingest(purchase(f"{uid}-p", hours(48), me, order_id=f"{uid}-o", amount="120.00"))["position"]
    view = api.customer(uid, min_position=position)
    card = next(t for t in view["next_best_contact"]["triggers"] if t["trigger_id"] == trigger["trigger_id"])
    assert (card["outcome"], card["converted"]) == ("reached", True)

    # the first purchase made a new customer, but the welcome pack is capped at 3 contacts in
    # 7 days and this customer already had 4 (consent, form, the adviser's call, the purchase)
    assert triggers(api, uid, "email") == []
    assert ("welcome", "cap_overall") in [(s["rule"], s["reason"]) for s in view["next_best_contact"]["recent_suppressions"]]

    # a quieter new customer gets it, with the consent record in force in its explanation
    other = f"{uid}-b"
    api.ingest(consent(f"{other}-k", hours(0), {"customer_id": other}, consent_channel="email", purpose="marketing",
                       status="granted"))
    position = api.ingest(purchase(f"{other}-p", hours(1), {"customer_id": other}, order_id=f"{other}-o",
                                   amount="40.00"))["position"]
    api.customer(other, min_position=position)
    [welcome] = triggers(api, other, "email")
    assert (welcome["rule"]["id"], welcome["cause"]["kind"], welcome["cause"]["to"]) == ("welcome", "lifecycle", "new")
    assert welcome["explanation"]["consent"]["event_id"] == f"{other}-k"
    assert [t["trigger_id"] for t in triggers(api, other)] == [welcome["trigger_id"]]

    figures = {r["rule"]: r for r in api.get("/v1/analytics/triggers").json()["rules"]}
    callback = figures["callback_after_contact_form"]
    assert callback["fired"] >= 1 and callback["reached"] >= 1 and callback["converted"] >= 1
    assert callback["channels"]["call"]["fired"] == callback["fired"]


def test_quiet_hours_defer_a_manager_call_to_the_morning(api: Api) -> None:
    uid = f"nbc-{unique()}"
    position = api.ingest(survey(f"{uid}-s", hours(10), {"customer_id": uid}, csat=1))["position"]  # 20:00 Paris
    view = api.customer(uid, min_position=position)
    assert triggers(api, uid) == []
    [pending] = view["next_best_contact"]["pending"]
    assert (pending["rule"], pending["kind"], pending["due_at"]) == ("manager_call_after_low_csat", "deferred",
                                                                     iso(hours(23)))  # 09:00 Paris
    api.customer(uid, min_position=post_tick(api, hours(22)))
    assert triggers(api, uid) == []
    api.customer(uid, min_position=post_tick(api, hours(23.5)))
    [trigger] = triggers(api, uid, "call")
    assert (trigger["rule"]["id"], trigger["at"]) == ("manager_call_after_low_csat", iso(hours(23)))


def test_an_open_complaint_holds_promotions_back_but_not_the_escalation(api: Api) -> None:
    uid = f"nbc-{unique()}"
    me = {"customer_id": uid}
    api.ingest(consent(f"{uid}-k", hours(0), me, consent_channel="email", purpose="marketing", status="granted"))
    api.ingest(service_case(f"{uid}-case", hours(1), me, case_id=f"{uid}-1", status="opened", severity="high",
                            category="complaint"))  # Monday 11:00 Paris
    position = api.ingest(purchase(f"{uid}-p", hours(2), me, order_id=f"{uid}-o", amount="60.00"))["position"]
    view = api.customer(uid, min_position=position)
    assert triggers(api, uid) == []  # no welcome pack while the complaint is open
    [why] = view["next_best_contact"]["recent_suppressions"]
    assert (why["rule"], why["reason"]) == ("welcome", "suppression")
    # 8 business hours after Monday 11:00 Paris is Tuesday 10:00 Paris (09:00 UTC)
    api.customer(uid, min_position=post_tick(api, hours(23)))
    assert triggers(api, uid) == []
    api.customer(uid, min_position=post_tick(api, hours(24)))
    [escalation] = triggers(api, uid, "call")
    assert escalation["rule"]["id"] == "escalation_call_case_past_sla"
    assert (escalation["cause"]["kind"], escalation["cause"]["severity"]) == ("case_past_sla", "high")
    assert escalation["at"] == iso(hours(24))
    figures = {r["rule"]: r for r in api.get("/v1/analytics/triggers").json()["rules"]}
    assert figures["welcome"]["suppressed"]["suppression"] >= 1


def test_the_trigger_feed_pages_by_cursor_and_rejects_a_bad_one(api: Api) -> None:
    uid = f"nbc-{unique()}"
    for n in range(3):  # three forms a day apart: the one-day cooldown lets each through
        position = api.ingest(contact_form(f"{uid}-f{n}", hours(4 + 24 * n), uid))["position"]
    api.customer(uid, min_position=position)
    first = api.get("/v1/triggers", customer_id=uid, limit=2).json()
    assert len(first["triggers"]) == 2
    rest = api.get("/v1/triggers", customer_id=uid, limit=2, since=first["next_cursor"]).json()
    assert len(rest["triggers"]) == 1
    assert len({t["trigger_id"] for t in first["triggers"] + rest["triggers"]}) == 3
    assert api.get("/v1/triggers", since="nonsense").status_code == 422
    assert api.get("/v1/triggers", channel="pigeon").status_code == 422
