"""The portfolio's RFM distribution, kept customer by customer, and its quintile cuts.

Business rule: scores rank a customer against everyone who bought. ``RfmPopulation``
holds one histogram per figure (``projections.value.quantiles``) and is moved with a customer's
figures before and after each change, so it always equals the histogram of the current
figures. Frequency and monetary are kept to ``alpha`` relative accuracy (1%), the last
purchase instant to a day. ``Cuts.score`` compares bucket keys, not the cut's answered
value: the cut's bucket is the bucket of the exact quintile, so a tie of many customers
on one value (everyone who bought once) never straddles a cut, and a score differs from
the exact-cut score only for a figure in the same bucket as an exact cut but not equal
to it: within a bucket's ratio ``(1 + alpha) / (1 - alpha)`` (~2%) of it, or the same day.
"""

from __future__ import annotations

import bisect
from typing import Any, NamedTuple

from projections.value.quantiles import Bucketing, Histogram, LinearBuckets, LogBuckets
from projections.value.rfm import RfmFigures

__all__ = ["QUINTILE_CUTS", "DAY_US", "Cuts", "Quintiles", "RfmPopulation"]

QUINTILE_CUTS = [0.2, 0.4, 0.6, 0.8]
DAY_US = 86_400 * 1_000_000


class Cuts(NamedTuple):
    """Four quintile cuts of one figure, as buckets of the population's histogram."""

    bucketing: Bucketing
    keys: tuple[int, ...]

    @property
    def values(self) -> list[float]:
        return [self.bucketing.value(k) for k in self.keys]

    def score(self, value: float) -> int:
        """1–5; a value in the bucket of a cut counts as equal to it (takes the lower score)."""
        return 1 + bisect.bisect_left(self.keys, self.bucketing.key(value))


class Quintiles(NamedTuple):
    """Cuts per figure; recency as last purchase instants (µs), later is better."""

    last_purchase_at: Cuts
    frequency: Cuts
    monetary: Cuts

    def scores(self, figures: RfmFigures) -> tuple[int, int, int]:
        if figures.last_purchase_at is None:
            raise ValueError("a customer who never bought has no RFM score")
        return (
            self.last_purchase_at.score(figures.last_purchase_at),
            self.frequency.score(figures.purchases),
            self.monetary.score(float(figures.monetary)),
        )


class RfmPopulation:
    """The portfolio's RFM distribution, moved customer by customer as they buy.

    ``move(before, after)`` with a customer's figures before and after a change keeps
    it exact; customers who never bought are not in it. Frequency and monetary are kept
    to ``alpha`` relative accuracy, the last purchase instant to ``instant_width`` µs.
    """

    __slots__ = ("last_purchase_at", "frequency", "monetary")

    def __init__(self, alpha: float = 0.01, instant_width: int = DAY_US) -> None:
        self.last_purchase_at = Histogram(LinearBuckets(instant_width))
        self.frequency = Histogram(LogBuckets(alpha))
        self.monetary = Histogram(LogBuckets(alpha))

    def __len__(self) -> int:
        return len(self.frequency)

    def move(self, before: RfmFigures, after: RfmFigures) -> None:
        if before.last_purchase_at is not None:
            self.last_purchase_at.remove(before.last_purchase_at)
            self.frequency.remove(before.purchases)
            self.monetary.remove(float(before.monetary))
        if after.last_purchase_at is not None:
            self.last_purchase_at.add(after.last_purchase_at)
            self.frequency.add(after.purchases)
            self.monetary.add(float(after.monetary))

    def quintiles(self) -> Quintiles:
        histograms = (self.last_purchase_at, self.frequency, self.monetary)
        return Quintiles(*(Cuts(h.bucketing, tuple(h.quantile_keys(QUINTILE_CUTS))) for h in histograms))

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_dict() for name in self.__slots__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RfmPopulation:
        population = cls()
        for name in cls.__slots__:
            setattr(population, name, Histogram.from_dict(d[name]))
        return population
