"""The periodic BG/NBD refit of a million customers, purchases to parameters, within the
issue's budget of 60 s on this 2-core machine (measured ~3.2 s: summaries 0.5 s for 2.9M
purchases, distinct rows 1.2 s, fit 1.5 s; drawing the purchases takes longer)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from services.value.bgnbd import fit
from services.value.summary import DAY_US, distinct_rows, summarise

TRUE = (0.25, 4.0, 0.8, 2.5)
CUSTOMERS = 1_000_000
START = 1_600_000_000_000_000


def purchases_drawn_from_the_model(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One row per purchase: customers acquired over three years buying by the model.

    Alive, a customer would make n ~ Poisson(λ · age) repeat purchases at uniform times;
    they drop out after the J-th, so the first min(n, J) of those times are real."""
    rng = np.random.default_rng(seed)
    lam, p = rng.gamma(TRUE[0], 1 / TRUE[1], CUSTOMERS), rng.beta(TRUE[2], TRUE[3], CUSTOMERS)
    first = START + rng.integers(0, 3 * 365, CUSTOMERS) * DAY_US
    end = START + 3 * 365 * DAY_US
    would = rng.poisson(lam * (end - first) / (7 * DAY_US))
    made = np.minimum(would, rng.geometric(p))
    owner = np.repeat(np.arange(CUSTOMERS), would)
    when = first[owner] + (rng.random(owner.size) * (end - first[owner])).astype(np.int64)
    order = np.lexsort((when, owner))
    owner, when = owner[order], when[order]
    rank = np.arange(owner.size) - np.repeat(np.cumsum(would) - would, would)
    real = rank < made[owner]
    return np.r_[np.arange(CUSTOMERS), owner[real]], np.r_[first, when[real]], end


def test_a_million_customers_are_refitted_within_a_minute() -> None:
    customers, at, end = purchases_drawn_from_the_model(seed=12)
    started = time.perf_counter()
    summaries = summarise(customers, at, end)
    x, t_x, T, weights = distinct_rows(summaries.x, summaries.t_x, summaries.T)
    model = fit(x, t_x, T, weights=weights)
    elapsed = time.perf_counter() - started
    assert model.customers == CUSTOMERS and model.converged
    assert elapsed < 60, f"refit took {elapsed:.1f}s"
    # Same-day repeat purchases merge into one occasion, so the estimates move a little.
    assert [model.r, model.alpha, model.a, model.b] == pytest.approx(TRUE, rel=0.1)
