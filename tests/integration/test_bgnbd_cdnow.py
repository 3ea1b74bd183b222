"""Our BG/NBD against the published CDNOW results (Fader, Hardie & Lee 2005) and against
the `lifetimes` package fitted on the same data (it ships the CDNOW sample)."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter
from lifetimes.datasets import load_cdnow_summary
from lifetimes.utils import summary_data_from_transaction_data

from services.value.bgnbd import BgNbd, fit
from services.value.summary import summarise

PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LOG_LIKELIHOOD = -9582.4
CALIBRATION_END = datetime(1997, 9, 30, tzinfo=UTC)  # 39 weeks after 1 January 1997


@pytest.fixture(scope="module")
def cdnow():  # type: ignore[no-untyped-def]
    summary = load_cdnow_summary(index_col=[0])
    return tuple(summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))


@pytest.fixture(scope="module")
def ours(cdnow) -> BgNbd:  # type: ignore[no-untyped-def]
    return fit(*cdnow)


@pytest.fixture(scope="module")
def theirs(cdnow) -> BetaGeoFitter:  # type: ignore[no-untyped-def]
    return BetaGeoFitter().fit(*cdnow)


def test_the_fit_on_cdnow_gives_the_published_parameters_within_one_percent(ours: BgNbd) -> None:
    got = {"r": ours.r, "alpha": ours.alpha, "a": ours.a, "b": ours.b}
    assert got == pytest.approx(PUBLISHED, rel=0.01)
    assert ours.log_likelihood == pytest.approx(PUBLISHED_LOG_LIKELIHOOD, abs=0.05)
    assert ours.customers == 2357 and ours.converged


def test_the_fit_on_cdnow_agrees_with_lifetimes(ours: BgNbd, theirs: BetaGeoFitter) -> None:
    got = {"r": ours.r, "alpha": ours.alpha, "a": ours.a, "b": ours.b}
    assert got == pytest.approx(dict(theirs.params_), rel=1e-4)  # measured: within 3e-7


def test_p_alive_and_expected_purchases_agree_with_lifetimes_for_every_customer(
    cdnow, ours: BgNbd, theirs: BetaGeoFitter  # type: ignore[no-untyped-def]
) -> None:
    # Measured: P(alive) within 5e-8, expected purchases within 2e-6 (relative).
    assert ours.p_alive(*cdnow) == pytest.approx(theirs.conditional_probability_alive(*cdnow), rel=1e-4)
    for weeks in (13, 39):  # the next 90 days, and the paper's hold-out period
        expected = np.asarray(theirs.conditional_expected_number_of_purchases_up_to_time(weeks, *cdnow))
        assert ours.expected_purchases(weeks, *cdnow) == pytest.approx(expected, rel=1e-4)
    assert ours.expected_purchases_of_new_customer(39) == pytest.approx(
        theirs.expected_number_of_purchases_up_to_time(39), rel=1e-4
    )


def cdnow_transactions() -> tuple[np.ndarray, np.ndarray]:
    """CDNOW_sample.txt: customer, id, yyyymmdd, quantity, amount; instants in µs."""
    rows = np.loadtxt(files("lifetimes.datasets") / "CDNOW_sample.txt", dtype=np.int64, usecols=(1, 2))
    days = [datetime.strptime(str(d), "%Y%m%d").replace(tzinfo=UTC) for d in rows[:, 1]]
    return rows[:, 0], np.array([int(d.timestamp()) * 1_000_000 for d in days], dtype=np.int64)


def test_summaries_built_from_cdnow_purchases_are_the_published_summary() -> None:
    customers, at = cdnow_transactions()
    ours = summarise(customers, at, int(CALIBRATION_END.timestamp()) * 1_000_000)
    published = load_cdnow_summary(index_col=[0])
    assert ours.customers.tolist() == published.index.tolist()
    assert np.array_equal(ours.x, published["frequency"].to_numpy())
    assert np.round(ours.t_x, 2) == pytest.approx(published["recency"].to_numpy(), abs=1e-9)
    assert np.round(ours.T, 2) == pytest.approx(published["T"].to_numpy(), abs=1e-9)


def test_summaries_agree_with_lifetimes_own_builder() -> None:
    customers, at = cdnow_transactions()
    frame = pd.DataFrame({"customer": customers, "date": pd.to_datetime(at // 1_000_000, unit="s")})
    theirs = summary_data_from_transaction_data(
        frame, "customer", "date", observation_period_end="1997-09-30", freq="D", freq_multiplier=7
    )
    ours = summarise(customers, at, int(CALIBRATION_END.timestamp()) * 1_000_000)
    assert ours.customers.tolist() == theirs.index.tolist()
    assert ours.x == pytest.approx(theirs["frequency"].to_numpy())
    assert ours.t_x == pytest.approx(theirs["recency"].to_numpy())
    assert ours.T == pytest.approx(theirs["T"].to_numpy())


def test_standard_errors_of_both_fits_are_lifetimes_own(ours: BgNbd, theirs: BetaGeoFitter) -> None:
    from lifetimes import GammaGammaFitter
    from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

    from services.value.gamma_gamma import fit_spend

    # measured: within 5e-7 (a Hessian by differences of the analytic gradient against autograd's)
    assert ours.standard_errors == pytest.approx(theirs.summary["se(coef)"].tolist(), rel=1e-4)
    summary = load_cdnow_summary_data_with_monetary_value()
    repeat = summary[summary["frequency"] > 0]
    spend = fit_spend(repeat["frequency"], repeat["monetary_value"])
    reference = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    assert (spend.p, spend.q, spend.v) == pytest.approx(tuple(reference.params_), rel=1e-4)
    assert spend.standard_errors == pytest.approx(reference.summary["se(coef)"].tolist(), rel=1e-4)
