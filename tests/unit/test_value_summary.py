"""BG/NBD summaries from purchase instants: one customer at a time and all at once agree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.value.summary import DAY_US, WEEK_US, distinct_rows, summarise, summary_of

START = 1_700_006_400_000_000  # a UTC midnight
END = START + 280 * DAY_US


def test_a_customers_summary_counts_purchase_days_in_weeks() -> None:
    bought = [START + 3_600_000_000, START + 17 * DAY_US, START + 17 * DAY_US + 5, START + 70 * DAY_US]
    x, t_x, T = summary_of(bought, END)
    assert (x, t_x, T) == (2.0, pytest.approx(10.0), pytest.approx(40.0))  # two later days; 70 days; 280 days


def test_purchases_after_the_end_of_observation_do_not_count() -> None:
    assert summary_of([START, END + DAY_US], END) == (0.0, 0.0, 40.0)
    assert summarise([1, 1], [START, END + DAY_US], END).x.tolist() == [0.0]
    with pytest.raises(ValueError):
        summary_of([END + DAY_US], END)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(START, END + 20 * DAY_US)), max_size=150))
def test_the_vectorised_summaries_are_the_per_customer_ones(purchases: list[tuple[int, int]]) -> None:
    summaries = summarise([c for c, _ in purchases], [at for _, at in purchases], END)
    by_customer: dict[int, list[int]] = {}
    for customer, at in purchases:
        if at <= END:
            by_customer.setdefault(customer, []).append(at)
    assert summaries.customers.tolist() == sorted(by_customer)
    for i, customer in enumerate(summaries.customers.tolist()):
        expected = summary_of(by_customer[customer], END)
        assert (summaries.x[i], summaries.t_x[i], summaries.T[i]) == pytest.approx(expected, rel=1e-12)


def test_the_period_and_unit_are_the_callers() -> None:
    hourly = summarise([7, 7, 7], [START, START + 3_600_000_000, START + 2 * 3_600_000_000], START + DAY_US,
                       unit_us=DAY_US, period_us=3_600_000_000)
    assert (hourly.x[0], hourly.t_x[0], hourly.T[0]) == (2.0, pytest.approx(2 / 24), pytest.approx(1.0))
    assert summarise([7], [START], START + WEEK_US).T.tolist() == [1.0]


def test_distinct_rows_weigh_each_row_by_its_customers() -> None:
    x, t_x, T, w = distinct_rows([0, 2, 0, 2, 1], [0, 5, 0, 5, 1], [9, 9, 9, 9, 9])
    assert list(zip(x, t_x, T, w)) == [(0, 0, 9, 2), (1, 1, 9, 1), (2, 5, 9, 2)]
    rng = np.random.default_rng(1)
    big = rng.integers(0, 5, (3, 10_000))
    assert distinct_rows(*big)[3].sum() == 10_000
