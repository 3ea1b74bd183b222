"""The population histogram answers quantiles within its documented error, and adds and
removes exactly, so RFM quintiles can follow customers' figures as they change."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.value.quantiles import Histogram, LinearBuckets, LogBuckets

QUINTILES = [0.2, 0.4, 0.6, 0.8]
DAY_US = 86_400 * 1_000_000


def lower_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def histogram_of(values: list[float], bucketing=LogBuckets(0.01)) -> Histogram:  # type: ignore[no-untyped-def]
    h = Histogram(bucketing)
    for v in values:
        h.add(v)
    return h


def assert_within_relative(h: Histogram, values: list[float], alpha: float) -> None:
    for q in [0.0, 0.01, *QUINTILES, 0.5, 0.99, 1.0]:
        exact = lower_quantile(values, q)
        assert abs(h.quantile(q) - exact) <= alpha * abs(exact) + 1e-12, (q, exact, h.quantile(q))


@pytest.mark.parametrize("alpha", [0.01, 0.05])
def test_log_buckets_answer_quantiles_of_a_skewed_spend_within_alpha(alpha: float) -> None:
    rnd = random.Random(6)
    spend = [round(rnd.lognormvariate(4, 1.5), 2) for _ in range(20_000)]
    assert_within_relative(histogram_of(spend, LogBuckets(alpha)), spend, alpha)


def test_log_buckets_answer_quantiles_of_small_integer_frequencies_within_alpha() -> None:
    rnd = random.Random(7)
    frequencies = [1 + int(rnd.expovariate(0.4)) for _ in range(10_000)]
    assert_within_relative(histogram_of(frequencies), frequencies, 0.01)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-1e7, max_value=1e7, allow_nan=False), min_size=1, max_size=300),
       st.floats(min_value=0, max_value=1))
def test_any_quantile_of_any_values_is_within_one_percent(values: list[float], q: float) -> None:
    values = [0.0 if abs(v) <= 1e-9 else v for v in values]  # the documented zero bucket
    exact = lower_quantile(values, q)
    assert abs(histogram_of(values).quantile(q) - exact) <= 0.01 * abs(exact) + 1e-12


def test_the_error_bound_is_tight_so_a_coarser_histogram_does_miss_it() -> None:
    # Guards the test above: with alpha = 0.05 some answers are more than 1% off.
    rnd = random.Random(8)
    spend = [rnd.uniform(1, 1000) for _ in range(5_000)]
    coarse = histogram_of(spend, LogBuckets(0.05))
    errors = [abs(coarse.quantile(q) - lower_quantile(spend, q)) / lower_quantile(spend, q) for q in QUINTILES]
    assert max(errors) > 0.01
    assert max(errors) <= 0.05


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.booleans()), max_size=200))
def test_removing_values_leaves_the_histogram_of_the_survivors(moves: list[tuple[float, bool]]) -> None:
    h = Histogram(LogBuckets(0.01))
    for value, _ in moves:
        h.add(value)
    for value, leaves in moves:
        if leaves:
            h.remove(value)
    assert h == histogram_of([v for v, leaves in moves if not leaves])
    assert len(h) == sum(1 for _, leaves in moves if not leaves)


def test_a_customer_moving_bucket_is_a_remove_then_an_add() -> None:
    h = histogram_of([10.0, 20.0, 30.0, 40.0, 50.0])
    h.remove(10.0)
    h.add(60.0)  # the customer who had spent 10 now has spent 60
    assert h == histogram_of([20.0, 30.0, 40.0, 50.0, 60.0])
    assert h.quantile(0.0) == pytest.approx(20.0, rel=0.01)


def test_removing_a_value_never_added_is_refused_and_changes_nothing() -> None:
    h = histogram_of([5.0])
    with pytest.raises(ValueError):
        h.remove(500.0)
    assert h == histogram_of([5.0])


def test_histograms_of_two_partitions_merge_into_the_portfolio() -> None:
    rnd = random.Random(9)
    left = [rnd.uniform(0, 100) for _ in range(500)]
    right = [rnd.uniform(50, 5000) for _ in range(700)]
    merged = histogram_of(left)
    merged.merge(histogram_of(right))
    assert merged == histogram_of(left + right)
    with pytest.raises(ValueError):
        merged.merge(Histogram(LogBuckets(0.02)))


def test_the_serialised_form_is_json_and_round_trips_whatever_the_insertion_order() -> None:
    values = [3.5, 0.0, -12.0, 3.5, 7e5, 1.0]
    h = histogram_of(values)
    text = json.dumps(h.to_dict())
    again = Histogram.from_dict(json.loads(text))
    assert again == h and len(again) == len(values)
    assert json.dumps(histogram_of(list(reversed(values))).to_dict()) == text


def test_linear_buckets_give_last_purchase_quantiles_to_the_day() -> None:
    rnd = random.Random(10)
    start = 1_700_000_000_000_000
    instants = [start + rnd.randrange(0, 3 * 365 * DAY_US) for _ in range(10_000)]
    h = histogram_of(instants, LinearBuckets(DAY_US))
    for q in QUINTILES:
        exact = lower_quantile(instants, q)
        assert 0 <= exact - h.quantile(q) < DAY_US
    assert Histogram.from_dict(json.loads(json.dumps(h.to_dict()))) == h


def test_an_empty_histogram_has_no_quantile() -> None:
    with pytest.raises(ValueError):
        Histogram(LogBuckets()).quantile(0.5)
