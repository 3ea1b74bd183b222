"""Lifecycle stages: each transition and threshold (projections.lifecycle.stages)."""

from __future__ import annotations

from functools import reduce

import pytest

from projections.lifecycle.stages import DAY, Buy, LifecycleConfig, dwell, judge, next_deadline, transition_id
from projections.view.document import to_document
from projections.view.fold import CustomerView, evolve, initial_view, micros, tick
from tests.support.touchpoints import T0, at, call, purchase, refund

DEFAULT = LifecycleConfig()
ZERO = micros(T0)


def fold(*events) -> CustomerView:  # type: ignore[no-untyped-def]
    return reduce(evolve, events, initial_view("c-1"))


def day(n: float) -> int:
    return ZERO + round(n * DAY)


def stages(view: CustomerView) -> list[tuple[str, str, str, float]]:
    return [(t.from_stage, t.to_stage, t.reason, (t.at - ZERO) / DAY) for t in view.lifecycle.history]


def buys(*days_amounts: tuple[float, int]) -> tuple[Buy, ...]:
    return tuple(Buy(day(d), f"p{i}", "EUR", a * 10_000) for i, (d, a) in enumerate(days_amounts))


def test_a_customer_without_purchase_is_a_prospect_and_has_no_deadline() -> None:
    view = fold(call("c1", at(0)), call("c2", at(400)))
    assert view.lifecycle.stage == "prospect"
    assert view.lifecycle.deadline is None
    assert to_document(view)["lifecycle"]["since"] == to_document(view)["first_seen"]


def test_the_first_purchase_makes_a_new_customer_with_the_prospect_dwell() -> None:
    view = fold(call("c1", at(0)), purchase("p1", at(3)))
    assert stages(view) == [("prospect", "new", "first_purchase", 3.0)]
    assert dwell(view.lifecycle.history[0], view.first_seen) == 3 * DAY


def test_new_lasts_new_days_then_declines_without_a_second_purchase() -> None:
    assert judge(buys((0, 10)), None, day(89.99)) == ("new", "first_purchase")
    assert judge(buys((0, 10)), None, day(90)) == ("declining", "no_repeat_purchase")
    view = tick(fold(purchase("p1", at(0))), day(100))
    assert stages(view)[-1] == ("new", "declining", "no_repeat_purchase", 90.0)


def test_a_second_purchase_makes_an_active_customer() -> None:
    view = fold(purchase("p1", at(0)), purchase("p2", at(20)))
    assert stages(view)[-1] == ("new", "active", "repeat_purchases", 20.0)


def test_recency_uses_the_population_default_until_the_customer_has_enough_gaps() -> None:
    # one gap: the default interval (45 days) x 2 = 90 days
    assert judge(buys((0, 10), (10, 10)), None, day(99.9))[0] == "active"
    assert judge(buys((0, 10), (10, 10)), None, day(100)) == ("declining", "recency")


def test_recency_uses_the_customers_own_median_interval() -> None:
    view = fold(*(purchase(f"p{i}", at(7 * i)) for i in range(5)))  # weekly: median 7 days
    assert view.lifecycle.interval == 7 * DAY
    assert judge(view.lifecycle.buys, view.lifecycle.interval, day(28 + 13.9), DEFAULT)[0] == "active"
    # 2 x 7 = 14 days is below the 14-day floor? equal: the floor applies from 14 days
    assert judge(view.lifecycle.buys, view.lifecycle.interval, day(28 + 14), DEFAULT) == ("declining", "recency")
    later = tick(view, day(60))
    assert stages(later)[-1] == ("active", "declining", "recency", 42.0)


def test_the_recency_threshold_has_a_floor() -> None:
    daily = tuple(Buy(day(i), f"p{i}", "EUR", 10_000) for i in range(6))
    interval = DAY
    assert judge(daily, interval, day(5 + 13.9))[0] == "active"  # 2 x 1 day < the 14-day floor
    assert judge(daily, interval, day(5 + 14))[0] == "declining"


def test_spend_falling_by_half_against_the_previous_window_is_declining() -> None:
    history = buys((0, 100), (10, 100), (20, 100), (95, 40), (100, 50))
    interval = 10 * DAY
    assert judge(history, interval, day(100)) == ("active", "repeat_purchases")  # earlier window still holds 0..20
    # at day 115: latest window (25, 115] = 90, earlier (-65, 25] = 300 -> 90 <= 150
    assert judge(history, interval, day(115)) == ("declining", "spend_drop")
    assert next_deadline(history, interval, day(100)) is not None


def test_the_spend_rule_needs_a_pattern_in_the_earlier_window() -> None:
    history = buys((0, 500), (100, 10))  # one earlier purchase is not a pattern
    assert judge(history, None, day(101))[0] == "active"


def test_a_year_without_purchase_is_lost_and_a_purchase_then_reactivates() -> None:
    view = fold(purchase("p1", at(0)), purchase("p2", at(30)), purchase("p3", at(60)))
    view = tick(view, day(60 + 365))
    assert stages(view)[-2:] == [("active", "declining", "recency", 120.0), ("declining", "lost", "inactivity", 425.0)]
    view = evolve(view, purchase("p4", at(500)))
    assert stages(view)[-1] == ("lost", "reactivated", "purchase_after_lost", 500.0)
    view = evolve(view, purchase("p5", at(520)))
    assert stages(view)[-1] == ("reactivated", "active", "repeat_purchases", 520.0)


def test_a_purchase_after_a_long_silence_emits_the_missed_transitions_at_their_own_instants() -> None:
    view = fold(purchase("p1", at(0)), purchase("p2", at(30)), purchase("p3", at(800)))
    assert stages(view) == [
        ("prospect", "new", "first_purchase", 0.0),
        ("new", "active", "repeat_purchases", 30.0),
        ("active", "declining", "recency", 120.0),
        ("declining", "lost", "inactivity", 395.0),
        ("lost", "reactivated", "purchase_after_lost", 800.0),
    ]


def test_a_late_purchase_that_rewrites_the_past_is_a_late_event_correction() -> None:
    view = tick(fold(purchase("p1", at(0)), purchase("p2", at(30))), day(400))
    assert view.lifecycle.stage == "lost"
    late = evolve(view, purchase("p-late", at(380)))  # it happened before the tick, arrives after
    assert stages(late)[-1] == ("lost", "active", "late_event", 400.0)
    assert late.lifecycle.stage == "active"


def test_a_slightly_late_purchase_that_contradicts_nothing_starts_the_stage_at_its_own_time() -> None:
    view = fold(call("c1", at(0)), call("c2", at(5)), purchase("p1", at(4)))
    assert stages(view) == [("prospect", "new", "first_purchase", 4.0)]


def test_a_refund_moves_no_stage_and_a_free_order_is_a_purchase() -> None:
    view = fold(refund("r1", at(0), "p0", "20.00"), call("c1", at(1)))
    assert view.lifecycle.stage == "prospect"
    free = fold(purchase("p0", at(1), amount="0.00"))
    assert stages(free) == [("prospect", "new", "first_purchase", 1.0)]


def test_a_first_order_refunded_in_full_leaves_the_customer_a_customer() -> None:
    bought = fold(purchase("p1", at(0), amount="40.00"))
    refunded = fold(purchase("p1", at(0), amount="40.00"), refund("r1", at(2), "o-p1", "40.00"))
    assert refunded.lifecycle == evolve(bought, call("c", at(2))).lifecycle  # the refund only moved time
    assert dict(refunded.currencies)["EUR"].revenue == 0


def test_a_tick_before_the_deadline_changes_nothing() -> None:
    view = fold(purchase("p1", at(0)))
    assert tick(view, day(89)) is view


def test_transition_ids_are_deterministic_and_distinct() -> None:
    a = tick(fold(purchase("p1", at(0)), purchase("p2", at(30))), day(900))
    b = tick(fold(purchase("p1", at(0)), purchase("p2", at(30))), day(900))
    ids = [transition_id("c-1", t) for t in a.lifecycle.history]
    assert ids == [transition_id("c-1", t) for t in b.lifecycle.history]
    assert len(set(ids)) == len(a.lifecycle.history) == 4
    assert transition_id("c-2", a.lifecycle.history[0]) != ids[0]


def test_the_history_keeps_the_latest_transitions_and_counts_all() -> None:
    config = LifecycleConfig(history_limit=2)
    view = initial_view("c-1")
    for i, d in enumerate((0, 30, 800, 820)):
        view = evolve(view, purchase(f"p{i}", at(d)), config)
    assert view.lifecycle.seq == 6
    assert [t.seq for t in view.lifecycle.history] == [5, 6]


def test_the_fold_without_lifecycle_leaves_stages_out() -> None:
    view = evolve(initial_view("c-1"), purchase("p1", at(0)), None)
    assert view.lifecycle.stage == "prospect" and view.purchases == 1


@pytest.mark.parametrize("field", ["new_days", "lost_days", "spend_window_days", "recency_factor"])
def test_a_threshold_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LifecycleConfig(**{field: 0})


def test_a_purchase_after_a_tick_that_did_not_visit_the_customer_crosses_the_deadlines_first() -> None:
    view = fold(purchase("p0", at(0)))
    visited = evolve(tick(view, day(100)), purchase("p1", at(95)), clock=day(100))
    skipped = evolve(view, purchase("p1", at(95)), clock=day(100))  # the tick's limit left it due
    assert stages(skipped) == stages(visited) == [
        ("prospect", "new", "first_purchase", 0.0),
        ("new", "declining", "no_repeat_purchase", 90.0),
        ("declining", "active", "repeat_purchases", 95.0),
    ]


def test_a_new_period_longer_than_the_lost_threshold_still_loses_the_customer_on_time() -> None:
    config = LifecycleConfig(new_days=400)
    view = evolve(initial_view("c-1"), purchase("p1", at(0)), config)
    assert view.lifecycle.deadline == day(365)
    assert stages(tick(view, day(500), config)) == [("prospect", "new", "first_purchase", 0.0),
                                                         ("new", "lost", "inactivity", 365.0)]
