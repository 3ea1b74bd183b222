"""From purchases to BG/NBD summaries: (x, t_x, T) per customer, and their distinct rows.

Business rule (as in the BG/NBD literature and the ``lifetimes`` package): purchases are
counted per *period* (a day by default), so two orders on one day are one purchase
occasion. For each customer, from the period of their first purchase:

- ``x``   = number of later periods with a purchase (repeat purchases);
- ``t_x`` = periods from the first to the last purchase;
- ``T``   = periods from the first purchase to the end of observation;

then expressed in the model's time unit (``unit_us``, a week for the CDNOW results).
Periods are floors of UTC epoch microseconds, the instants of the 360° view, so a day is
a UTC calendar day. Purchases after ``end`` are not counted.

The periodic refit reads every customer's summary once; ``distinct_rows`` collapses equal
rows into weights — with daily periods a million customers have far fewer distinct
(x, t_x, T) than customers — and ``bgnbd.fit`` takes the weights.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from services.value.bgnbd import WEEK_US

__all__ = ["DAY_US", "WEEK_US", "Summaries", "summarise", "summary_of", "distinct_rows"]

DAY_US = 86_400 * 1_000_000


class Summaries(NamedTuple):
    customers: NDArray[np.int64]  # sorted customer numbers, one row each
    x: NDArray[np.float64]
    t_x: NDArray[np.float64]
    T: NDArray[np.float64]


def summarise(
    customers: ArrayLike, at: ArrayLike, end: int, unit_us: int = WEEK_US, period_us: int = DAY_US
) -> Summaries:
    """Summaries of every customer with a purchase up to ``end``.

    ``customers`` (integer customer numbers) and ``at`` (purchase instants, µs) are two
    equally long columns, one row per purchase, in any order. Vectorised: no Python loop.
    """
    who = np.asarray(customers, dtype=np.int64)
    when = np.asarray(at, dtype=np.int64)
    if who.shape != when.shape:
        raise ValueError("customers and instants are equally long columns")
    kept = when <= end
    who, period = who[kept], when[kept] // period_us
    order = np.lexsort((period, who))
    who, period = who[order], period[order]
    occasion = np.ones(who.size, dtype=bool)
    occasion[1:] = (who[1:] != who[:-1]) | (period[1:] != period[:-1])
    who, period = who[occasion], period[occasion]
    starts = np.flatnonzero(np.r_[True, who[1:] != who[:-1]]) if who.size else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], who.size].astype(np.int64) - 1 if who.size else starts
    first, last = period[starts], period[ends]
    per_unit = np.float64(period_us / unit_us)  # a float64 scalar: the columns stay float64 to mypy too
    return Summaries(
        customers=who[starts],
        x=(ends - starts).astype(np.float64),
        t_x=(last - first) * per_unit,
        T=(end // period_us - first) * per_unit,
    )


def summary_of(
    purchases: list[int], end: int, unit_us: int = WEEK_US, period_us: int = DAY_US
) -> tuple[float, float, float]:
    """(x, t_x, T) of one customer from their purchase instants (µs)."""
    periods = sorted({at // period_us for at in purchases if at <= end})
    if not periods:
        raise ValueError("no purchase up to the end of observation")
    per_unit = period_us / unit_us
    return float(len(periods) - 1), (periods[-1] - periods[0]) * per_unit, (end // period_us - periods[0]) * per_unit


def distinct_rows(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The distinct (x, t_x, T) rows and how many customers share each (the weights)."""
    rows = np.column_stack([np.asarray(c, dtype=np.float64) for c in (x, t_x, T)])
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    return unique[:, 0], unique[:, 1], unique[:, 2], counts.astype(np.float64)
