"""Lifetime value by the seed formula, retention from the data, and the Pareto curve."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.value.ltv import (
    constant_margin_ltv,
    customers_holding,
    lifetime_value,
    pareto_curve,
    retention_rate,
    top_share,
)


def test_ltv_of_three_years_computed_by_hand() -> None:
    # 100·0.8/1.1 + 120·0.64/1.21 + 150·0.512/1.331
    expected = 72.72727272727273 + 63.47107438016529 + 57.70097670924117
    assert lifetime_value([100, 120, 150], retention=0.8, discount=0.10) == pytest.approx(expected, rel=1e-12)


def test_ltv_accepts_the_views_decimal_margins() -> None:
    assert lifetime_value([Decimal("50.00"), Decimal("50.00")], 0.5, 0.0) == pytest.approx(25 + 12.5)


def test_a_customer_surely_kept_at_no_cost_of_capital_is_worth_the_sum_of_margins() -> None:
    assert lifetime_value([10, 20, 30.5], retention=1.0, discount=0.0) == pytest.approx(60.5)


def test_a_customer_never_retained_is_worth_nothing_to_come() -> None:
    assert lifetime_value([1000, 1000], retention=0.0, discount=0.05) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1000), st.floats(0, 1), st.floats(0, 0.5), st.integers(0, 60))
def test_the_closed_form_for_a_constant_margin_equals_the_sum(margin: float, r: float, d: float, horizon: int) -> None:
    assert constant_margin_ltv(margin, r, d, horizon) == pytest.approx(
        lifetime_value([margin] * horizon, r, d), rel=1e-9, abs=1e-9
    )


def test_an_unbounded_horizon_tends_to_m_r_over_one_plus_d_minus_r() -> None:
    assert constant_margin_ltv(100, 0.8, 0.1, None) == pytest.approx(100 * 0.8 / (1.1 - 0.8))
    assert constant_margin_ltv(100, 0.8, 0.1, 400) == pytest.approx(constant_margin_ltv(100, 0.8, 0.1, None))
    with pytest.raises(ValueError):
        constant_margin_ltv(100, 1.0, 0.0, None)


def test_rates_outside_their_range_are_refused() -> None:
    with pytest.raises(ValueError):
        lifetime_value([1], retention=1.2, discount=0.1)
    with pytest.raises(ValueError):
        lifetime_value([1], retention=0.5, discount=-1)


def test_retention_is_the_share_of_last_periods_customers_active_again() -> None:
    assert retention_rate(["a", "b", "c", "d"], ["b", "d", "e", "f", "g"]) == 0.5
    assert retention_rate(["a", "a", "b"], ["a"]) == 0.5  # a customer counts once
    with pytest.raises(ValueError):
        retention_rate([], ["a"])


def test_the_pareto_curve_of_five_customers() -> None:
    assert pareto_curve([10, 50, 0, 30, 10]) == [(0.0, 0.0), (0.2, 0.5), (0.4, 0.8), (0.6, 0.9), (0.8, 1.0), (1.0, 1.0)]


def test_the_top_fifth_of_a_textbook_portfolio_holds_eighty_percent() -> None:
    values = [80.0 / 20] * 20 + [20.0 / 80] * 80  # 20 customers share 80, 80 share 20
    assert top_share(values, 0.2) == pytest.approx(0.8)
    assert customers_holding(values, 0.8) == pytest.approx(0.2)


def test_shares_between_two_customers_are_read_linearly() -> None:
    assert top_share([6, 3, 1], 0.5) == pytest.approx((0.6 + 0.9) / 2)  # 1.5 customers of 3
    assert customers_holding([6, 3, 1], 0.75) == pytest.approx(1.5 / 3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=200), st.floats(0, 1))
def test_top_share_and_customers_holding_read_the_same_curve(values, fraction) -> None:  # type: ignore[no-untyped-def]
    share = top_share(values, fraction)
    assert fraction - 1e-9 <= share + 1e-9 or sum(values) == 0  # the top holds at least its share
    if sum(values) > 0 and 0 < share < 1:
        assert top_share(values, customers_holding(values, share)) == pytest.approx(share, abs=1e-9)


def test_a_thinned_curve_lies_on_the_full_one() -> None:
    rnd = random.Random(11)
    values = [rnd.paretovariate(1.16) for _ in range(10_000)]
    thin = pareto_curve(values, points=101)
    assert len(thin) == 101 and thin[0] == (0.0, 0.0) and thin[-1] == (1.0, pytest.approx(1.0))
    full = pareto_curve(values)
    assert thin[20][1] == pytest.approx(full[2_000][1])
    assert thin[20][1] == pytest.approx(top_share(values, 0.2))
    assert all(a[1] <= b[1] for a, b in zip(thin, thin[1:]))


def test_negative_values_do_not_make_a_pareto_curve() -> None:
    with pytest.raises(ValueError):
        pareto_curve([10, -1])
