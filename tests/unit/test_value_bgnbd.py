"""The BG/NBD model: likelihood, its gradient, the fit, and the predictions, checked
against the model's own definition (direct formula, simulation)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import check_grad
from scipy.special import beta, gamma, hyp2f1

from services.value.bgnbd import WEEK_US, BgNbd, _objective, fit, log_likelihood
from services.value.summary import DAY_US, distinct_rows

TRUE = (0.25, 4.0, 0.8, 2.5)  # close to the CDNOW estimates, weeks


def simulate(theta, customers: int, seed: int, horizon: float = 0.0):  # type: ignore[no-untyped-def]
    """Customers drawn from the model, observed for 27–39 weeks after their first purchase,
    and their purchases in the ``horizon`` weeks after that. While alive a customer's
    purchases are a Poisson process, so given n purchases by T their times are uniform
    order statistics: the k-th of n lies at T·Beta(k, n−k+1)."""
    r, alpha, a, b = theta
    rng = np.random.default_rng(seed)
    lam, p = rng.gamma(r, 1 / alpha, customers), rng.beta(a, b, customers)
    T = rng.uniform(27, 39, customers)
    dies_after = rng.geometric(p)  # the repeat purchase after which the customer drops out
    n = rng.poisson(lam * T)
    x = np.minimum(n, dies_after)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), n - x + 1), 0.0)
    later = np.where(dies_after > n, np.minimum(dies_after - n, rng.poisson(lam * horizon)), 0)
    return x.astype(float), t_x, T, later, dies_after > n  # the last: still alive at T


def test_the_log_likelihood_is_the_papers_formula() -> None:
    r, alpha, a, b = TRUE
    for x, t_x, T in [(0, 0.0, 30.0), (1, 2.5, 30.0), (7, 28.0, 38.0)]:
        common = beta(a, b + x) / beta(a, b) * gamma(r + x) * alpha**r / gamma(r)
        direct = common * (alpha + T) ** -(r + x)
        if x > 0:
            dropped = beta(a + 1, b + x - 1) / beta(a, b) * gamma(r + x) * alpha**r / gamma(r)
            direct += dropped * (alpha + t_x) ** -(r + x)
        assert log_likelihood(TRUE, [x], [t_x], [T])[0] == pytest.approx(np.log(direct), rel=1e-12)


@pytest.mark.parametrize("log_theta", [[0, 0, 0, 0], [-1.4, 1.4, -0.2, 0.9], [1.0, -2.0, 2.0, -1.0]])
def test_the_analytic_gradient_matches_finite_differences(log_theta: list[float]) -> None:
    x, t_x, T, *_ = simulate(TRUE, 2_000, seed=1)
    w = np.random.default_rng(2).integers(1, 5, x.size).astype(float)
    f = lambda v: _objective(v, x, t_x, T, w)[0]  # noqa: E731
    g = lambda v: _objective(v, x, t_x, T, w)[1]  # noqa: E731
    assert check_grad(f, g, np.array(log_theta, dtype=float)) < 1e-5 * max(1.0, np.abs(g(np.array(log_theta))).max())


def test_the_fit_recovers_the_parameters_customers_were_drawn_from() -> None:
    x, t_x, T, *_ = simulate(TRUE, 40_000, seed=3)
    model = fit(x, t_x, T)
    assert model.converged and model.customers == 40_000
    assert [model.r, model.alpha, model.a, model.b] == pytest.approx(TRUE, rel=0.05)


def test_fitting_distinct_rows_with_weights_gives_the_fit_of_every_customer() -> None:
    x, t_x, T, *_ = simulate(TRUE, 5_000, seed=4)
    x, t_x, T = x, np.round(t_x), np.round(T)  # whole weeks: many customers share a row
    rows = distinct_rows(x, t_x, T)
    assert rows[3].sum() == 5_000 and rows[0].size < 2_000
    every, grouped = fit(x, t_x, T), fit(*rows[:3], weights=rows[3])
    params = lambda m: [m.r, m.alpha, m.a, m.b]  # noqa: E731
    assert params(grouped) == pytest.approx(params(every), rel=1e-5)
    assert grouped.log_likelihood == pytest.approx(every.log_likelihood, rel=1e-9)


def test_a_new_customer_is_expected_to_buy_what_simulated_customers_buy() -> None:
    model = BgNbd(*TRUE, log_likelihood=0.0, customers=0)
    rng = np.random.default_rng(5)
    r, alpha, a, b = TRUE
    n = 400_000
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    bought = np.minimum(rng.poisson(lam * 52), rng.geometric(p))
    stderr = bought.std() / np.sqrt(n)
    assert abs(model.expected_purchases_of_new_customer(52) - bought.mean()) < 4 * stderr


def test_a_customer_who_has_just_bought_for_the_first_time_is_expected_to_buy_like_a_new_one() -> None:
    model = BgNbd(*TRUE, log_likelihood=0.0, customers=0)
    assert model.expected_purchases(39, [0], [0], [0])[0] == pytest.approx(model.expected_purchases_of_new_customer(39))


def test_expected_purchases_of_silent_customers_match_a_simulation() -> None:
    model = BgNbd(*TRUE, log_likelihood=0.0, customers=0)
    x, t_x, T, later, _ = simulate(TRUE, 400_000, seed=6, horizon=13)
    silent = x == 0
    predicted = model.expected_purchases(13, x[silent], t_x[silent], T[silent]).mean()
    stderr = later[silent].std() / np.sqrt(silent.sum())
    assert abs(predicted - later[silent].mean()) < 4 * stderr


def test_p_alive_is_one_without_repeat_purchase_and_falls_as_the_customer_stays_silent() -> None:
    model = BgNbd(*TRUE, log_likelihood=0.0, customers=0)
    assert model.p_alive([0, 0], [0, 0], [1, 50]).tolist() == [1.0, 1.0]
    silent_longer = model.p_alive([3, 3, 3], [10, 10, 10], [10, 20, 40])
    assert silent_longer[0] == pytest.approx(1 / (1 + 0.8 / 4.5)) and np.all(np.diff(silent_longer) < 0)


def test_p_alive_is_the_share_of_simulated_repeat_buyers_still_alive() -> None:
    model = BgNbd(*TRUE, log_likelihood=0.0, customers=0)
    x, t_x, T, _, alive = simulate(TRUE, 400_000, seed=8)
    for group in (x > 0, (x > 0) & (T - t_x > 20), x >= 5):
        share = alive[group].mean()
        stderr = np.sqrt(share * (1 - share) / group.sum())
        assert abs(model.p_alive(x[group], t_x[group], T[group]).mean() - share) < 4 * stderr


def test_fitted_parameters_round_trip_through_json() -> None:
    model = fit(*simulate(TRUE, 1_000, seed=7)[:3])
    assert BgNbd.from_dict(json.loads(json.dumps(model.to_dict()))) == model


def test_summaries_that_cannot_come_from_purchases_are_refused() -> None:
    with pytest.raises(ValueError):
        fit([1], [5.0], [3.0])  # last purchase after the end
    with pytest.raises(ValueError):
        fit([0], [2.0], [3.0])  # no repeat purchase but a recency
    with pytest.raises(ValueError):
        fit([], [], [])


def test_the_same_purchases_in_days_or_in_weeks_predict_the_same_next_90_days() -> None:
    x, t_x, T, *_ = simulate(TRUE, 3_000, seed=9)
    in_weeks = fit(x, t_x, T)
    in_days = fit(x, t_x * 7, T * 7, unit_us=DAY_US)
    assert in_days.alpha == pytest.approx(7 * in_weeks.alpha, rel=1e-5)
    ninety_days = 90 * DAY_US
    assert in_days.expected_purchases_within(ninety_days, x, t_x * 7, T * 7) == pytest.approx(
        in_weeks.expected_purchases_within(ninety_days, x, t_x, T), rel=1e-5
    )
    assert in_weeks.unit_us == WEEK_US and BgNbd.from_dict(in_days.to_dict()).unit_us == DAY_US


def papers_eq_10(model: BgNbd, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """FHL eq. 10 exactly as printed (fine until x reaches the thousands)."""
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    ahead = (alpha + T) / (alpha + T + t)
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        bracket = 1 - ahead ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    return (a + b + x - 1) / (a - 1) * bracket * model.p_alive(x, t_x, T)


def test_expected_purchases_are_the_papers_formula_and_stay_finite_for_heavy_buyers() -> None:
    model = BgNbd(0.243, 4.414, 0.793, 2.426, log_likelihood=0.0, customers=0)
    x, t_x, T = np.array([0, 1, 7, 50, 300.0]), np.array([0, 1, 30, 100, 150.0]), np.full(5, 156.0)
    for t in (13, 52, 520):
        assert model.expected_purchases(t, x, t_x, T) == pytest.approx(papers_eq_10(model, t, x, t_x, T), rel=1e-9)
    heavy, last, age = np.array([1000.0, 3000.0]), np.array([155.0, 155.9]), np.array([156.0, 156.0])
    assert np.isnan(papers_eq_10(model, 52, heavy, last, age)).any()  # what the transformation avoids
    expected = model.expected_purchases(13, heavy, last, age)
    rate_while_alive = (model.r + heavy) / (model.alpha + age)  # E[λ | x, T] for a buyer this regular
    assert expected == pytest.approx(13 * rate_while_alive * model.p_alive(heavy, last, age), rel=0.1)
    assert np.isfinite(model.expected_purchases(520, heavy, last, age)).all()
