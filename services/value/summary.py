"""From purchases to BG/NBD summaries: (x, t_x, T) per customer, and their distinct rows.

``summaries`` is the one definition, from what the view keeps per customer (first and
last purchase, distinct purchase days, ``projections.value.purchase_days``): the refit,
the value card, the benchmark and the tests all go through it; ``summarise`` and
``summary_of`` reduce raw purchase instants to those three figures and call it.

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

__all__ = ["DAY_US", "WEEK_US", "Summaries", "summaries", "summarise", "summary_of", "distinct_rows"]

DAY_US = 86_400 * 1_000_000


class Summaries(NamedTuple):
    customers: NDArray[np.int64]  # sorted customer numbers, one row each
    x: NDArray[np.float64]
    t_x: NDArray[np.float64]
    T: NDArray[np.float64]


def summaries(
    first: ArrayLike, last: ArrayLike, days: ArrayLike, end: int, unit_us: int = WEEK_US, period_us: int = DAY_US
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(x, t_x, T) of customers given, per customer, the first and last purchase instants
    (µs) and the number of distinct purchase periods, observed until ``end`` (µs):
    ``x = days − 1``, ``t_x = last period − first period``, ``T = end's period − first
    period``, in ``unit_us``. A last purchase after ``end`` is taken at ``end``."""
    first_p = np.asarray(first, dtype=np.int64) // period_us
    last_p = np.minimum(np.asarray(last, dtype=np.int64), end) // period_us
    per_unit = np.float64(period_us / unit_us)  # a float64 scalar: the columns stay float64 to mypy too
    x = np.asarray(days, dtype=np.int64) - 1
    t_x = np.where(x > 0, last_p - first_p, 0) * per_unit
    return x.astype(np.float64), t_x, (end // period_us - first_p) * per_unit


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
    who, when = who[kept], when[kept]
    order = np.lexsort((when, who))
    who, when = who[order], when[order]
    period = when // period_us
    occasion = np.ones(who.size, dtype=bool)
    occasion[1:] = (who[1:] != who[:-1]) | (period[1:] != period[:-1])
    starts = np.flatnonzero(np.r_[True, who[1:] != who[:-1]]) if who.size else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], who.size].astype(np.int64) - 1 if who.size else starts
    days = np.add.reduceat(occasion.astype(np.int64), starts) if who.size else np.zeros(0, dtype=np.int64)
    x, t_x, T = summaries(when[starts], when[ends], days, end, unit_us, period_us)
    return Summaries(customers=who[starts], x=x, t_x=t_x, T=T)


def summary_of(
    purchases: list[int], end: int, unit_us: int = WEEK_US, period_us: int = DAY_US
) -> tuple[float, float, float]:
    """(x, t_x, T) of one customer from their purchase instants (µs)."""
    kept = [at for at in purchases if at <= end]
    if not kept:
        raise ValueError("no purchase up to the end of observation")
    days = len({at // period_us for at in kept})
    x, t_x, T = summaries([min(kept)], [max(kept)], [days], end, unit_us, period_us)
    return float(x[0]), float(t_x[0]), float(T[0])


def distinct_rows(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The distinct (x, t_x, T) rows and how many customers share each (the weights)."""
    rows = np.column_stack([np.asarray(c, dtype=np.float64) for c in (x, t_x, T)])
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    return unique[:, 0], unique[:, 1], unique[:, 2], counts.astype(np.float64)
