"""Read-your-writes: a read that names the position ingest returned sees that write, or
says honestly (503, Retry-After) that the views have not reached it yet."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api import Api, call, error_of, purchase, unique

pytestmark = pytest.mark.e2e

T = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def test_a_read_at_the_returned_position_always_sees_the_write_just_made(api: Api) -> None:
    uid = unique()
    email = f"ryw.{uid}@example.com"
    for n in range(50):
        event = call(f"ryw-{uid}-{n}", T + timedelta(minutes=n), {"emails": [email]}, direction="inbound")
        response = api.post_events(event)
        assert response.status_code == 202, response.text
        position = response.json()["position"]
        view = api.find(email=email, min_position=position)
        assert view["touchpoints"] == n + 1, f"write {n} at position {position} not visible: {view['touchpoints']}"
        assert view["recent"][0]["event_id"] == event["event_id"], view["recent"][0]


def test_a_read_at_a_batch_position_sees_every_event_of_the_batch(api: Api) -> None:
    uid = unique()
    emails = [f"ryw.{uid}.{k}@example.com" for k in range(20)]
    batch = [purchase(f"ryw-{uid}-{k}", T, {"emails": [e]}, order_id=f"o-{k}", amount="10.00")
             for k, e in enumerate(emails)]
    position = api.ingest(batch)["position"]
    for email in emails:
        view = api.find(email=email, min_position=position)
        assert view["purchases"]["count"] == 1, view
    first = api.find(email=emails[0])
    [event] = api.timeline(first["customer_id"], min_position=position)
    assert event["event_id"] == batch[0]["event_id"]


def test_a_read_at_a_position_not_yet_reached_answers_503_within_the_configured_wait(start_runtime: Any) -> None:
    api = Api(start_runtime({"TOUCHSTREAM_READ_WAIT_MAX_SECONDS": "0.5"}))
    uid = unique()
    email = f"future.{uid}@example.com"
    position = api.ingest(call(f"future-{uid}", T, {"emails": [email]}))["position"]
    customer_id = api.find(email=email, min_position=position)["customer_id"]
    with api.runtime.views_paused():  # the log moves on, the views do not
        ahead = api.ingest(call(f"later-{uid}", T, {"customer_id": customer_id}))["position"]
        for path, params in ((f"/v1/customers/{customer_id}", {}), ("/v1/customers", {"email": email}),
                             (f"/v1/customers/{customer_id}/timeline", {})):
            started = time.monotonic()
            response = api.get(path, min_position=ahead, **params)
            elapsed = time.monotonic() - started
            assert response.status_code == 503, f"{path}: {response.status_code} {response.text}"
            assert elapsed < 0.5 + 2.0, f"{path}: answered after {elapsed:.2f} s with a 0.5 s wait configured"
            error_of(response)
            retry_after = response.headers.get("Retry-After")
            assert retry_after is not None and retry_after.isdigit(), response.headers
    # the position already reached still answers at once
    assert api.customer(customer_id, min_position=position)["touchpoints"] == 1


def test_a_negative_min_position_is_refused_naming_the_parameter(api: Api) -> None:
    response = api.get(f"/v1/customers/cus_{unique()}", min_position=-1)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert any("min_position" in e["path"] for e in error["errors"]), error
