"""The spend model on its own: the analytic gradient is the likelihood's, the expected
spend shrinks a customer's own mean towards the portfolio's, and the lifetime value is the
discounted sum of the months' expected purchases times that spend."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from services.value.bgnbd import BgNbd
from services.value.gamma_gamma import GammaGamma, _negative_mean_log_likelihood, fit_spend, lifetime_value


def test_the_gradient_is_the_derivative_of_the_likelihood() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(1, 20, 300).astype(float)
    m = rng.gamma(4.0, 10.0, 300)
    w = rng.integers(1, 4, 300).astype(float)
    at = np.log([3.0, 4.0, 20.0])
    _, grad = _negative_mean_log_likelihood(at, x, m, w)
    numeric = approx_fprime(at, lambda p: _negative_mean_log_likelihood(p, x, m, w)[0], 1e-7)
    assert grad == pytest.approx(numeric, rel=1e-4, abs=1e-6)


def test_a_fit_on_simulated_spend_recovers_the_parameters() -> None:
    rng = np.random.default_rng(11)
    p, q, v = 6.0, 4.0, 15.0
    n = 30_000
    x = rng.integers(1, 10, n)
    nu = rng.gamma(q, 1 / v, n)  # each customer's spend rate
    m = np.array([rng.gamma(p, 1 / rate, k).mean() for rate, k in zip(nu, x, strict=True)])
    fitted = fit_spend(x, m)
    assert (fitted.p, fitted.q, fitted.v) == pytest.approx((p, q, v), rel=0.05)
    assert abs(fitted.independence or 1.0) < 0.05 and fitted.converged


def test_expected_spend_is_the_portfolio_mean_without_a_repeat_and_nears_the_own_mean_with_many() -> None:
    model = GammaGamma(6.0, 4.0, 15.0, 0.0, 1, True, 0.0)
    population = 15.0 * 6.0 / 3.0
    assert model.expected_spend(0, 0.0) == pytest.approx(population)
    assert abs(model.expected_spend(500, 80.0) - 80.0) < abs(model.expected_spend(2, 80.0) - 80.0)


def test_the_lifetime_value_discounts_each_month_s_expected_purchases() -> None:
    bgnbd = BgNbd(0.25, 4.0, 0.8, 2.5, 0.0, 1)
    spend = GammaGamma(6.0, 4.0, 15.0, 0.0, 1, True, 0.0)
    x, t_x, T, m = 3.0, 20.0, 30.0, 40.0
    month = 30 / 7
    by_hand = sum(float(spend.expected_spend(x, m)) * (float(bgnbd.expected_purchases(i * month, x, t_x, T))
                  - float(bgnbd.expected_purchases((i - 1) * month, x, t_x, T))) / 1.01 ** i for i in range(1, 13))
    assert float(lifetime_value(bgnbd, spend, x, t_x, T, m, 12, 0.01)) == pytest.approx(by_hand, rel=1e-12)
    assert float(lifetime_value(bgnbd, spend, x, t_x, T, m, 12, 0.01, margin_ratio=0.3)) == pytest.approx(
        0.3 * by_hand, rel=1e-12)
