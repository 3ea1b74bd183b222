"""Customer value: historical value, lifetime value (LTV) and the portfolio's Pareto curve.

Business rules (seed 004):

*Historical value* is the total of past transactions (``projections.value.rfm`` keeps it as
the monetary figure; margins are kept per currency by the 360° view).

*Lifetime value* is the margin the customer will bring while they stay, at today's money:

    LTV = Σ_{t=1..H} margin_t · r^t / (1 + d)^t

with ``r`` the retention rate (probability of keeping the customer from one period to
the next) and ``d`` the discount rate (cost of capital) per period. Period 1 is the first
period to come: its margin is earned only if the customer is retained once and is
discounted once. ``d`` is configuration (a finance figure, not in the purchase data);
``r`` is configuration or estimated from the data with ``retention_rate`` — the share of
the customers active in one period who are active again in the next. For a constant
margin the sum has a closed form (``constant_margin_ltv``), and tends to
``m · r / (1 + d − r)`` over an unbounded horizon.

*Pareto curve*: customers sorted by value, largest first; point ``i`` is (share of
customers, share of value) held by the first ``i``. ``top_share(values, 0.2)`` is the share
of value held by the top 20% of customers, read on the curve (linear between customers,
so it is defined for any portfolio size); ``customers_holding(values, 0.8)`` reads it the
other way: the share of customers that makes 80% of the value.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Sequence
from decimal import Decimal

__all__ = ["lifetime_value", "constant_margin_ltv", "retention_rate", "pareto_curve", "top_share", "customers_holding"]


def _rates(retention: float, discount: float) -> float:
    if not 0 <= retention <= 1:
        raise ValueError("the retention rate lies in [0, 1]")
    if discount <= -1:
        raise ValueError("the discount rate lies above -1")
    return retention / (1 + discount)


def lifetime_value(margins: Sequence[float | Decimal], retention: float, discount: float) -> float:
    """LTV of the margins expected in periods 1, 2, … ``len(margins)`` (the horizon)."""
    factor = _rates(retention, discount)
    total, weight = 0.0, 1.0
    for margin in margins:
        weight *= factor
        total += float(margin) * weight
    return total


def constant_margin_ltv(margin: float | Decimal, retention: float, discount: float, horizon: int | None) -> float:
    """LTV of the same margin every period, over ``horizon`` periods (``None``: unbounded)."""
    q = _rates(retention, discount)
    if horizon is None:
        if q >= 1:
            raise ValueError("an unbounded horizon needs retention below 1 + discount")
        return float(margin) * q / (1 - q)
    if q == 1:
        return float(margin) * horizon
    return float(margin) * q * (1 - q**horizon) / (1 - q)


def retention_rate(active_before: Collection[str], active_after: Collection[str]) -> float:
    """Share of the customers active in one period who are active in the next."""
    if not active_before:
        raise ValueError("no customer was active in the first period")
    after = set(active_after)
    return sum(1 for c in set(active_before) if c in after) / len(set(active_before))


def pareto_curve(values: Sequence[float | Decimal], points: int | None = None) -> list[tuple[float, float]]:
    """(share of customers, share of value) from (0, 0) to (1, 1), largest values first.

    ``points`` thins the curve to that many evenly spaced customer shares (a chart of a
    million customers needs a hundred points, not a million).
    """
    ordered = sorted((float(v) for v in values), reverse=True)
    if any(v < 0 for v in ordered):
        raise ValueError("customer values for a Pareto curve are not negative")
    n, total = len(ordered), sum(ordered)
    cumulative = [0.0]
    for v in ordered:
        cumulative.append(cumulative[-1] + v)
    shares = [c / total if total else 0.0 for c in cumulative]
    if points is None or n == 0:
        return [(i / n if n else 0.0, share) for i, share in enumerate(shares)]
    if points < 2:
        raise ValueError("a curve has at least two points")
    grid = [k / (points - 1) for k in range(points)]
    return [(x, _read(shares, x)) for x in grid]


def _read(shares: list[float], x: float) -> float:
    """The curve at customer share ``x``, linear between customers."""
    n = len(shares) - 1
    position = x * n
    i = min(int(position), n - 1)
    return shares[i] + (shares[i + 1] - shares[i]) * (position - i)


def top_share(values: Sequence[float | Decimal], fraction: float = 0.2) -> float:
    """Share of the portfolio's value held by its top ``fraction`` of customers."""
    if not 0 <= fraction <= 1:
        raise ValueError("the fraction of customers lies in [0, 1]")
    if not values:
        raise ValueError("no customer")
    curve = pareto_curve(values)
    return _read([s for _, s in curve], fraction)


def customers_holding(values: Sequence[float | Decimal], value_share: float = 0.8) -> float:
    """Smallest share of customers (largest first) holding ``value_share`` of the value."""
    if not 0 <= value_share <= 1:
        raise ValueError("the share of value lies in [0, 1]")
    shares = [s for _, s in pareto_curve(values)]
    n = len(shares) - 1
    if n == 0 or shares[-1] == 0:
        raise ValueError("no customer value")
    i = max(1, bisect.bisect_left(shares, value_share))  # first customer count reaching it
    below, above = shares[i - 1], shares[i]
    return (i - 1 + (value_share - below) / (above - below)) / n
