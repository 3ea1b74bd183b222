"""P(alive) as a lifecycle rule: declining and lost from a pinned BG/NBD purchase model.

BG/NBD (Fader, Hardie & Lee 2005) gives, for a customer with x repeat purchases, the
latest at t_x and observed for T (from the first purchase, in the model's unit),

    P(alive) = 1 / (1 + a / (b + x - 1) · ((alpha + T) / (alpha + t_x))^(r + x))   (x > 0; 1 when x = 0)

With the history fixed, P(alive) falls strictly as T grows, so "P(alive) < p" starts at
one instant, in closed form:

    T* = (alpha + t_x) · K^(1 / (r + x)) - alpha,   K = (1/p - 1) · (b + x - 1) / a

(``K <= 1``: already below p at the latest purchase). ``crossing`` returns that instant
rounded up to the microsecond, and the lifecycle's ``judge`` compares instants with it
rather than probabilities with p, so ``judge`` and ``next_deadline`` agree exactly by
construction and a replay reproduces every transition.

**Pinned parameters.** The rule reads parameters from configuration (``AliveRule``,
copied from ``GET /v1/value/model``), never the refitted model: a model that moved under
the fold would change what a replay derives. Changing them is changing the lifecycle
rules: replay. The history is the purchases the lifecycle keeps (the latest 64): x is
their count less one, the first of them the start.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["AliveRule", "WEEK_US"]

WEEK_US = 7 * 86_400 * 1_000_000


class _Purchase(Protocol):
    @property
    def at(self) -> int: ...  # µs


@dataclass(frozen=True, slots=True)
class AliveRule:
    r: float
    alpha: float
    a: float
    b: float
    declining_below: float = 0.5
    lost_below: float = 0.2
    unit_us: int = WEEK_US  # the parameters' time unit (the refit reports weeks)

    def __post_init__(self) -> None:
        if not all(v > 0 and math.isfinite(v) for v in (self.r, self.alpha, self.a, self.b)):
            raise ValueError("P(alive) parameters r, alpha, a, b must be positive")
        if not 0 < self.lost_below < self.declining_below < 1:
            raise ValueError("P(alive) thresholds must satisfy 0 < lost_below < declining_below < 1")

    def p_alive(self, buys: Sequence[_Purchase], at: int) -> float:
        """P(alive) at ``at`` (at or after every purchase) of the purchases ``buys`` (``.at`` µs, oldest first)."""
        x = len(buys) - 1
        if x <= 0:
            return 1.0
        first, last = buys[0].at, buys[-1].at
        t_x, big_t = (last - first) / self.unit_us, (at - first) / self.unit_us
        odds: float = self.a / (self.b + x - 1) * ((self.alpha + big_t) / (self.alpha + t_x)) ** (self.r + x)
        return 1.0 / (1.0 + odds)

    def crossing(self, buys: Sequence[_Purchase], p: float) -> int | None:
        """The first instant (µs) from which P(alive) is below ``p``; None when it never is
        (a single purchase: the model cannot see a one-time buyer leave)."""
        x = len(buys) - 1
        if x <= 0:
            return None
        first, last = buys[0].at, buys[-1].at
        k = (1 / p - 1) * (self.b + x - 1) / self.a
        if k <= 1:
            return last
        t_x = (last - first) / self.unit_us
        big_t = (self.alpha + t_x) * math.exp(math.log(k) / (self.r + x)) - self.alpha
        return max(last, first + math.ceil(big_t * self.unit_us))
