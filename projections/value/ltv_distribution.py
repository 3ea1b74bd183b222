"""The portfolio's lifetime-value distribution, from the RFM cells (no view is read).

The cells hold, per (last purchase day, frequency bucket, monetary bucket), how many
customers and their exact revenue; they hold neither margins nor first purchases. So
the distribution takes each customer's **historical revenue as the value of one year**
and applies the seed formula over the configured horizon:
``LTV = revenue · q(1 − q^H)/(1 − q)``, ``q = r/(1 + d)`` (``projections.value.ltv``) — the
LTV of a customer who keeps spending per year what they have spent so far. It is linear
in revenue, so its quantiles are the revenue quantiles (the monetary marginal, within
1%) times that factor. The value card (``services.value.card``) is the exact
per-customer figure, from the margin per year of relationship; this is the portfolio's
shape at the cost of reading the cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from projections.value.ltv import constant_margin_ltv
from projections.value.quantiles import Histogram
from projections.value.rfm_cells import MONETARY, Cell, Change

__all__ = ["QUANTILES", "ltv_distribution"]

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def ltv_distribution(cells: Mapping[Cell, Change], retention: float, discount: float, horizon: int,
                     bins: int = 10) -> dict[str, Any]:
    """Quantiles of lifetime value and a histogram of ``bins`` classes of equal width on a
    log scale (customers with no positive revenue are counted apart, as ``zero_or_less``)."""
    factor = constant_margin_ltv(1.0, retention, discount, horizon)
    counts: dict[int, int] = {}
    for cell, held in cells.items():
        if held.customers:
            counts[cell[2]] = counts.get(cell[2], 0) + held.customers
    histogram = Histogram.from_dict({"buckets": MONETARY.to_dict(), "counts": sorted(counts.items())})
    customers = sum(counts.values())
    out: dict[str, Any] = {"customers": customers, "method": "revenue_as_yearly_value", "factor": round(factor, 6),
                           "retention_rate": retention, "discount_rate": discount, "horizon_years": horizon,
                           "quantiles": {}, "histogram": [], "zero_or_less": 0}
    if not customers:
        return out
    out["quantiles"] = {f"p{round(q * 100)}": round(v * factor, 2)
                        for q, v in zip(QUANTILES, histogram.quantiles(list(QUANTILES)), strict=True)}
    positive = sorted((MONETARY.value(k) * factor, n) for k, n in counts.items() if MONETARY.value(k) > 0)
    out["zero_or_less"] = customers - sum(n for _, n in positive)
    if not positive:
        return out
    low, high = positive[0][0], positive[-1][0]
    ratio = (high / low) ** (1 / bins) if high > low else 1.0
    edges = [low * ratio**i for i in range(bins + 1)] if ratio > 1 else [low, high]
    classes = [0] * (len(edges) - 1)
    for value, n in positive:
        i = next((j for j in range(len(classes)) if value <= edges[j + 1]), len(classes) - 1)
        classes[i] += n
    out["histogram"] = [{"from": round(edges[i], 2), "to": round(edges[i + 1], 2), "customers": n}
                        for i, n in enumerate(classes)]
    return out
