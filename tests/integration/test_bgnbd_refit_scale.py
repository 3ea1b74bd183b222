"""The BG/NBD refit of a million customers, purchases to parameters, recovers the
parameters the purchases were drawn with. Its speed is a benchmark figure (`make bench`,
tools/bench/value.py, docs/BENCHMARKS.md), not asserted here."""

from __future__ import annotations

import pytest

from services.value.bgnbd import fit
from services.value.summary import distinct_rows, summarise
from tools.bench.value import TRUE_PARAMETERS, purchases_drawn_from_the_model

CUSTOMERS = 1_000_000


def test_a_million_customers_drawn_from_the_model_give_back_its_parameters() -> None:
    customers, at, end = purchases_drawn_from_the_model(CUSTOMERS, seed=12)
    summaries = summarise(customers, at, end)
    x, t_x, T, weights = distinct_rows(summaries.x, summaries.t_x, summaries.T)
    model = fit(x, t_x, T, weights=weights)
    assert model.customers == CUSTOMERS and model.converged
    # Same-day repeat purchases merge into one occasion, so the estimates move a little.
    assert [model.r, model.alpha, model.a, model.b] == pytest.approx(TRUE_PARAMETERS, rel=0.1)
