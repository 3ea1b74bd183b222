"""The spend model (Gamma-Gamma, Fader, Hardie & Lee 2005, "RFM and CLV") and the
discounted customer lifetime value it gives with BG/NBD.

Business rule: a customer's spend per purchase day varies around their own mean, which
varies across customers; the model learns both from the repeat buyers' (x = repeat
purchase days, m = mean repeat-purchase value) and predicts each customer's expected
spend per future purchase day — a weighted mean of their own m and the portfolio's.
It assumes spend does not depend on how often one buys: ``independence`` gives the
correlation between x and m the fit saw (near 0 is what the model needs).

``fit`` minimises lifetimes' ``GammaGammaFitter`` objective (the weighted mean negative
log-likelihood, no penalty) over log-parameters with L-BFGS-B and the analytic gradient.
``lifetime_value`` is lifetimes' ``customer_lifetime_value``: for each month i of the
horizon, the purchases expected in that month (BG/NBD) times the expected spend,
discounted by ``(1 + monthly rate)^i``, times the margin ratio (1: revenue).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import digamma, gammaln

from services.value.bgnbd import BgNbd, converged, standard_errors

__all__ = ["GammaGamma", "fit_spend", "lifetime_value", "MONTH_US"]

MONTH_US = 30 * 86_400 * 1_000_000  # lifetimes' month for day-based data
CHUNK = 50_000  # customers valued at once


@dataclass(frozen=True, slots=True)
class GammaGamma:
    p: float
    q: float
    v: float
    log_likelihood: float  # the weighted sum over the repeat buyers fitted on
    customers: int
    converged: bool
    independence: float | None  # Pearson correlation of x and m over the customers fitted on
    standard_errors: tuple[float, ...] | None = None  # of (p, q, v); None: not estimable

    def expected_spend(self, x: ArrayLike, m: ArrayLike) -> NDArray[np.float64]:
        """Expected spend per future purchase day of customers with (x, m); x = 0 gives the
        portfolio's mean ``v·p/(q − 1)``."""
        x_, m_ = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
        weight = self.p * x_ / (self.p * x_ + self.q - 1)
        return np.asarray((1 - weight) * (self.v * self.p / (self.q - 1)) + weight * m_, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GammaGamma:
        errors = d.get("standard_errors")
        return cls(**{**d, "standard_errors": None if errors is None else tuple(errors)})


def _negative_mean_log_likelihood(log_params: NDArray[np.float64], x: NDArray[np.float64], m: NDArray[np.float64],
                                  w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
    p, q, v = np.exp(log_params)
    px = p * x
    ll = (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m) + px * np.log(x)
          - (px + q) * np.log(x * m + v))
    d_p = x * (digamma(px + q) - digamma(px) + np.log(m) + np.log(x) - np.log(x * m + v))
    d_q = digamma(px + q) - digamma(q) + np.log(v) - np.log(x * m + v)
    d_v = q / v - (px + q) / (x * m + v)
    total = w.sum()
    grad = np.array([p * (w * d_p).sum(), q * (w * d_q).sum(), v * (w * d_v).sum()]) / total
    return float(-(w * ll).sum() / total), -grad


def fit_spend(x: ArrayLike, m: ArrayLike, weights: ArrayLike | None = None) -> GammaGamma:
    """Gamma-Gamma on repeat buyers' (x > 0, m > 0); other rows are left out."""
    x_, m_ = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
    w_ = np.ones_like(x_) if weights is None else np.asarray(weights, dtype=np.float64)
    kept = (x_ > 0) & (m_ > 0)
    x_, m_, w_ = x_[kept], m_[kept], w_[kept]
    if x_.size < 3:
        raise ValueError("the spend model needs repeat buyers with a positive spend")
    start = np.log([1.0, 2.0, float(np.average(m_, weights=w_))])
    result = minimize(_negative_mean_log_likelihood, start, args=(x_, m_, w_), jac=True, method="L-BFGS-B",
                      options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10})
    p, q, v = np.exp(result.x)
    corr = float(np.corrcoef(x_, m_)[0, 1]) if x_.size > 2 and np.std(x_) > 0 and np.std(m_) > 0 else None
    errors = standard_errors(lambda t: _negative_mean_log_likelihood(t, x_, m_, w_)[1], result.x, float(w_.sum()))
    return GammaGamma(float(p), float(q), float(v), -float(result.fun) * float(w_.sum()), int(round(w_.sum())),
                      converged(result), corr, errors)


def lifetime_value(bgnbd: BgNbd, spend: GammaGamma, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, m: ArrayLike,
                   months: int, monthly_discount: float, margin_ratio: float = 1.0,
                   month_us: int = MONTH_US, spend_x: ArrayLike | None = None) -> NDArray[np.float64]:
    """Discounted lifetime value over ``months`` months of customers with BG/NBD summary
    (x, t_x, T) in the model's unit and mean repeat-purchase value m (``spend_x``: the
    repeat days m is the mean of, when not x: 0 for a spend not known)."""
    expected = spend.expected_spend(x if spend_x is None else spend_x, m)
    x_, t_x_, T_ = (np.broadcast_to(np.asarray(c, dtype=np.float64), expected.shape).ravel() for c in (x, t_x, T))
    steps = np.arange(1, months + 1)
    ends = (steps * (month_us / bgnbd.unit_us))[:, None]  # every month at once: one call, not one per month
    discount = ((1 + monthly_discount) ** -steps.astype(np.float64))[:, None]
    flat = expected.ravel()
    total = np.empty_like(flat)
    for start in range(0, flat.size, CHUNK):  # bounded memory: months x CHUNK at a time
        part = slice(start, start + CHUNK)
        upto = np.asarray(bgnbd.expected_purchases(ends, x_[part], t_x_[part], T_[part]), dtype=np.float64)
        total[part] = flat[part] * (discount * np.diff(upto, axis=0, prepend=0.0)).sum(axis=0)
    return (total * margin_ratio).reshape(expected.shape)
