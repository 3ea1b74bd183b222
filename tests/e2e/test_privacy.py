"""Subject access and portability over HTTP, on every runtime: ``GET /v1/customers/{id}/export``
gives everything held about a customer in one machine-readable file."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api import Api, bearer, call, consent, email_event, iso, purchase, unique

pytestmark = [pytest.mark.e2e]

DAY = datetime(2026, 3, 2, 10, tzinfo=UTC)


def _export(api: Api, customer_id: str, *, key: str | None = None, **params: Any) -> Any:
    return api.client.get(f"/v1/customers/{customer_id}/export", params=params,
                          headers=bearer(key or api.runtime.keys.admin))


def test_a_subject_access_export_holds_everything_about_the_customer(api: Api) -> None:
    tag = unique()
    who = {"emails": [f"{tag}@example.com"]}
    events = [email_event(f"{tag}-1", DAY, who),
              consent(f"{tag}-2", DAY + timedelta(hours=1), who, consent_channel="email", purpose="marketing",
                      status="granted"),
              purchase(f"{tag}-3", DAY + timedelta(days=1), who, order_id=f"{tag}-o", amount="42.50"),
              call(f"{tag}-4", DAY + timedelta(days=2), who, direction="inbound"),
              consent(f"{tag}-5", DAY + timedelta(days=3), who, consent_channel="email", purpose="marketing",
                      status="withdrawn")]
    answer = api.ingest(events)
    customer = api.find(email=f"{tag}@example.com", min_position=answer["position"])["customer_id"]
    someone_else = api.ingest(call(f"{tag}-other", DAY, {"emails": [f"other-{tag}@example.com"]}))

    response = _export(api, customer, min_position=someone_else["position"])
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == f'attachment; filename="customer-{customer}.json"'
    export = response.json()
    assert export["format"] == "touchstream.subject_access.v1"
    assert export["customer_id"] == customer and export["customers"] == [customer]
    # every touchpoint, oldest first, as stored; nobody else's
    assert [t["event_id"] for t in export["touchpoints"]] == [e["event_id"] for e in events]
    assert export["touchpoints"][2]["amount"] == "42.5000"  # as stored: money at 4 decimals
    assert [(c["event_id"], c["status"]) for c in export["consent_history"]] == [
        (f"{tag}-2", "granted"), (f"{tag}-5", "withdrawn")]
    # the 360° view as the customer route gives it: identifiers, consents in force, lifecycle, value
    view = api.customer(customer)
    for section in ("identity", "profile", "touchpoints", "channels", "consents", "lifecycle", "purchases"):
        assert export["customer"][section] == view[section], section
    assert set(export["customer"]["value"]) == set(view["value"])  # the value card, computed at the export's time
    assert export["customer"]["identity"]["emails"] == [f"{tag}@example.com"]
    stages = [t["to_stage"] for t in export["lifecycle_transitions"]]
    assert stages and all(t["customer_id"] == customer for t in export["lifecycle_transitions"])
    assert stages[-1] == view["lifecycle"]["stage"]
    assert all(t["customer_id"] == customer for t in export["triggers"])
    assert isinstance(export["segments"], list) and export["merges"] == []

    # an operator's request: a read key cannot take it; an unknown customer is 404
    assert _export(api, customer, key=api.runtime.keys.read).status_code == 403
    assert _export(api, f"nobody-{tag}").status_code == 404


def test_the_customer_as_of_an_instant_and_as_known_at_an_instant_or_position(api: Api) -> None:
    tag = unique()
    who = {"emails": [f"{tag}@example.com"]}
    first = api.ingest([purchase(f"{tag}-1", DAY, who, order_id=f"{tag}-o1", amount="10.00"),
                        consent(f"{tag}-2", DAY + timedelta(days=1), who, consent_channel="email",
                                purpose="marketing", status="granted"),
                        purchase(f"{tag}-3", DAY + timedelta(days=10), who, order_id=f"{tag}-o3", amount="30.00")])
    customer = api.find(email=f"{tag}@example.com", min_position=first["position"])["customer_id"]
    known = datetime.now(UTC)
    time.sleep(0.05)
    # a late event: it happened on day 2, the platform hears of it after the others
    late = api.ingest(call(f"{tag}-late", DAY + timedelta(days=2), who, direction="inbound"))
    live = api.customer(customer, min_position=late["position"])
    assert live["touchpoints"] == 4

    as_of = api.customer(customer, as_of=iso(DAY + timedelta(days=5)))
    assert as_of["as_of"] == iso(DAY + timedelta(days=5)) and as_of["known_at"] is None
    assert as_of["touchpoints"] == 3 and as_of["purchases"]["count"] == 1  # the late call had happened
    assert [c["status"] for c in as_of["consents"]] == ["granted"]
    assert as_of["identity"] == live["identity"] and as_of["customer_id"] == customer
    assert as_of["lifecycle"]["stage"] is not None
    # what the platform knew before the late call arrived: by instant, and by log position
    before_late = api.customer(customer, known_at=iso(known))
    assert before_late["touchpoints"] == 3 and before_late["purchases"]["count"] == 2
    by_position = api.customer(customer, known_at=first["position"])
    assert by_position["known_at"] == first["position"]
    assert {k: by_position[k] for k in ("touchpoints", "purchases", "consents", "identity")} == {
        k: before_late[k] for k in ("touchpoints", "purchases", "consents", "identity")}
    # everything known, up to a day after the last event: the live view's figures
    everything = api.customer(customer, as_of=iso(DAY + timedelta(days=11)))
    for section in ("touchpoints", "purchases", "consents", "identity", "channels"):
        assert everything[section] == live[section], section
    # before the first event there is nothing to show; bad instants are refused precisely
    assert api.get(f"/v1/customers/{customer}", as_of=iso(DAY - timedelta(days=1))).status_code == 404
    for bad in ("yesterday", "2026-13-01T00:00:00Z", "-1"):
        response = api.get(f"/v1/customers/{customer}", known_at=bad)
        assert response.status_code == 422, (bad, response.text)
