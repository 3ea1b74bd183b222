"""Subject access and portability over HTTP, on every runtime: ``GET /v1/customers/{id}/export``
gives everything held about a customer in one machine-readable file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api import Api, bearer, call, consent, email_event, purchase, unique

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
