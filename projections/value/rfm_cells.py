"""The portfolio's joint RFM distribution as cells, moved customer by customer.

A cell is a bucket of each figure at once — (day of the last purchase, frequency bucket,
monetary bucket), the buckets of ``projections.value.rfm_population`` — holding how many
customers are in it and their exact revenue (ten-thousandths). Customers who never
bought are in no cell. A runner turns each batch into cell changes (``changes``: -1 in
the cell a customer left, +1 in the one they entered) committed with the views, so the
cells always equal a batch recomputation over the current views (tested), and cells of
disjoint partitions merge by adding.

From the cells come, without reading a view: the quintile cuts (the marginals: exactly
``RfmPopulation``'s histograms), the R x FM grid with customers and revenue per segment
(a cell's scores are exact: scoring compares buckets), and the Pareto curve of revenue
(cells sorted by their monetary bucket; within a bucket values differ by < 2%).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

from projections.value.quantiles import Bucketing, Histogram, LinearBuckets, LogBuckets
from projections.value.rfm import RfmFigures, fm_score, segment
from projections.value.rfm_population import DAY_US, QUINTILE_CUTS, Cuts, Quintiles
from projections.view.state import CustomerView

__all__ = ["Cell", "Change", "rfm_figures", "cell_of", "changes", "quintiles", "scores_of", "grid", "pareto", "RECENCY", "FREQUENCY",
           "MONETARY", "cut_values", "TIE_RULE"]

TIE_RULE = ("score = 1 + the number of the four cuts strictly below the figure: a figure equal to a cut takes "
            "the lower score; equal cuts (ties, as when most customers bought once) leave some scores unused, "
            "e.g. frequency cuts [1, 1, 2, 4] give one-time buyers F=1 and two purchases F=3, never F=2")

RECENCY = LinearBuckets(DAY_US)
FREQUENCY = LogBuckets(0.01)
MONETARY = LogBuckets(0.01)
_AXES: tuple[Bucketing, Bucketing, Bucketing] = (RECENCY, FREQUENCY, MONETARY)  # a Cell's order

Cell = tuple[int, int, int]  # bucket keys: last purchase day, frequency, monetary


def rfm_figures(view: CustomerView, currency: str) -> RfmFigures:
    """A customer's RFM figures: all purchases, the latest one, revenue in ``currency``."""
    totals = dict(view.currencies).get(currency)
    return RfmFigures(view.purchases, view.last_purchase_at, totals.revenue if totals is not None else Decimal(0))


class Change(NamedTuple):
    customers: int
    revenue: int  # ten-thousandths


def cell_of(figures: RfmFigures) -> Cell | None:
    if figures.last_purchase_at is None:
        return None
    return (RECENCY.key(figures.last_purchase_at), FREQUENCY.key(figures.purchases),
            MONETARY.key(float(figures.monetary)))


def _units(amount: Decimal) -> int:
    return int(amount.scaleb(4).to_integral_value())


def changes(moves: Iterable[tuple[RfmFigures | None, RfmFigures | None]]) -> dict[Cell, Change]:
    """Cell changes of a batch: each customer's figures before it (None: not stored yet)
    and after it (None: no longer shown, as a customer a merge absorbed). Zero changes
    are left out."""
    out: dict[Cell, list[int]] = {}
    for before, after in moves:
        for figures, sign in ((before, -1), (after, 1)):
            cell = None if figures is None else cell_of(figures)
            if cell is not None:
                held = out.setdefault(cell, [0, 0])
                held[0] += sign
                held[1] += sign * _units(figures.monetary)  # type: ignore[union-attr]
    return {c: Change(n, r) for c, (n, r) in sorted(out.items()) if n or r}


def _marginal(cells: Mapping[Cell, Change], axis: int, buckets: Any) -> Histogram:
    counts: dict[int, int] = {}
    for cell, held in cells.items():
        if held.customers:
            counts[cell[axis]] = counts.get(cell[axis], 0) + held.customers
    return Histogram.from_dict({"buckets": buckets.to_dict(), "counts": sorted(counts.items())})


def quintiles(cells: Mapping[Cell, Change]) -> Quintiles | None:
    """The four cuts of each figure (None when nobody bought)."""
    if not any(h.customers for h in cells.values()):
        return None
    return Quintiles(*(Cuts(buckets, tuple(_marginal(cells, axis, buckets).quantile_keys(QUINTILE_CUTS)))
                       for axis, buckets in enumerate(_AXES)))


def scores_of(cell: Cell, cuts: Quintiles) -> tuple[int, int, int]:
    return tuple(1 + bisect.bisect_left(c.keys, key)  # type: ignore[return-value]
                 for c, key in zip((cuts.last_purchase_at, cuts.frequency, cuts.monetary), cell, strict=True))


def grid(cells: Mapping[Cell, Change], cuts: Quintiles) -> dict[str, Any]:
    """Customers and revenue per segment and per (R, FM) square."""
    segments: dict[str, list[int]] = {}
    squares: dict[tuple[int, int], list[int]] = {}
    for cell, held in cells.items():
        if not held.customers:
            continue
        r, f, m = scores_of(cell, cuts)
        for table, key in ((segments, segment(r, f, m).value), (squares, (r, fm_score(f, m)))):
            row = table.setdefault(key, [0, 0])  # type: ignore[arg-type]
            row[0] += held.customers
            row[1] += held.revenue
    return {
        "segments": {k: {"customers": n, "revenue": str(Decimal(v).scaleb(-4))} for k, (n, v) in sorted(segments.items())},
        "squares": [{"r": r, "fm": fm, "customers": n, "revenue": str(Decimal(v).scaleb(-4))}
                    for (r, fm), (n, v) in sorted(squares.items(), reverse=True)],
    }


def pareto(cells: Mapping[Cell, Change], points: int = 20) -> dict[str, Any]:
    """Share of revenue against share of customers, largest spenders first, at
    ``points`` evenly spaced customer shares; and the share the top 20% hold."""
    rows = sorted(((MONETARY.value(c[2]), h.customers, h.revenue) for c, h in cells.items() if h.customers),
                  reverse=True)
    customers = sum(n for _, n, _ in rows)
    revenue = sum(v for _, _, v in rows)
    if not customers or revenue <= 0:
        return {"customers": customers, "revenue": str(Decimal(revenue).scaleb(-4)), "curve": [], "top_20_share": None}
    corners, seen, held = [(0.0, 0.0)], 0, 0
    for _, n, v in rows:
        seen, held = seen + n, held + v
        corners.append((seen / customers, held / revenue))

    def at(x: float) -> float:  # linear between cell corners: customers within a cell are alike
        for (x0, y0), (x1, y1) in zip(corners, corners[1:], strict=False):
            if x <= x1:
                return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        return 1.0

    curve = [{"customers": round(k / points, 4), "revenue": round(at(k / points), 4)} for k in range(points + 1)]
    return {"customers": customers, "revenue": str(Decimal(revenue).scaleb(-4)), "curve": curve,
            "top_20_share": round(at(0.2), 4)}


def cut_values(cells: Mapping[Cell, Change], cuts: Quintiles) -> dict[str, Any]:
    """The cuts as data values: the last purchase day (exact); the purchase count the
    frequency bucket holds (exact when it holds one integer, as every count below 50
    does); the mean total spend of the customers in the monetary bucket (exact when they
    spent the same; their spends lie within the bucket, ±1%). ``exact`` says which."""
    days = [int(k) * DAY_US for k in cuts.last_purchase_at.keys]
    frequency, exact_f = [], []
    for key in cuts.frequency.keys:
        low, high = FREQUENCY.bounds(key) if key > 0 else (0.0, 0.0)
        one = key > 0 and int(high) - int(low) == 1
        frequency.append(int(high) if one else round(FREQUENCY.value(key), 2))
        exact_f.append(one)
    spend: dict[int, list[int]] = {}
    for cell, held in cells.items():
        row = spend.setdefault(cell[2], [0, 0])
        row[0], row[1] = row[0] + held.customers, row[1] + held.revenue
    monetary = [str((Decimal(spend[k][1]).scaleb(-4) / spend[k][0]).quantize(Decimal("0.01")))
                if spend.get(k, [0])[0] else str(round(MONETARY.value(k), 2)) for k in cuts.monetary.keys]
    return {"last_purchase_day": days, "frequency": frequency, "monetary": monetary,
            "exact": {"last_purchase_day": True, "frequency": exact_f}}
