"""Population quantiles kept up to date one customer at a time: a bucket histogram.

Business rule: RFM scores rank a customer against the whole portfolio (quintiles), and a
customer's figures change with every purchase. The population is therefore a histogram
of counts per bucket that supports ``add`` *and* ``remove`` exactly: when a customer's
figure goes from ``old`` to ``new``, ``remove(old)`` then ``add(new)``. Counts are
integers, so any sequence of adds and removes leaves the same histogram as adding the
surviving values once (no drift), and two histograms of disjoint populations merge by
adding counts (one per partition or worker, merged for the portfolio).

Two bucketings, chosen per figure:

``LogBuckets(alpha)`` — relative accuracy, for frequency and monetary value. Bucket ``k``
holds the positive values in ``(g^(k-1), g^k]`` with ``g = (1 + alpha) / (1 - alpha)`` and
answers ``2 g^k / (g + 1)``; every value of the bucket is within ``alpha`` of that answer
relative to itself. So ``quantile(q)`` is within ``alpha`` (relative) of the exact
lower quantile ``sorted(values)[floor(q * (n - 1))]``. ``alpha = 0.01`` (bucket ratio
~1.02) spans 1e-2 to 1e7 in ~1,000 buckets. Zero is its own exact bucket; negative
values (net refunds) mirror the positive side. Values in ``(0, 1e-9]`` count as zero.

``LinearBuckets(width)`` — absolute accuracy, for instants (the last purchase). A
relative error on an epoch instant would be centuries; bucket ``k`` holds
``[k * width, (k + 1) * width)`` and answers its lower edge, so the answer is at most
``width`` below the exact quantile (one day for ``width`` = a day in µs).

Ranking against a quantile is done on bucket keys (``quantile_keys``), not on the
answered value: the bucket of the approximate quantile is the bucket of the exact one, so
a value that *equals* the exact quantile compares equal, and a tie of many customers on one
value (everyone who bought once) never straddles a cut.

``math.log`` maps a value to its bucket; a value within one ulp of a bucket edge might
land in the neighbouring bucket under another libm, which stays within the bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Bucketing", "LogBuckets", "LinearBuckets", "Histogram"]

_ZERO_BELOW = 1e-9


class Bucketing(Protocol):
    def key(self, value: float) -> int: ...
    def value(self, key: int) -> float: ...
    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class LogBuckets:
    """Relative accuracy ``alpha`` for any value, positive, zero or negative."""

    alpha: float = 0.01
    _log_gamma: float = field(init=False, repr=False, compare=False)  # computed once: every key needs it

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError("alpha must lie in (0, 1)")
        object.__setattr__(self, "_log_gamma", math.log((1 + self.alpha) / (1 - self.alpha)))

    # Keys keep the order of values: negatives < 0 (zero) < positives. Positive bucket k
    # (any integer) is stored as k + _SHIFT >= 1, negatives as -(k + _SHIFT).
    def key(self, value: float) -> int:
        magnitude = abs(value)
        if magnitude <= _ZERO_BELOW:
            return 0
        k = math.ceil(math.log(magnitude) / self._log_gamma) + _SHIFT
        if k < 1:
            raise ValueError(f"{value!r} is too small for this histogram")
        return k if value > 0 else -k

    def value(self, key: int) -> float:
        if key == 0:
            return 0.0
        gamma = math.exp(self._log_gamma)
        mid = 2 * math.exp((abs(key) - _SHIFT) * self._log_gamma) / (gamma + 1)
        return mid if key > 0 else -mid

    def bounds(self, key: int) -> tuple[float, float]:
        """The magnitudes a positive bucket holds: ``(g^(k−1), g^k]``."""
        k = abs(key) - _SHIFT
        return math.exp((k - 1) * self._log_gamma), math.exp(k * self._log_gamma)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "log", "alpha": self.alpha}


_SHIFT = 1 << 40  # more buckets below 1 than 1e-9 needs at any alpha above 1e-11


@dataclass(frozen=True, slots=True)
class LinearBuckets:
    width: int | float

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ValueError("width must be positive")

    def key(self, value: float) -> int:
        if isinstance(value, int) and isinstance(self.width, int):
            return value // self.width  # exact for epoch microseconds
        return math.floor(value / self.width)

    def value(self, key: int) -> float:
        return key * self.width

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "linear", "width": self.width}


class Histogram:
    """Counts per bucket of one figure over a population; mutable, deterministic."""

    __slots__ = ("bucketing", "_counts", "_total")

    def __init__(self, bucketing: Bucketing) -> None:
        self.bucketing = bucketing
        self._counts: dict[int, int] = {}
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Histogram) and self.to_dict() == other.to_dict()

    def add(self, value: float, count: int = 1) -> None:
        key = self.bucketing.key(value)
        self._counts[key] = self._counts.get(key, 0) + count
        self._total += count

    def remove(self, value: float, count: int = 1) -> None:
        """Take back a value added before; a bucket never goes below zero."""
        key = self.bucketing.key(value)
        held = self._counts.get(key, 0)
        if held < count:
            raise ValueError(f"{value!r} was not added {count} time(s)")
        if held == count:
            del self._counts[key]
        else:
            self._counts[key] = held - count
        self._total -= count

    def merge(self, other: Histogram) -> None:
        if other.bucketing != self.bucketing:
            raise ValueError("histograms with different buckets do not merge")
        for key, count in other._counts.items():
            self._counts[key] = self._counts.get(key, 0) + count
        self._total += other._total

    def quantile_keys(self, qs: list[float]) -> list[int]:
        """The bucket holding the lower quantile ``sorted(values)[floor(q * (n - 1))]`` of
        each ``q``, in one pass over the buckets."""
        if self._total == 0:
            raise ValueError("no value in the histogram")
        ranks = sorted((math.floor(q * (self._total - 1)), i) for i, q in enumerate(qs) if 0 <= q <= 1)
        if len(ranks) != len(qs):
            raise ValueError("quantiles lie in [0, 1]")
        out = [0] * len(qs)
        seen, pending = 0, iter(ranks)
        rank, index = next(pending)
        for key in sorted(self._counts):
            seen += self._counts[key]
            while rank < seen:
                out[index] = key
                try:
                    rank, index = next(pending)
                except StopIteration:
                    return out
        raise AssertionError("ranks lie below the total")

    def quantiles(self, qs: list[float]) -> list[float]:
        """The lower quantile of each ``q``, to the bucketing's accuracy."""
        return [self.bucketing.value(key) for key in self.quantile_keys(qs)]

    def quantile(self, q: float) -> float:
        return self.quantiles([q])[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain, order-stable form (JSON-ready): buckets sorted by key."""
        return {"buckets": self.bucketing.to_dict(), "counts": sorted(self._counts.items())}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        spec = d["buckets"]
        bucketing: Bucketing = LogBuckets(spec["alpha"]) if spec["kind"] == "log" else LinearBuckets(spec["width"])
        histogram = cls(bucketing)
        for key, count in d["counts"]:
            histogram._counts[int(key)] = int(count)
            histogram._total += int(count)
        return histogram
