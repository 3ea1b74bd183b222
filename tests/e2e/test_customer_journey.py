"""A customer's journey through every channel, told to the platform over HTTP, with
re-sent events and late arrivals, then read back figure by figure; and what happens when
one touchpoint names two different customers."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from projections.lifecycle.stages import Transition, transition_id
from tests.support.api import (
    Api,
    call,
    consent,
    iso,
    purchase,
    service_case,
    survey,
    unique,
)

pytestmark = pytest.mark.e2e


@dataclass
class Journey:
    """Ana fills the contact form, is called back, buys, has a delivery problem that is
    solved, rates the service and withdraws her e-mail marketing consent."""

    uid: str = field(default_factory=unique)
    base: datetime = field(
        default_factory=lambda: (datetime.now(UTC) + timedelta(minutes=2)).replace(second=0, microsecond=0)
    )
    digits: str = field(default_factory=lambda: "".join(random.choice("0123456789") for _ in range(8)))

    def __post_init__(self) -> None:
        self.email = f"ana.lopez.{self.uid}@example.com"  # as stored: normalised
        self.email_as_typed = f"Ana.Lopez.{self.uid}@Example.COM"
        self.phone = "+336" + self.digits  # E.164, as stored
        d = self.digits
        self.phone_as_typed = f"06 {d[0:2]} {d[2:4]} {d[4:6]} {d[6:8]}"  # French national format
        self.phone_international = f"+33 6 {d[0:2]} {d[2:4]} {d[4:6]} {d[6:8]}"
        self.form_submission_id = f"form-{self.uid}"  # what the browser sends as _event_id
        self.form_event_id = f"form:contact:{self.form_submission_id}"  # namespaced by the platform
        self.case_id = f"case-{self.uid}"
        self.order_id = f"order-{self.uid}"
        b = self.base
        self.t_call = b + timedelta(minutes=10)
        self.t_purchase = b + timedelta(hours=1)
        self.t_opened = b + timedelta(hours=2)
        self.t_resolved = b + timedelta(hours=2, minutes=45)  # 2,700 s to resolve
        self.t_survey = b + timedelta(hours=3)
        self.t_consent = b + timedelta(hours=4)
        self.at = b + timedelta(days=1)  # contact pressure is counted as of this instant
        by_email = {"emails": [self.email_as_typed]}
        by_phone = {"phones": [self.phone_international]}
        self.call = call(f"call-{self.uid}", self.t_call, {"emails": [self.email_as_typed.upper()],
                                                            "phones": [self.phone_as_typed]},
                         direction="outbound", outcome="reached", duration_seconds=420,
                         reason="callback", agent_id="agent-7", source="call-centre")
        self.purchase = purchase(f"purchase-{self.uid}", self.t_purchase, by_phone, order_id=self.order_id,
                                 amount="149.90", currency="EUR", margin="41.20", channel="store",
                                 source="pos", lines=[{"sku": "KETTLE-2", "quantity": 2, "unit_price": "74.95",
                                                       "category": "kitchen"}])
        self.opened = service_case(f"case-opened-{self.uid}", self.t_opened, by_email, case_id=self.case_id,
                                   status="opened", severity="high", category="delivery", source="helpdesk")
        self.resolved = service_case(f"case-resolved-{self.uid}", self.t_resolved, by_phone,
                                     case_id=self.case_id, status="resolved", severity="high",
                                     source="helpdesk")
        self.survey = survey(f"survey-{self.uid}", self.t_survey, by_email, survey_id="csat-after-case",
                             csat=4, source="survey-tool")
        self.consent = consent(f"consent-{self.uid}", self.t_consent, by_email, consent_channel="email",
                               purpose="marketing", status="withdrawn", source="preference-centre")

    @property
    def form_fields(self) -> dict[str, str]:
        return {"email": self.email_as_typed, "first_name": "Ana", "last_name": "Lopez", "city": "Lyon",
                "message": "Please call me back about a kettle.", "_event_id": self.form_submission_id, "_hp": ""}

    def expected_timeline(self, form_at: str) -> list[dict[str, Any]]:
        """The canonical documents, newest event time first (without positions and
        received_at, which the platform stamps)."""
        envelope = {"trigger_id": None, "attributes": {}}

        def ref(emails: list[str] = (), phones: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
            return {"customer_id": None, "emails": list(emails), "phones": list(phones), "external_ids": []}

        return [
            {"event_id": self.consent["event_id"], "type": "consent", "occurred_at": iso(self.t_consent),
             "source": "preference-centre", "customer": ref([self.email]), "channel": "web", **envelope,
             "consent_channel": "email", "purpose": "marketing", "status": "withdrawn"},
            {"event_id": self.survey["event_id"], "type": "survey", "occurred_at": iso(self.t_survey),
             "source": "survey-tool", "customer": ref([self.email]), "channel": "email", **envelope,
             "survey_id": "csat-after-case", "csat": 4, "nps": None},
            {"event_id": self.resolved["event_id"], "type": "service_case", "occurred_at": iso(self.t_resolved),
             "source": "helpdesk", "customer": ref(phones=[self.phone]), "channel": "phone", **envelope,
             "case_id": self.case_id, "status": "resolved", "severity": "high", "category": None},
            {"event_id": self.opened["event_id"], "type": "service_case", "occurred_at": iso(self.t_opened),
             "source": "helpdesk", "customer": ref([self.email]), "channel": "phone", **envelope,
             "case_id": self.case_id, "status": "opened", "severity": "high", "category": "delivery"},
            {"event_id": self.purchase["event_id"], "type": "purchase", "occurred_at": iso(self.t_purchase),
             "source": "pos", "customer": ref(phones=[self.phone]), "channel": "store", **envelope,
             # money is stored with four decimal places, whatever the sender wrote
             "order_id": self.order_id, "amount": "149.9000", "currency": "EUR", "margin": "41.2000",
             "lines": [{"sku": "KETTLE-2", "quantity": 2, "unit_price": "74.9500", "category": "kitchen"}]},
            {"event_id": self.call["event_id"], "type": "call", "occurred_at": iso(self.t_call),
             "source": "call-centre", "customer": ref([self.email], [self.phone]), "channel": "phone", **envelope,
             "direction": "outbound", "duration_seconds": 420, "outcome": "reached", "reason": "callback",
             "agent_id": "agent-7"},
            {"event_id": self.form_event_id, "type": "web_form", "occurred_at": form_at, "source": "web-form",
             "customer": ref([self.email]), "channel": "web", **envelope, "form_id": "contact",
             "fields": {"first_name": "Ana", "last_name": "Lopez", "city": "Lyon",
                        "message": "Please call me back about a kettle."}},
        ]

    def expected_view(self, customer_id: str, form_at: str) -> dict[str, Any]:
        c, p, o, r, s, w = (iso(t) for t in (self.t_call, self.t_purchase, self.t_opened, self.t_resolved,
                                             self.t_survey, self.t_consent))
        return {
            "customer_id": customer_id,
            "identity": {"emails": [self.email], "phones": [self.phone], "external_ids": []},
            "profile": {"city": "Lyon", "first_name": "Ana", "last_name": "Lopez"},
            "first_seen": form_at,
            "last_seen": w,
            "touchpoints": 7,
            "channels": {
                "email": {"count": 1, "first_at": s, "last_at": s, "last_outcome": None},
                "phone": {"count": 3, "first_at": c, "last_at": r, "last_outcome": "resolved"},
                "store": {"count": 1, "first_at": p, "last_at": p, "last_outcome": None},
                "web": {"count": 2, "first_at": form_at, "last_at": w, "last_outcome": "withdrawn"},
            },
            "recent": [
                {"occurred_at": w, "event_id": self.consent["event_id"], "type": "consent", "channel": "web",
                 "summary": "email/marketing consent withdrawn"},
                {"occurred_at": s, "event_id": self.survey["event_id"], "type": "survey", "channel": "email",
                 "summary": "survey"},
                {"occurred_at": r, "event_id": self.resolved["event_id"], "type": "service_case",
                 "channel": "phone", "summary": f"case {self.case_id} resolved (high)"},
                {"occurred_at": o, "event_id": self.opened["event_id"], "type": "service_case",
                 "channel": "phone", "summary": f"case {self.case_id} opened (high)"},
                {"occurred_at": p, "event_id": self.purchase["event_id"], "type": "purchase", "channel": "store",
                 "summary": f"order {self.order_id}: 149.90 EUR"},
                {"occurred_at": c, "event_id": self.call["event_id"], "type": "call", "channel": "phone",
                 "summary": "outbound call, reached"},
                {"occurred_at": form_at, "event_id": self.form_event_id, "type": "web_form", "channel": "web",
                 "summary": "form contact"},
            ],
            "purchases": {
                "count": 1,
                "first_at": p,
                "last_at": p,
                "by_currency": {"EUR": {"count": 1, "revenue": "149.9000", "margin": "41.2000",
                                        "average_basket": "149.90", "refunds": 0, "refunded": "0.0000"}},
            },
            "service_cases": {"open": 0, "oldest_open_at": None, "resolved": 1, "mean_resolution_seconds": 2700.0},
            "satisfaction": {"csat": 4, "csat_at": s, "nps": None, "nps_at": None},
            "consents": [
                {"channel": "email", "purpose": "marketing", "status": "withdrawn", "at": w,
                 "event_id": self.consent["event_id"], "source": "preference-centre"},
            ],
            "lifecycle": {
                "stage": "new", "since": p, "rule": "first_purchase",
                "next_review_at": iso(self.t_purchase + timedelta(days=90)), "typical_interval_days": None,
                "transitions": 1,
                "history": [{
                    "transition_id": transition_id(customer_id, Transition(1, 0, "prospect", "new", "first_purchase",
                                                                           self.purchase["event_id"], 0)),
                    "customer_id": customer_id, "sequence": 1, "at": p, "from_stage": "prospect",
                    "to_stage": "new", "reason": "first_purchase", "cause_event_ids": [self.purchase["event_id"]],
                    "dwell_seconds": round((self.t_purchase - datetime.fromisoformat(form_at)).total_seconds(), 3),
                }],
            },
            "value": {
                "time_base": {"at": iso(self.at), "source": "request"},
                "currency": "EUR", "historical": {"revenue": "149.9000", "margin": "41.2000"},
                "monetary": {"total_spend": "149.9000", "orders": 1, "average_order_value": "149.9000",
                             "mean_repeat_purchase_value": None, "refunds": 0, "refunded": "0.0000",
                             "other_currencies": {}},
                # one buyer in the portfolio: every quintile cut is hers, a value at a cut scores low
                "rfm": {"recency_days": round((self.at - self.t_purchase).total_seconds() / 86_400, 3),
                        "frequency": 1, "monetary": "149.9000", "scores": {"r": 1, "f": 1, "m": 1},
                        "segment": "lost"},
                # 41.20 a year (less than a year of relationship counts as one), r 0.8, d 0.1, 5 years
                "lifetime_value": {"method": "seed_formula",
                                   "value": f"{41.2 * sum((0.8 / 1.1) ** t for t in range(1, 6)):.2f}",
                                   "margin_per_year": "41.20", "retention_rate": 0.8, "discount_rate": 0.1,
                                   "horizon_years": 5},
                # one purchase, no model yet: her BG/NBD summary, whole days in weeks
                "summary": {"frequency": 0.0, "recency": 0.0, "unit": "week",
                            "T": (self.at.date() - self.t_purchase.date()).days / 7},
                "p_alive": None, "expected_purchases_90d": None, "model_lifetime_value": None,
                "model_observation_end": None,
            },
            "contact_pressure": {
                window: {
                    "by_company": {"all": 1, "phone": 1},
                    "by_customer": {"all": 6, "email": 1, "phone": 2, "store": 1, "web": 2},
                }
                for window in ("7d", "30d")
            },
        }


def _accepted(answer: dict[str, Any], event: dict[str, Any]) -> int:
    assert answer["accepted"] == 1 and answer["duplicate"] == 0 and answer["rejected"] == 0, answer
    [result] = answer["results"]
    assert result["event_id"] == event["event_id"] and result["result"] == "accepted", result
    assert isinstance(result["position"], int) and result["position"] > 0, result
    assert answer["position"] == result["position"], answer
    return int(result["position"])


def _tell_the_journey(api: Api, j: Journey) -> tuple[dict[str, int], int]:
    """Post the journey with re-sent events and late arrivals; the log position of each
    event (by event id) and the highest position acknowledged."""
    positions: dict[str, int] = {}

    # The web form, posted by the browser (fetch, so a JSON answer), then re-submitted.
    first = api.post_form(j.form_fields)
    assert first.status_code == 202, first.text
    assert first.headers.get("access-control-allow-origin") == "https://shop.example"
    verdict = first.json()
    assert verdict["event_id"] == j.form_event_id and verdict["result"] == "accepted", verdict
    positions[j.form_event_id] = verdict["position"]
    again = api.post_form(j.form_fields)
    assert again.status_code in (200, 202), again.text
    assert again.json()["result"] == "duplicate", again.json()
    assert again.json()["position"] == positions[j.form_event_id], again.json()

    # The call-back (links the phone), sent twice.
    response = api.post_events(j.call)
    assert response.status_code == 202, response.text
    positions[j.call["event_id"]] = _accepted(response.json(), j.call)
    response = api.post_events(j.call)
    assert response.status_code == 200, response.text
    assert response.json()["duplicate"] == 1 and response.json()["accepted"] == 0, response.json()
    [dup] = response.json()["results"]
    assert dup["result"] == "duplicate" and dup["position"] == positions[j.call["event_id"]], dup

    # The case is opened; the survey arrives before the case resolution it follows.
    for event in (j.opened, j.survey):
        response = api.post_events(event)
        assert response.status_code == 202, response.text
        positions[event["event_id"]] = _accepted(response.json(), event)

    # A batch: the resolution, the consent withdrawal, and the survey once more.
    response = api.post_events({"events": [j.resolved, j.consent, j.survey]})
    assert response.status_code == 200, response.text
    batch = response.json()
    assert (batch["accepted"], batch["duplicate"], batch["rejected"]) == (2, 1, 0), batch
    resolved, withdrawn, resurvey = batch["results"]
    assert resolved["result"] == "accepted" and withdrawn["result"] == "accepted", batch
    assert resurvey == {"event_id": j.survey["event_id"], "type": "survey", "result": "duplicate",
                        "position": positions[j.survey["event_id"]]}, resurvey
    positions[j.resolved["event_id"]] = resolved["position"]
    positions[j.consent["event_id"]] = withdrawn["position"]
    assert batch["position"] == max(resolved["position"], withdrawn["position"]), batch

    # The purchase (phone only), recorded offline at the till and sent last.
    response = api.post_events(j.purchase)
    assert response.status_code == 202, response.text
    positions[j.purchase["event_id"]] = _accepted(response.json(), j.purchase)

    assert len(set(positions.values())) == 7, f"seven events, seven distinct positions: {positions}"
    return positions, max(positions.values())


def _read_journey(api: Api, j: Journey, position: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    view = api.find(email=j.email_as_typed, min_position=position, at=iso(j.at))
    timeline = api.timeline(view["customer_id"], min_position=position)
    return view, timeline


def test_a_customers_journey_across_channels_reads_back_as_one_complete_360_view(api: Api) -> None:
    j = Journey()
    before_form = datetime.now(UTC)
    positions, last = _tell_the_journey(api, j)
    after_form = datetime.now(UTC)

    view = api.find(email=j.email_as_typed, min_position=last, at=iso(j.at))
    customer_id = view["customer_id"]
    assert isinstance(customer_id, str) and customer_id, view

    # The timeline: every event once, newest event time first, as the platform stored it.
    timeline = api.timeline(customer_id, min_position=last)
    assert [e["event_id"] for e in timeline] == [
        j.consent["event_id"], j.survey["event_id"], j.resolved["event_id"], j.opened["event_id"],
        j.purchase["event_id"], j.call["event_id"], j.form_event_id,
    ], timeline
    form_at = timeline[-1]["occurred_at"]
    assert before_form - timedelta(seconds=1) <= datetime.fromisoformat(form_at) <= after_form, form_at
    for event in timeline:
        assert event["position"] == positions[event["event_id"]], event
        received = datetime.fromisoformat(event["received_at"])
        assert received.tzinfo is not None and before_form - timedelta(seconds=1) <= received, event
    stored = [{k: v for k, v in e.items() if k not in ("position", "received_at")} for e in timeline]
    assert stored == j.expected_timeline(form_at)

    # The 360° view, every figure; next-best-contact decisions depend on the rules in force
    # (tests/e2e/test_next_best_contact.py): here, the contact form asked for a call back.
    contact = view.pop("next_best_contact")
    assert view == j.expected_view(customer_id, form_at)
    assert "callback_after_contact_form" in [t["rule"] for t in contact["triggers"]], contact
    view["next_best_contact"] = contact

    # The same customer by id, by phone (any format) and by e-mail (any case).
    assert api.customer(customer_id, at=iso(j.at)) == view
    assert api.find(phone=j.phone_as_typed, at=iso(j.at)) == view
    assert api.find(phone=j.phone, at=iso(j.at)) == view
    assert api.find(email=j.email, at=iso(j.at)) == view

    # Nothing went to the dead letters, and nothing was an identity conflict.
    dead = api.get("/v1/dead-letters")
    assert dead.status_code == 200 and dead.json() == {"dead_letters": []}, dead.text
    conflicts = api.get("/v1/identity/conflicts")
    assert conflicts.status_code == 200 and conflicts.json() == {"conflicts": []}, conflicts.text


def test_the_timeline_pages_through_every_event_exactly_once_in_event_time_order(api: Api) -> None:
    j = Journey()
    positions, last = _tell_the_journey(api, j)
    view = api.find(email=j.email, min_position=last)
    whole = api.timeline(view["customer_id"], limit=500)
    assert len(whole) == 7

    pages, cursor = [], None
    for _ in range(10):
        page = api.timeline_page(view["customer_id"], limit=2, cursor=cursor)
        pages.append(page["events"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 2, 1], pages
    paged = [e for p in pages for e in p]
    assert paged == whole
    assert sorted(e["event_id"] for e in paged) == sorted(positions)
    moments = [datetime.fromisoformat(e["occurred_at"]) for e in paged]
    assert moments == sorted(moments, reverse=True)


def test_the_timeline_of_an_unknown_customer_is_not_found(api: Api) -> None:
    response = api.get(f"/v1/customers/cus_unknown_{unique()}/timeline")
    assert response.status_code == 404, response.text
    response = api.get(f"/v1/customers/cus_unknown_{unique()}")
    assert response.status_code == 404, response.text
    response = api.get("/v1/customers", email=f"nobody-{unique()}@example.com")
    assert response.status_code == 404, response.text


def _replay(api: Api, events: list[dict[str, Any]]) -> int:
    """Post each event on its own, in the given order; the last position."""
    last = 0
    for event in events:
        response = api.post_events(event)
        assert response.status_code == 202, response.text
        last = max(last, _accepted(response.json(), event))
    return last


def _as_sent(timeline: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The stored events as a sender would post them again (the platform stamps the rest)."""
    return {e["event_id"]: {k: v for k, v in e.items() if k not in ("position", "received_at")} for e in timeline}


def test_identifiers_first_seen_apart_are_reported_as_a_conflict_when_an_event_links_them(
    start_runtime: Any,
) -> None:
    """Identity is resolved in log order and never merged silently (merging comes later):
    when phone-only events arrive before the call that names the email and the phone
    together, the phone already belongs to another customer, and the call is reported."""
    first = Api(start_runtime())
    j = Journey()
    _, last = _tell_the_journey(first, j)
    original = first.get("/v1/customers", email=j.email, min_position=last, at=iso(j.at))
    assert original.status_code == 200, original.text
    events = _as_sent(first.timeline(original.json()["customer_id"]))

    fresh = Api(start_runtime())
    order = [j.consent, j.survey, j.resolved, j.opened, j.purchase, j.call]  # newest first, form last
    last = _replay(fresh, [events[e["event_id"]] for e in order] + [events[j.form_event_id]])
    by_email = fresh.get("/v1/customers", email=j.email, min_position=last, at=iso(j.at))
    by_phone = fresh.get("/v1/customers", phone=j.phone, min_position=last, at=iso(j.at))
    assert by_email.status_code == by_phone.status_code == 200, (by_email.text, by_phone.text)
    email_view, phone_view = by_email.json(), by_phone.json()
    assert email_view["customer_id"] != phone_view["customer_id"]
    assert email_view["identity"]["phones"] == []
    assert phone_view["purchases"]["count"] == 1
    assert email_view["touchpoints"] + phone_view["touchpoints"] == original.json()["touchpoints"]
    conflicts = fresh.get("/v1/identity/conflicts").json()["conflicts"]
    phone_owner = phone_view["customer_id"]
    assert [(c["event_id"], c["customer_id"], c["identifiers"], c["resolved"]) for c in conflicts] == [
        (j.call["event_id"], email_view["customer_id"],
         [{"kind": "phone", "owner": phone_owner, "shown_as": phone_owner}], False)
    ]


def test_the_same_events_in_another_order_after_the_identifying_ones_give_an_identical_view(
    start_runtime: Any,
) -> None:
    first = Api(start_runtime())
    j = Journey()
    _, last = _tell_the_journey(first, j)
    original = first.get("/v1/customers", email=j.email, min_position=last, at=iso(j.at))
    assert original.status_code == 200, original.text
    events = _as_sent(first.timeline(original.json()["customer_id"]))

    fresh = Api(start_runtime())
    order = [j.form_event_id, j.call["event_id"], j.consent["event_id"], j.resolved["event_id"],
             j.survey["event_id"], j.purchase["event_id"], j.opened["event_id"]]
    last = _replay(fresh, [events[i] for i in order])
    rebuilt = fresh.get("/v1/customers", email=j.email, min_position=last, at=iso(j.at))
    assert rebuilt.status_code == 200, rebuilt.text
    assert rebuilt.json() == original.json()
    assert rebuilt.content == original.content, "the same view must serialise to the same bytes"


def test_a_touchpoint_naming_two_customers_is_reported_as_a_conflict_and_nothing_is_merged(api: Api) -> None:
    uid = unique()
    t = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    email_a, email_b = f"alice.{uid}@example.com", f"bruno.{uid}@example.com"
    phone_a, phone_b = "+33611" + uid_digits(uid, 0), "+33622" + uid_digits(uid, 1)
    first_a = call(f"a-1-{uid}", t, {"emails": [email_a], "phones": [phone_a]}, direction="inbound")
    first_b = call(f"b-1-{uid}", t + timedelta(minutes=1), {"emails": [email_b], "phones": [phone_b]},
                   direction="inbound")
    api.ingest([first_a, first_b])
    clash = call(f"clash-{uid}", t + timedelta(hours=1), {"emails": [email_a], "phones": [phone_b]},
                 direction="inbound", outcome="reached")
    position = api.ingest(clash)["position"]

    alice = api.find(email=email_a, min_position=position)
    bruno = api.find(email=email_b, min_position=position)
    assert alice["customer_id"] != bruno["customer_id"]

    conflicts = api.get("/v1/identity/conflicts")
    assert conflicts.status_code == 200, conflicts.text
    mine = [c for c in conflicts.json()["conflicts"] if c["event_id"] == clash["event_id"]]
    assert len(mine) == 1, conflicts.json()
    assert mine[0]["position"] == position, mine
    assert mine[0]["customer_id"] == alice["customer_id"], mine  # the most trusted identifier decides
    assert mine[0]["identifiers"] == [{"kind": "phone", "owner": bruno["customer_id"],
                                       "shown_as": bruno["customer_id"]}], mine
    assert mine[0]["shown_as"] == alice["customer_id"] and mine[0]["resolved"] is False, mine

    # No merge: each customer keeps exactly their own identifiers and touchpoints.
    assert alice["identity"] == {"emails": [email_a], "phones": [phone_a], "external_ids": []}
    assert bruno["identity"] == {"emails": [email_b], "phones": [phone_b], "external_ids": []}
    assert alice["touchpoints"] == 2 and bruno["touchpoints"] == 1
    assert [e["event_id"] for e in api.timeline(alice["customer_id"])] == [clash["event_id"], first_a["event_id"]]
    assert [e["event_id"] for e in api.timeline(bruno["customer_id"])] == [first_b["event_id"]]
    assert api.find(phone=phone_b)["customer_id"] == bruno["customer_id"]
    assert api.find(phone=phone_a)["customer_id"] == alice["customer_id"]


def uid_digits(uid: str, salt: int) -> str:
    """Six digits derived from a test's unique id (distinct phones per test)."""
    return f"{(int(uid, 16) + salt * 7919) % 1_000_000:06d}"
