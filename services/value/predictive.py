"""The predictive part of value cards, for many customers at once: each customer's
BG/NBD summary at the card's instant, P(alive), the purchases expected over the next 90
days and the model-based lifetime value (``services.value.gamma_gamma``).

Vectorised over customers, so exporting a page of cards costs a few array operations,
not a model evaluation per customer; one card is a page of one, so a card read alone and
the same card exported are the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from projections.codec import format_instant
from projections.view.state import instant_of
from services.value.bgnbd import WEEK_US
from services.value.gamma_gamma import lifetime_value
from services.value.job import ValueModel
from services.value.summary import summaries

__all__ = ["HORIZON_US", "Inputs", "Columns", "value_columns", "rounded_ltv", "finite", "value_sections", "value_section"]

HORIZON_US = 90 * 86_400 * 1_000_000

Inputs = tuple[int, int | None, int | None, float | None]
"""Per customer: distinct purchase days, first and last purchase (µs), mean repeat-purchase
value in the value currency (None: no repeat day, or not all in that currency)."""


def value_section(model: ValueModel | None, days: int, first: int | None, last: int | None, at: int,
                  repeat_value: float | None = None) -> dict[str, Any]:
    """The predictive part of one customer's card at instant ``at``."""
    return value_sections(model, [(days, first, last, repeat_value)], at)[0]


class Columns(NamedTuple):
    """The predictive figures of the customers at ``known`` (indices into the inputs: those
    with a purchase up to the instant), one array element each; the model's figures are
    None without a model, the spend figures None without a spend model."""

    known: list[int]
    x: NDArray[np.float64]
    t_x: NDArray[np.float64]
    T: NDArray[np.float64]
    p_alive: NDArray[np.float64] | None
    expected_90d: NDArray[np.float64] | None
    ltv: NDArray[np.float64] | None
    spend: NDArray[np.float64] | None


def value_columns(model: ValueModel | None, customers: Sequence[Inputs], at: int) -> Columns | None:
    """The predictive figures of many customers at instant ``at``, as arrays (None: no
    customer had bought by then)."""
    known = [i for i, (days, first, last, _) in enumerate(customers)
             if days and first is not None and last is not None and at >= first]
    if not known:
        return None
    rows = [customers[i] for i in known]
    first = np.array([r[1] for r in rows], dtype=np.int64)  # known: none is None
    last = np.array([r[2] for r in rows], dtype=np.int64)
    x, t_x, T = summaries(first, last, [r[0] for r in rows], at, WEEK_US)
    if model is None:
        return Columns(known, x, t_x, T, None, None, None, None)
    m = model.model
    p_alive = np.round(m.p_alive(x, t_x, T), 6)
    expected = np.round(m.expected_purchases_within(HORIZON_US, x, t_x, T), 6)
    spend, terms = model.spend, model.clv
    if spend is None:
        return Columns(known, x, t_x, T, p_alive, expected, None, None)
    value = np.array([np.nan if r[3] is None else r[3] for r in rows])
    seen = np.where(np.isnan(value), 0.0, x)  # no spend known in the value currency: the portfolio's mean
    money = np.nan_to_num(value)
    ltv = lifetime_value(m, spend, x, t_x, T, money, terms.months, terms.monthly_discount_rate, terms.margin_ratio,
                         spend_x=seen)
    return Columns(known, x, t_x, T, p_alive, expected, ltv, spend.expected_spend(seen, money))


def rounded_ltv(value: float) -> float | None:
    """A model lifetime value as the card shows it: to the cent, None when not finite."""
    return round(value, 2) if math.isfinite(value) else None


def finite(value: float) -> float | None:
    """A model figure as the card shows it: None when the model cannot evaluate it (a
    hypergeometric term overflowing on extreme parameters gives NaN), never NaN."""
    return value if math.isfinite(value) else None


def value_sections(model: ValueModel | None, customers: Sequence[Inputs], at: int) -> list[dict[str, Any]]:
    """The predictive part of each customer's card at instant ``at``."""
    end = None if model is None else format_instant(instant_of(model.observation_end))
    empty: dict[str, Any] = {"summary": None, "p_alive": None, "expected_purchases_90d": None,
                             "model_lifetime_value": None, "model_observation_end": end}
    out = [dict(empty) for _ in customers]
    columns = value_columns(model, customers, at)
    if columns is None:
        return out
    for j, i in enumerate(columns.known):
        out[i]["summary"] = {"frequency": float(columns.x[j]), "recency": float(columns.t_x[j]),
                             "T": float(columns.T[j]), "unit": "week"}
        if model is None or columns.p_alive is None or columns.expected_90d is None:
            continue
        out[i]["p_alive"] = finite(float(columns.p_alive[j]))
        out[i]["expected_purchases_90d"] = finite(float(columns.expected_90d[j]))
        if columns.ltv is not None and columns.spend is not None:
            out[i]["model_lifetime_value"] = {
                "value": rounded_ltv(float(columns.ltv[j])),
                "expected_spend_per_purchase": round(float(columns.spend[j]), 4), "method": "bgnbd_gamma_gamma",
                "months": model.clv.months, "monthly_discount_rate": model.clv.monthly_discount_rate,
                "margin_ratio": model.clv.margin_ratio}
    return out
