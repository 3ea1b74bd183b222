"""Lifecycle stages over HTTP, on every runtime: a customer goes prospect -> new ->
active -> declining -> lost -> reactivated, driven by purchases and clock ticks; a late
purchase gives a late_event correction; the feed and the analytics agree with the view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api import Api, bearer, call, iso, purchase, unique, wait_until

pytestmark = pytest.mark.e2e

BASE = datetime(2023, 1, 2, 9, 0, tzinfo=UTC)  # in the past: ticks may not run ahead of the clock


def day(n: float) -> datetime:
    return BASE + timedelta(days=n)


def post_tick(api: Api, at: datetime) -> int:
    response = api.client.post("/v1/clock/ticks", json={"at": iso(at)}, headers=bearer(api.runtime.keys.admin))
    assert response.status_code == 202, response.text
    return int(response.json()["position"])


def buy(uid: str, n: int, when: datetime) -> dict[str, Any]:
    return purchase(f"{uid}-p{n}", when, {"customer_id": uid}, order_id=f"{uid}-o{n}", amount="80.00")


def moves(history: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [(t["from_stage"], t["to_stage"], t["reason"], t["at"]) for t in history]


def test_a_customer_lives_through_every_stage_and_each_transition_is_an_event(api: Api) -> None:
    uid = f"lc-{unique()}"
    api.ingest(call(f"{uid}-c0", day(0), {"customer_id": uid}))
    position = api.ingest(call(f"{uid}-c1", day(0.5), {"customer_id": uid}))["position"]
    assert api.customer(uid, min_position=position)["lifecycle"]["stage"] == "prospect"

    api.ingest([buy(uid, 1, day(1))])
    answer = api.ingest([buy(uid, 2, day(21)), buy(uid, 3, day(41)), buy(uid, 4, day(61))])
    view = api.customer(uid, min_position=answer["position"])
    assert (view["lifecycle"]["stage"], view["lifecycle"]["rule"]) == ("active", "repeat_purchases")
    assert view["lifecycle"]["typical_interval_days"] == 20.0

    api.customer(uid, min_position=post_tick(api, day(200)))  # 2 x 20 days after day 61
    lost = api.customer(uid, min_position=post_tick(api, day(61 + 400)))
    assert lost["lifecycle"]["stage"] == "lost"

    final = api.customer(uid, min_position=api.ingest(buy(uid, 5, day(500)))["position"])
    life = final["lifecycle"]
    assert life["stage"] == "reactivated"
    assert life["since"] == iso(day(500))
    expected = [
        ("lost", "reactivated", "purchase_after_lost", iso(day(500))),
        ("declining", "lost", "inactivity", iso(day(61 + 365))),
        ("active", "declining", "recency", iso(day(61 + 40))),
        ("new", "active", "repeat_purchases", iso(day(21))),
        ("prospect", "new", "first_purchase", iso(day(1))),
    ]
    assert moves(life["history"]) == expected  # newest first
    assert life["history"][-1]["dwell_seconds"] == 86_400.0  # prospect since its first event

    # the feed holds the same transitions, oldest first, with the same deterministic ids
    feed = api.get("/v1/lifecycle/transitions", customer_id=uid).json()
    assert [t["transition_id"] for t in feed["transitions"]] == [t["transition_id"] for t in reversed(life["history"])]
    assert moves(feed["transitions"]) == list(reversed(expected))
    again = api.get("/v1/lifecycle/transitions", customer_id=uid, after=feed["next_cursor"]).json()
    assert again["transitions"] == []

    figures = api.get("/v1/analytics/lifecycle", **{"from": iso(day(0)), "to": iso(day(600))}).json()
    assert figures["stages"]["reactivated"] >= 1
    assert figures["matrix"]["active"]["declining"] >= 1
    assert figures["matrix"]["lost"]["reactivated"] >= 1
    assert figures["median_dwell_seconds"]["lost"] == pytest.approx((500 - 426) * 86_400.0)


def test_a_late_purchase_corrects_the_stage_with_a_late_event_transition(api: Api) -> None:
    uid = f"lc-late-{unique()}"
    answer = api.ingest([buy(uid, 1, day(0)), buy(uid, 2, day(30))])
    api.customer(uid, min_position=answer["position"])
    lost = api.customer(uid, min_position=post_tick(api, day(420)))
    assert lost["lifecycle"]["stage"] == "lost"
    # a purchase made on day 380, before the customer was lost on day 395, arrives only now:
    # what was reported since day 395 was wrong, so the stage is corrected at the clock
    late = api.customer(uid, min_position=api.ingest(buy(uid, 3, day(380)))["position"])
    newest = late["lifecycle"]["history"][0]
    assert (newest["from_stage"], newest["to_stage"], newest["reason"]) == ("lost", "active", "late_event")
    assert newest["at"] == iso(day(420))
    assert late["lifecycle"]["stage"] == "active"


def test_a_tick_beyond_the_platform_clock_is_refused(api: Api) -> None:
    response = api.client.post("/v1/clock/ticks", json={"at": iso(datetime.now(UTC) + timedelta(days=30))},
                               headers=bearer(api.runtime.keys.admin))
    assert response.status_code == 409  # well-formed: it conflicts with the platform's clock
    assert response.json()["error"]["errors"][0]["path"] == "at"
    forbidden = api.client.post("/v1/clock/ticks", json={}, headers=bearer(api.runtime.keys.read))
    assert forbidden.status_code == 403


def test_the_platform_ticks_by_itself_and_inactive_customers_move_on_without_any_event(
    start_runtime: Any,
) -> None:
    api = Api(start_runtime({"TOUCHSTREAM_CLOCK_TICK_SECONDS": "0.5"}))
    uid = f"lc-clock-{unique()}"
    # one purchase whose 90 days without a second one end 3 s from now: only a tick can tell
    bought = datetime.now(UTC).replace(microsecond=0) - timedelta(days=90) + timedelta(seconds=3)
    position = api.ingest(buy(uid, 1, bought))["position"]
    assert api.customer(uid, min_position=position)["lifecycle"]["stage"] == "new"

    def declined() -> dict[str, Any] | None:
        life = api.customer(uid)["lifecycle"]
        return life if life["stage"] == "declining" else None

    life = wait_until(declined, timeout=30, what="the scheduler's ticks moving the customer on")
    newest = life["history"][0]
    assert (newest["reason"], newest["at"]) == ("no_repeat_purchase", iso(bought + timedelta(days=90)))
    # caused by time alone: the deadline it crossed, whichever tick revealed it
    assert newest["cause_event_ids"] == [f"time:{round((bought + timedelta(days=90)).timestamp() * 1_000_000)}"]


def test_with_pinned_purchase_model_parameters_p_alive_decides_declining_and_lost(start_runtime: Any) -> None:
    from projections.lifecycle.alive import AliveRule
    from projections.lifecycle.stages import Buy
    from projections.view.state import instant_of, micros

    parameters = [0.243, 4.414, 0.793, 2.426]
    api = Api(start_runtime({"TOUCHSTREAM_LIFECYCLE_P_ALIVE_PARAMETERS": str(parameters)}))
    uid = f"pa-{unique()}"
    days = (0, 14, 28, 42)
    answer = api.ingest([buy(uid, n, day(d)) for n, d in enumerate(days)])
    assert api.customer(uid, min_position=answer["position"])["lifecycle"]["stage"] == "active"
    rule = AliveRule(*parameters)
    history = tuple(Buy(micros(day(d)), f"{uid}-p{n}", "EUR", 800_000) for n, d in enumerate(days))
    declining, lost = rule.crossing(history, 0.5), rule.crossing(history, 0.2)

    view = api.customer(uid, min_position=post_tick(api, day(400)))
    life = view["lifecycle"]
    assert (life["stage"], life["rule"]) == ("lost", "p_alive")
    assert [(t["to_stage"], t["reason"]) for t in life["history"][:2]] == [("lost", "p_alive"), ("declining", "p_alive")]
    assert life["history"][1]["at"] == iso(instant_of(declining))
    assert life["history"][0]["at"] == iso(instant_of(lost))
    feed = api.get("/v1/lifecycle/transitions", customer_id=uid).json()["transitions"]
    assert [t["reason"] for t in feed][-2:] == ["p_alive", "p_alive"]
