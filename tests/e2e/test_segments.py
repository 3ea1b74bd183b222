"""Customer segments over HTTP, on every runtime: a customer enters and leaves the
default segments as their purchases, consents, complaints and lifecycle stage change;
the entries and exits are a feed; counts, analytics and the campaign export agree."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api import Api, bearer, consent, iso, purchase, service_case, unique

pytestmark = pytest.mark.e2e

BASE = datetime(2023, 1, 2, 9, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return BASE + timedelta(days=n)


def tick(api: Api, at: datetime) -> int:
    response = api.client.post("/v1/clock/ticks", json={"at": iso(at)}, headers=bearer(api.runtime.keys.admin))
    assert response.status_code == 202, response.text
    return int(response.json()["position"])


def changes_of(api: Api, uid: str) -> list[tuple[str, str]]:
    found, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1000} | ({"after": cursor} if cursor else {})
        page = api.get("/v1/segments/changes", **params).json()
        found += [(c["segment"], c["kind"]) for c in page["changes"] if c["customer_id"] == uid]
        if not page["changes"]:
            return found
        cursor = page["next_cursor"]


def members(api: Api, segment: str) -> dict[str, dict[str, Any]]:
    response = api.get(f"/v1/segments/{segment}/members", format="jsonl")
    assert response.status_code == 200, response.text
    return {row["customer_id"]: row for row in map(json.loads, response.text.splitlines())}


def sizes(api: Api) -> dict[str, int]:
    body = api.get("/v1/analytics/segments", **{"from": iso(day(-1)), "to": iso(day(1000))}).json()
    return {s["id"]: s["members"] for s in body["segments"]}


def test_a_customer_enters_and_leaves_segments_and_every_move_is_an_event(api: Api) -> None:
    uid = f"seg-{unique()}"
    email = f"{uid}@example.com"
    who = {"customer_id": uid, "emails": [email]}
    start = sizes(api)
    first = api.ingest([purchase(f"{uid}-p1", day(0), who, order_id=f"{uid}-o1", amount="600.00"),
                        consent(f"{uid}-c1", day(0), who, consent_channel="email", purpose="marketing",
                                status="granted")])
    api.customer(uid, min_position=first["position"])
    assert uid in members(api, "one_time_buyers")
    assert uid in members(api, "email_marketing_opt_in")
    assert sizes(api)["one_time_buyers"] == start.get("one_time_buyers", 0) + 1

    second = api.ingest([purchase(f"{uid}-p2", day(30), who, order_id=f"{uid}-o2", amount="500.00"),
                         service_case(f"{uid}-s1", day(31), who, case_id=f"{uid}-k", status="opened",
                                      severity="high", category="complaint")])
    api.customer(uid, min_position=second["position"])
    assert uid not in members(api, "one_time_buyers")
    assert uid in members(api, "high_value") and uid in members(api, "complaint_open")

    resolved = api.ingest(service_case(f"{uid}-s2", day(32), who, case_id=f"{uid}-k", status="resolved",
                                       severity="high", category="complaint"))
    api.customer(uid, min_position=resolved["position"])
    assert uid not in members(api, "complaint_open")

    # no purchase for a long time: the lifecycle declines, and the segment follows the stage
    api.customer(uid, min_position=tick(api, day(200)))
    assert uid in members(api, "declining_repeat_buyers") or uid in members(api, "lost_repeat_buyers")

    moves = changes_of(api, uid)
    assert ("one_time_buyers", "entered") in moves and ("one_time_buyers", "exited") in moves
    assert ("complaint_open", "entered") in moves and ("complaint_open", "exited") in moves
    assert ("email_marketing_opt_in", "entered") in moves and ("high_value", "entered") in moves
    assert len(moves) == len(set(moves))  # each move once, none doubled

    # the campaign export: CSV and JSONL give the same members and contact fields
    row = members(api, "high_value")[uid]
    assert row["email"] == email and row["since"] is not None
    text = api.get("/v1/segments/high_value/members", format="csv").text
    exported = {r["customer_id"]: r for r in csv.DictReader(io.StringIO(text))}
    assert exported[uid]["email"] == email
    assert api.get("/v1/segments/nope/members").status_code == 404
    assert api.get("/v1/segments/high_value/members", key="wrong").status_code == 401

    body = api.get("/v1/analytics/segments", **{"from": iso(day(-1)), "to": iso(day(1000))}).json()
    by_id = {s["id"]: s for s in body["segments"]}
    assert by_id["complaint_open"]["entered"] >= 1 and by_id["complaint_open"]["exited"] >= 1
    assert by_id["high_value"]["members"] == len(members(api, "high_value"))
    assert by_id["high_value"]["version"] == 1 and by_id["high_value"]["description"]

    metrics = api.client.get("/metrics").text
    assert f'touchstream_segment_customers{{segment="high_value"}} {float(by_id["high_value"]["members"])}' in metrics
    assert email not in metrics
