"""The purchase-model refit job: BG/NBD fitted on every customer's purchase history.

Input: per customer who bought, (first purchase, last purchase) in µs and the number of
distinct purchase days, read from the view store (both runtimes keep them on the view).
BG/NBD counts *repeat purchase days*: orders on one day are one purchase occasion, as in
the literature and ``lifetimes``; ``services.value.summary.summaries`` turns the three
figures into (x, t_x, T) in weeks, for the fit and for every card alike. Identical rows
are fitted once with their weight, so a million customers fit in seconds
(docs/BENCHMARKS.md, docs/VALUE.md).

Observation time is data: ``end`` is the platform's time (the latest clock tick folded)
or an instant the caller names, never the wall clock, so an imported or backfilled
history gets the model of its own period.

Output: ``ValueModel`` — the fitted parameters, the observation end and where it came
from, the data window (first and last purchase seen) and a fingerprint of the inputs
(two fits with the same fingerprint and end saw the same histories), stored by the
platform and read by the API, which gives each customer P(alive), the purchases
expected over the next 90 days and a lifetime value at read time, at the card's stated
time base (``services.value.predictive``).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import orjson

from projections.codec import format_instant
from projections.view.state import instant_of
from services.ports import History
from services.value.bgnbd import WEEK_US, BgNbd, fit
from services.value.gamma_gamma import GammaGamma, fit_spend, lifetime_value
from services.value.summary import distinct_rows, summaries

__all__ = ["ValueModel", "ClvTerms", "NotEnoughHistory", "refit", "MIN_REPEAT_BUYERS"]

MIN_REPEAT_BUYERS = 20  # below this the four parameters are not identifiable


class NotEnoughHistory(ValueError):
    """Too few customers with repeat purchases to fit the model."""


@dataclass(frozen=True, slots=True)
class ClvTerms:
    """How the model-based lifetime value is discounted (settings ``value_clv_*``,
    ``value_margin_ratio``), recorded with the model so every card uses the same terms."""

    months: int = 12
    monthly_discount_rate: float = 0.01
    margin_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class ValueModel:
    model: BgNbd
    observation_end: int  # µs: the end of the observation, T is measured to it
    end_source: str  # "platform_clock" (the latest tick folded) or "explicit" (the caller's)
    first_purchase: int  # µs: the data window, the earliest and latest purchase fitted on
    last_purchase: int
    inputs: str  # sha256 of the histories fitted on (sorted), so two fits can be compared
    fitted_at: int  # µs, the wall clock when the job ran: an operational fact, never a model input
    customers: int
    repeat_buyers: int
    purchases_after_end: int  # customers with purchases after the end, their repeat count includes them
    seconds: float
    spend: GammaGamma | None = None  # None: too few repeat buyers with a spend, or q <= 1
    clv: ClvTerms = ClvTerms()
    portfolio_clv: float | None = None  # every customer's model-based lifetime value at the end, summed

    def to_json(self) -> bytes:
        return orjson.dumps({**asdict(self), "model": self.model.to_dict(),
                             "spend": None if self.spend is None else self.spend.to_dict()})

    @classmethod
    def from_json(cls, raw: bytes) -> ValueModel | None:
        """The stored model; None for one stored before observation time was recorded
        (fitted to the wall clock: not worth reading, the next refit replaces it)."""
        d = orjson.loads(raw)
        if "observation_end" not in d:
            return None
        spend = d.get("spend")
        return cls(**{**d, "model": BgNbd.from_dict(d["model"]), "clv": ClvTerms(**d.get("clv", {})),
                      "spend": None if spend is None else GammaGamma.from_dict(spend)})

    def summary(self) -> dict[str, Any]:
        m = self.model
        return {"observation_end": _iso(self.observation_end), "observation_end_source": self.end_source,
                "data_window": {"first_purchase": _iso(self.first_purchase), "last_purchase": _iso(self.last_purchase)},
                "inputs_fingerprint": self.inputs, "fitted_at": _iso(self.fitted_at), "customers": self.customers,
                "repeat_buyers": self.repeat_buyers, "customers_with_purchases_after_end": self.purchases_after_end,
                "seconds": self.seconds, "converged": m.converged,
                "parameters": {"r": m.r, "alpha": m.alpha, "a": m.a, "b": m.b}, "unit": "week",
                "standard_errors": _named(("r", "alpha", "a", "b"), m.standard_errors),
                "log_likelihood": m.log_likelihood, "spend_model": self._spend_summary(),
                "lifetime_value": {"method": "bgnbd_gamma_gamma", "months": self.clv.months, "month_days": 30,
                                   "monthly_discount_rate": self.clv.monthly_discount_rate,
                                   "margin_ratio": self.clv.margin_ratio,
                                   "portfolio": None if self.portfolio_clv is None else round(self.portfolio_clv, 2)}}

    def _spend_summary(self) -> dict[str, Any] | None:
        s = self.spend
        if s is None:
            return None
        return {"model": "gamma_gamma", "parameters": {"p": s.p, "q": s.q, "v": s.v},
                "standard_errors": _named(("p", "q", "v"), s.standard_errors), "customers": s.customers,
                "log_likelihood": s.log_likelihood, "converged": s.converged,
                "independence": {"correlation_frequency_spend": s.independence,
                                 "note": "the spend model assumes spend does not depend on purchase frequency: "
                                         "a correlation near 0 supports it"}}


def _named(names: tuple[str, ...], values: tuple[float, ...] | None) -> dict[str, float] | None:
    return None if values is None else dict(zip(names, values, strict=True))


def _iso(us: int) -> str:
    return format_instant(instant_of(us))


def fingerprint(rows: np.ndarray) -> str:
    """sha256 of the rows in a canonical order (whatever order the store read them in)."""
    ordered = rows[np.lexsort(rows.T[::-1])] if len(rows) else rows
    return hashlib.sha256(np.ascontiguousarray(ordered, dtype="<i8").tobytes()).hexdigest()


def refit(histories: Iterable[History], end: int, end_source: str = "explicit",
          fitted_at: int = 0, terms: ClvTerms = ClvTerms()) -> ValueModel:
    """Fit BG/NBD on (first purchase µs, last purchase µs, distinct purchase days) of every
    customer who bought, observed until ``end`` (µs), and Gamma-Gamma on the repeat
    buyers' mean repeat-purchase value; customers whose first purchase is after ``end``
    are left out. Raises ``NotEnoughHistory``."""
    started = time.perf_counter()
    kept = [h for h in histories if h[2] > 0 and h[0] <= end]
    rows = np.array([h[:3] for h in kept], dtype=np.int64).reshape(-1, 3)
    value = np.array([np.nan if h[3] is None else h[3] for h in kept], dtype=np.float64)
    first, last = rows[:, 0], np.minimum(rows[:, 1], end)
    x, t_x, T = summaries(first, last, rows[:, 2], end, WEEK_US)
    repeat = int((x > 0).sum())
    if repeat < MIN_REPEAT_BUYERS:
        raise NotEnoughHistory(f"{repeat} customers with repeat purchases; the model needs {MIN_REPEAT_BUYERS}")
    model = fit(*distinct_rows(x, t_x, T), unit_us=WEEK_US)
    spend, total = _spend(model, x, t_x, T, value, terms)
    return ValueModel(model, end, end_source, int(first.min()), int(last.max()), fingerprint(rows), fitted_at,
                      len(rows), repeat, int((rows[:, 1] > end).sum()), round(time.perf_counter() - started, 3),
                      spend, terms, total)


def _spend(model: BgNbd, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, value: np.ndarray,
           terms: ClvTerms) -> tuple[GammaGamma | None, float | None]:
    """The spend model on the repeat buyers with a spend, and the portfolio's lifetime value."""
    known = ~np.isnan(value)
    try:
        spend = fit_spend(x[known], value[known])
    except ValueError:
        return None, None
    if spend.q <= 1:  # the population mean v·p/(q − 1) does not exist
        return None, None
    seen = np.where(known, x, 0.0)  # without a spend in the value currency: the portfolio's mean
    clv = lifetime_value(model, spend, x, t_x, T, np.nan_to_num(value), terms.months, terms.monthly_discount_rate,
                         terms.margin_ratio, spend_x=seen)
    total = float(clv.sum())
    return spend, total if math.isfinite(total) else None  # a degenerate purchase model: no figure, not NaN
