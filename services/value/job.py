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
platform and read by the API, which gives each customer P(alive) and the purchases
expected over the next 90 days at read time, at the card's stated time base.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import orjson

from projections.codec import format_instant
from projections.view.state import instant_of
from services.value.bgnbd import WEEK_US, BgNbd, fit
from services.value.summary import distinct_rows, summaries

__all__ = ["ValueModel", "NotEnoughHistory", "refit", "MIN_REPEAT_BUYERS", "value_section", "HORIZON_US"]

MIN_REPEAT_BUYERS = 20  # below this the four parameters are not identifiable
HORIZON_US = 90 * 86_400 * 1_000_000


class NotEnoughHistory(ValueError):
    """Too few customers with repeat purchases to fit the model."""


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

    def to_json(self) -> bytes:
        return orjson.dumps({**asdict(self), "model": self.model.to_dict()})

    @classmethod
    def from_json(cls, raw: bytes) -> ValueModel | None:
        """The stored model; None for one stored before observation time was recorded
        (fitted to the wall clock: not worth reading, the next refit replaces it)."""
        d = orjson.loads(raw)
        if "observation_end" not in d:
            return None
        return cls(**{**d, "model": BgNbd.from_dict(d["model"])})

    def summary(self) -> dict[str, Any]:
        m = self.model
        return {"observation_end": _iso(self.observation_end), "observation_end_source": self.end_source,
                "data_window": {"first_purchase": _iso(self.first_purchase), "last_purchase": _iso(self.last_purchase)},
                "inputs_fingerprint": self.inputs, "fitted_at": _iso(self.fitted_at), "customers": self.customers,
                "repeat_buyers": self.repeat_buyers, "customers_with_purchases_after_end": self.purchases_after_end,
                "seconds": self.seconds, "converged": m.converged,
                "parameters": {"r": m.r, "alpha": m.alpha, "a": m.a, "b": m.b}, "unit": "week",
                "log_likelihood": m.log_likelihood}


def _iso(us: int) -> str:
    return format_instant(instant_of(us))


def fingerprint(rows: np.ndarray) -> str:
    """sha256 of the rows in a canonical order (whatever order the store read them in)."""
    ordered = rows[np.lexsort(rows.T[::-1])] if len(rows) else rows
    return hashlib.sha256(np.ascontiguousarray(ordered, dtype="<i8").tobytes()).hexdigest()


def refit(histories: Iterable[tuple[int, int, int]], end: int, end_source: str = "explicit",
          fitted_at: int = 0) -> ValueModel:
    """Fit on (first purchase µs, last purchase µs, distinct purchase days) of every
    customer who bought, observed until ``end`` (µs); customers whose first purchase is
    after ``end`` are left out. Raises ``NotEnoughHistory``."""
    started = time.perf_counter()
    rows = np.array([h for h in histories if h[2] > 0 and h[0] <= end], dtype=np.int64).reshape(-1, 3)
    first, last = rows[:, 0], np.minimum(rows[:, 1], end)
    x, t_x, T = summaries(first, last, rows[:, 2], end, WEEK_US)
    repeat = int((x > 0).sum())
    if repeat < MIN_REPEAT_BUYERS:
        raise NotEnoughHistory(f"{repeat} customers with repeat purchases; the model needs {MIN_REPEAT_BUYERS}")
    model = fit(*distinct_rows(x, t_x, T), unit_us=WEEK_US)
    return ValueModel(model, end, end_source, int(first.min()), int(last.max()), fingerprint(rows), fitted_at,
                      len(rows), repeat, int((rows[:, 1] > end).sum()), round(time.perf_counter() - started, 3))


def value_section(model: ValueModel | None, days: int, first: int | None, last: int | None,
                  at: int) -> dict[str, Any]:
    """The predictive part of a customer's value at instant ``at``, from their distinct
    purchase days and first and last purchase (the summary the model is fitted on)."""
    end = None if model is None else _iso(model.observation_end)
    if not days or first is None or last is None or at < first:
        return {"summary": None, "p_alive": None, "expected_purchases_90d": None, "model_observation_end": end}
    x, t_x, T = (float(c[0]) for c in summaries([first], [last], [days], at, WEEK_US))
    summary = {"frequency": x, "recency": t_x, "T": T, "unit": "week"}
    if model is None:
        return {"summary": summary, "p_alive": None, "expected_purchases_90d": None, "model_observation_end": end}
    m = model.model
    return {
        "summary": summary,
        "p_alive": round(float(m.p_alive(x, t_x, T)), 6),
        "expected_purchases_90d": round(float(m.expected_purchases_within(HORIZON_US, x, t_x, T)), 6),
        "model_observation_end": end,
    }
