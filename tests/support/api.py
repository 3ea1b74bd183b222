"""Talking to a Touchstream runtime over HTTP only: touchpoint JSON builders, calls with
the right key, the error shape, and bounded polling. Nothing here imports the product."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from tests.support.server import FORM_ID, FORM_ORIGIN, FORM_PUBLIC_KEY

__all__ = [
    "Api",
    "bearer",
    "iso",
    "unique",
    "touchpoint",
    "call",
    "purchase",
    "service_case",
    "survey",
    "consent",
    "email_event",
    "error_of",
    "error_paths",
    "wait_until",
]

T = TypeVar("T")


def unique() -> str:
    return uuid.uuid4().hex[:10]


def iso(moment: datetime) -> str:
    """The API's one textual form of an instant: UTC, microseconds, explicit offset."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- touchpoints as a sender posts them --------------------------------------------------
def touchpoint(kind: str, event_id: str, occurred_at: datetime | str, *, customer: dict[str, Any],
               channel: str, source: str = "e2e", **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": kind,
        "occurred_at": occurred_at if isinstance(occurred_at, str) else occurred_at.isoformat(),
        "source": source,
        "customer": customer,
        "channel": channel,
        **fields,
    }


def call(event_id: str, when: datetime, customer: dict[str, Any], *, direction: str = "outbound",
         outcome: str = "reached", channel: str = "phone", **fields: Any) -> dict[str, Any]:
    return touchpoint("call", event_id, when, customer=customer, channel=channel, direction=direction,
                      outcome=outcome, **fields)


def purchase(event_id: str, when: datetime, customer: dict[str, Any], *, order_id: str, amount: str,
             currency: str = "EUR", channel: str = "store", **fields: Any) -> dict[str, Any]:
    return touchpoint("purchase", event_id, when, customer=customer, channel=channel, order_id=order_id,
                      amount=amount, currency=currency, **fields)


def service_case(event_id: str, when: datetime, customer: dict[str, Any], *, case_id: str, status: str,
                 channel: str = "phone", **fields: Any) -> dict[str, Any]:
    return touchpoint("service_case", event_id, when, customer=customer, channel=channel, case_id=case_id,
                      status=status, **fields)


def survey(event_id: str, when: datetime, customer: dict[str, Any], *, channel: str = "email",
           **fields: Any) -> dict[str, Any]:
    return touchpoint("survey", event_id, when, customer=customer, channel=channel, **fields)


def consent(event_id: str, when: datetime, customer: dict[str, Any], *, consent_channel: str, purpose: str,
            status: str, channel: str = "web", **fields: Any) -> dict[str, Any]:
    return touchpoint("consent", event_id, when, customer=customer, channel=channel,
                      consent_channel=consent_channel, purpose=purpose, status=status, **fields)


def email_event(event_id: str, when: datetime, customer: dict[str, Any], *, status: str = "sent",
                **fields: Any) -> dict[str, Any]:
    return touchpoint("email", event_id, when, customer=customer, channel="email", status=status, **fields)


# -- answers ---------------------------------------------------------------------------
def error_of(response: httpx.Response) -> dict[str, Any]:
    """The documented error object ``{"status", "message", "errors"?}``, checked."""
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{response.status_code} answer is not JSON: {response.text[:500]!r}") from None
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), (
        f"{response.status_code} answer lacks the error shape {{'error': {{...}}}}: {body!r}"[:2000]
    )
    error = body["error"]
    assert error.get("status") == response.status_code, error
    assert isinstance(error.get("message"), str) and error["message"], error
    return error  # type: ignore[no-any-return]


def error_paths(response: httpx.Response) -> list[str]:
    error = error_of(response)
    assert isinstance(error.get("errors"), list) and error["errors"], f"no field errors in {error!r}"
    for item in error["errors"]:
        assert set(item) >= {"path", "message"}, item
    return [item["path"] for item in error["errors"]]


def wait_until(probe: Callable[[], T | None], *, timeout: float = 10.0, interval: float = 0.05,
               what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")
        time.sleep(interval)


class Api:
    """HTTP calls to one runtime, each with the least-privileged key that should work."""

    def __init__(self, runtime: Any):
        self.runtime = runtime

    @property
    def client(self) -> httpx.Client:
        return self.runtime.client  # type: ignore[no-any-return]

    # ingest ---------------------------------------------------------------------------
    def post_events(self, body: Any, *, key: str | None = None) -> httpx.Response:
        return self.client.post("/v1/events", json=body, headers=bearer(key or self.runtime.keys.ingest))

    def ingest(self, body: Any) -> dict[str, Any]:
        """Post and require every event accepted or duplicate; the answer."""
        response = self.post_events(body)
        assert response.status_code in (200, 202), f"{response.status_code}: {response.text[:2000]}"
        answer = response.json()
        assert answer["rejected"] == 0, answer
        return answer  # type: ignore[no-any-return]

    def post_form(self, fields: dict[str, str], *, form_id: str = FORM_ID, origin: str | None = FORM_ORIGIN,
                  key: str | None = FORM_PUBLIC_KEY, json_answer: bool = True,
                  multipart: bool = False) -> httpx.Response:
        headers = {}
        if origin is not None:
            headers["Origin"] = origin
        if json_answer:
            headers["Accept"] = "application/json"
        data = dict(fields)
        if key is not None:
            data["_key"] = key
        if multipart:
            return self.client.post(f"/v1/forms/{form_id}", files={k: (None, v) for k, v in data.items()},
                                    headers=headers)
        return self.client.post(f"/v1/forms/{form_id}", data=data, headers=headers)

    # reads ----------------------------------------------------------------------------
    def get(self, path: str, *, key: str | None = None, **params: Any) -> httpx.Response:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.client.get(path, params=clean, headers=bearer(key or self.runtime.keys.read))

    def customer(self, customer_id: str, **params: Any) -> dict[str, Any]:
        response = self.get(f"/v1/customers/{customer_id}", **params)
        assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
        return response.json()  # type: ignore[no-any-return]

    def find(self, **params: Any) -> dict[str, Any]:
        response = self.get("/v1/customers", **params)
        assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
        return response.json()  # type: ignore[no-any-return]

    def timeline_page(self, customer_id: str, **params: Any) -> dict[str, Any]:
        response = self.get(f"/v1/customers/{customer_id}/timeline", **params)
        assert response.status_code == 200, f"{response.status_code}: {response.text[:2000]}"
        return response.json()  # type: ignore[no-any-return]

    def timeline(self, customer_id: str, *, limit: int = 500, min_position: int | None = None,
                 max_pages: int = 1000) -> list[dict[str, Any]]:
        """Every timeline event, following ``next_cursor`` to the end."""
        events: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(max_pages):
            page = self.timeline_page(customer_id, limit=limit, cursor=cursor, min_position=min_position)
            assert page["customer_id"] == customer_id, page
            assert len(page["events"]) <= limit, page
            events += page["events"]
            cursor = page["next_cursor"]
            if cursor is None:
                return events
        raise AssertionError(f"the timeline of {customer_id} did not end within {max_pages} pages")

    def settle(self) -> int:
        """A position every view already includes, proven by a read that waits for it:
        posts one sentinel event about its own customer and reads it back."""
        sentinel = email_event(f"sentinel-{unique()}", datetime.now(UTC),
                               {"external_ids": [{"system": "e2e-sentinel", "id": unique()}]})
        answer = self.ingest(sentinel)
        position = answer["position"]
        ref = sentinel["customer"]["external_ids"][0]
        self.find(external_id=f"{ref['system']}:{ref['id']}", min_position=position)
        return int(position)
