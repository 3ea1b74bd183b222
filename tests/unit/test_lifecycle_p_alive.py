"""P(alive) in the lifecycle: with pinned BG/NBD parameters, a repeat buyer becomes
declining and then lost at the exact instants the model's P(alive) crosses the
thresholds; next_deadline names those instants, ticks find them, and the formula is the
fitted model's own."""

from __future__ import annotations

from functools import reduce

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.lifecycle.alive import WEEK_US, AliveRule
from projections.lifecycle.stages import DAY, Buy, LifecycleConfig, judge, next_deadline
from projections.view.fold import evolve, initial_view, micros, tick
from services.value.bgnbd import BgNbd
from tests.support.touchpoints import T0, at, purchase

CDNOW = (0.243, 4.414, 0.793, 2.426)  # FHL's published parameters (weeks)
RULE = AliveRule(*CDNOW, declining_below=0.5, lost_below=0.2)
CONFIG = LifecycleConfig(alive=RULE)
ZERO = micros(T0)


def buys(*days: float) -> tuple[Buy, ...]:
    return tuple(Buy(ZERO + round(d * DAY), f"p{i}", "EUR", 100_0000) for i, d in enumerate(days))


def test_p_alive_is_the_purchase_models_own() -> None:
    model = BgNbd(*CDNOW, log_likelihood=0.0, customers=0)
    history = buys(0, 10, 24, 60)
    for later in (60, 100, 200, 400):
        mine = RULE.p_alive(history, ZERO + later * DAY)
        x, t_x, big_t = 3, 60 * DAY / WEEK_US, later * DAY / WEEK_US
        odds = CDNOW[2] / (CDNOW[3] + x - 1) * ((CDNOW[1] + big_t) / (CDNOW[1] + t_x)) ** (CDNOW[0] + x)
        assert mine == pytest.approx(1 / (1 + odds), rel=1e-12)
        assert mine == pytest.approx(float(model.p_alive(np.array([x]), np.array([t_x]), np.array([big_t]))[0]),
                                     rel=1e-9)


@settings(max_examples=300)
@given(st.lists(st.integers(0, 2000), min_size=2, max_size=30, unique=True),
       st.sampled_from([0.9, 0.5, 0.3, 0.2, 0.05]))
def test_the_crossing_is_the_first_microsecond_below_the_threshold(days, p) -> None:  # type: ignore[no-untyped-def]
    history = buys(*sorted(days))
    moment = RULE.crossing(history, p)
    assert moment is not None and moment >= history[-1].at
    assert RULE.p_alive(history, moment) <= p * (1 + 1e-9)
    if moment > history[-1].at:
        assert RULE.p_alive(history, moment - 60_000_000) > p  # a minute before: still above


def test_a_repeat_buyer_declines_then_is_lost_when_p_alive_falls() -> None:
    history = buys(0, 14, 28, 42)
    declining, lost = RULE.crossing(history, 0.5), RULE.crossing(history, 0.2)
    assert history[-1].at < declining < lost < history[-1].at + 365 * DAY
    assert judge(history, None, declining - 1, CONFIG) == ("active", "repeat_purchases")
    assert judge(history, None, declining, CONFIG) == ("declining", "p_alive")
    assert judge(history, None, lost - 1, CONFIG) == ("declining", "p_alive")
    assert judge(history, None, lost, CONFIG) == ("lost", "p_alive")
    assert next_deadline(history, None, history[-1].at, CONFIG) == declining
    assert next_deadline(history, None, declining, CONFIG) == lost
    assert next_deadline(history, None, lost, CONFIG) is None


def test_one_time_buyers_keep_the_purchase_rules_the_model_cannot_see_them_leave() -> None:
    assert judge(buys(0), None, ZERO + 100 * DAY, CONFIG) == ("declining", "no_repeat_purchase")
    assert judge(buys(0), None, ZERO + 400 * DAY, CONFIG) == ("lost", "inactivity")


@settings(max_examples=200)
@given(st.lists(st.integers(0, 1500), min_size=1, max_size=12, unique=True), st.integers(0, 1500))
def test_the_stage_never_changes_before_the_deadline_and_changes_at_it(days, start) -> None:  # type: ignore[no-untyped-def]
    history = buys(*sorted(days))
    now = max(history[-1].at, ZERO + start * DAY)
    stage = judge(history, None, now, CONFIG)
    deadline = next_deadline(history, None, now, CONFIG)
    probes = [now + k * DAY for k in range(0, 800, 7)]
    for moment in probes:
        if deadline is None or moment < deadline:
            assert judge(history, None, moment, CONFIG)[0] == stage[0]
    if deadline is not None:
        assert judge(history, None, deadline - 1, CONFIG) == stage
        assert judge(history, None, deadline, CONFIG) != stage


def test_ticks_move_the_customer_at_the_crossing_instants_whatever_the_tick_rate() -> None:
    events = [purchase(f"p{d}", at(d)) for d in (0, 14, 28, 42)]
    view = reduce(lambda v, e: evolve(v, e, CONFIG), events, initial_view("c-1"))
    coarse = tick(view, ZERO + 1000 * DAY, CONFIG)
    fine = view
    for d in range(50, 1001, 5):
        fine = tick(fine, ZERO + d * DAY, CONFIG)
    moves = [(t.to_stage, t.reason, t.at) for t in coarse.lifecycle.history][-2:]
    assert moves == [(t.to_stage, t.reason, t.at) for t in fine.lifecycle.history][-2:]
    history = view.lifecycle.buys
    assert moves == [("declining", "p_alive", RULE.crossing(history, 0.5)), ("lost", "p_alive", RULE.crossing(history, 0.2))]


def test_thresholds_must_be_ordered_and_parameters_positive() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        AliveRule(*CDNOW, declining_below=0.2, lost_below=0.5)
    with pytest.raises(ValueError, match="positive"):
        AliveRule(0, 4.4, 0.8, 2.4)
