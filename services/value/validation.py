"""Calibration and holdout: does the purchase model predict purchases it has not seen?

The standard check of Fader, Hardie & Lee (and ``lifetimes``' calibration/holdout
utilities): fit BG/NBD on the purchases up to ``calibration_end``, then, for the customers
who had bought by then, compare the purchase days each made in the holdout
(``calibration_end``, ``observation_end``] with the purchases the model expected over that
length of time, averaged per number of repeat purchase days in the calibration period
(0, 1, …, ``censor`` and more). Purchase days, not orders, as everywhere the model is
fitted (``services.value.summary``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from services.value.bgnbd import WEEK_US, BgNbd, fit
from services.value.summary import DAY_US, distinct_rows, summarise

__all__ = ["Holdout", "holdout", "customer_numbers", "chart"]


@dataclass(frozen=True, slots=True)
class Holdout:
    model: BgNbd  # fitted on the calibration period
    holdout_weeks: float
    rows: list[dict[str, Any]]  # per calibration frequency: customers, actual and predicted mean holdout purchases
    actual: float  # holdout purchase days of the calibration customers, in total
    predicted: float

    def to_dict(self) -> dict[str, Any]:
        m = self.model
        return {"parameters": {"r": m.r, "alpha": m.alpha, "a": m.a, "b": m.b}, "unit": "week",
                "customers": m.customers, "holdout_weeks": self.holdout_weeks, "rows": self.rows,
                "actual": self.actual, "predicted": round(self.predicted, 2)}


def customer_numbers(customer_ids: list[str]) -> np.ndarray:
    """Integer customer numbers for customer ids (the same id, the same number)."""
    if not customer_ids:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.array(customer_ids, dtype=object), return_inverse=True)[1].astype(np.int64)


def holdout(customers: ArrayLike, at: ArrayLike, calibration_end: int, observation_end: int,
            censor: int = 7) -> Holdout:
    """The calibration/holdout table of purchases (customer numbers, instants µs)."""
    who, when = np.asarray(customers, dtype=np.int64), np.asarray(at, dtype=np.int64)
    calibration = summarise(who, when, calibration_end)
    model = fit(*distinct_rows(calibration.x, calibration.t_x, calibration.T), unit_us=WEEK_US)
    later = (when > calibration_end) & (when <= observation_end)
    pairs = np.unique(np.column_stack([who[later], when[later] // DAY_US]), axis=0)  # one per purchase day
    buyers, days = np.unique(pairs[:, 0], return_counts=True) if len(pairs) else (np.zeros(0, np.int64),) * 2
    actual = np.zeros(calibration.customers.size)
    found = np.searchsorted(calibration.customers, buyers)
    size = calibration.customers.size
    known = (found < size) & (calibration.customers[np.minimum(found, max(size - 1, 0))] == buyers)
    actual[found[known]] = days[known]
    weeks = (observation_end // DAY_US - calibration_end // DAY_US) * DAY_US / WEEK_US
    predicted = model.expected_purchases(weeks, calibration.x, calibration.t_x, calibration.T)
    group = np.minimum(calibration.x, censor).astype(np.int64)
    rows = [{"frequency": f"{k}+" if k == censor else str(k), "customers": int((group == k).sum()),
             "actual": round(float(actual[group == k].mean()), 4),
             "predicted": round(float(predicted[group == k].mean()), 4)}
            for k in range(censor + 1) if (group == k).any()]
    return Holdout(model, weeks, rows, float(actual.sum()), float(predicted.sum()))


def chart(rows: list[dict[str, object]], width: int = 480, height: int = 300) -> str:
    """Actual and predicted mean holdout purchases per calibration frequency, as SVG."""
    top = max(max(float(r["actual"]), float(r["predicted"])) for r in rows) or 1.0  # type: ignore[arg-type]
    step = (width - 60) / max(len(rows) - 1, 1)

    def line(key: str) -> str:
        points = ((40 + i * step, height - 30 - float(r[key]) / top * (height - 50))  # type: ignore[arg-type]
                  for i, r in enumerate(rows))
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)

    labels = "".join(f'<text x="{40 + i * step:.1f}" y="{height - 10}" font-size="11" text-anchor="middle">'
                     f'{r["frequency"]}</text>' for i, r in enumerate(rows))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<polyline points="{line("actual")}" fill="none" stroke="black" stroke-width="2"/>'
            f'<polyline points="{line("predicted")}" fill="none" stroke="steelblue" stroke-width="2" '
            f'stroke-dasharray="6 4"/>'
            f'{labels}<text x="40" y="16" font-size="12">holdout purchases per customer: actual (solid), '
            f'BG/NBD (dashed), by calibration repeat purchases</text></svg>')
