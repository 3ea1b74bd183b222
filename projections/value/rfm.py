"""RFM on the customer card: recency, frequency, monetary value, their 1–5 scores and the
segment they put the customer in.

Business rule: a customer's raw RFM figures are a fold of their purchases — a count, a
sum and a max — so they are order-insensitive and cheap to keep in the 360° view
(``add_purchase``); ``figures_of`` recomputes them from a purchase list. *Recency* is the
time since the last purchase at a time the caller gives, *frequency* the number of
purchases, *monetary* the total spent (one currency; the caller picks which).

Scores rank a figure against the population's quintile boundaries (four cut points,
``projections.value.quantiles``): ``1 + (number of boundaries strictly below the value)``, so a
value equal to a boundary takes the lower score and a population where most customers
bought once gives them all score 1. The population's cuts are kept by ``projections.value.rfm_population``.
Recency is scored on the *last purchase instant*
(later is better): it ranks customers exactly as recency does and does not change as
time passes, so the population histogram moves only when someone buys.

Segments: the widely used grid of R score × FM score, FM = ``round_half_up((F + M) / 2)``
(the "R×F" map of common RFM practice, with "can't lose them" folded into *at risk*,
"about to sleep" into *need attention*, "promising" into *potential loyalist*, and the
oldest low-value corner split off as *lost*):

    R \\ FM |  1                 2                  3                  4          5
    -------+------------------------------------------------------------------------------
      5    |  new               potential loyalist potential loyalist champions  champions
      4    |  potential loyalist potential loyalist potential loyalist loyal      loyal
      3    |  need attention    need attention     need attention     loyal      loyal
      2    |  hibernating       hibernating        at risk            at risk    at risk
      1    |  lost              lost               at risk            at risk    at risk
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import NamedTuple

__all__ = [
    "RfmFigures",
    "Rfm",
    "Segment",
    "NO_PURCHASE",
    "add_purchase",
    "figures_of",
    "rfm_at",
    "score",
    "fm_score",
    "segment",
    "SEGMENT_GRID",
]


class RfmFigures(NamedTuple):
    """What the view keeps: instants in µs since the epoch, money as Decimal."""

    purchases: int
    last_purchase_at: int | None
    monetary: Decimal


NO_PURCHASE = RfmFigures(0, None, Decimal(0))


class Rfm(NamedTuple):
    recency_us: int  # time since the last purchase
    frequency: int
    monetary: Decimal


def add_purchase(figures: RfmFigures, at: int, amount: Decimal) -> RfmFigures:
    last = figures.last_purchase_at
    return RfmFigures(figures.purchases + 1, at if last is None or at > last else last, figures.monetary + amount)


def figures_of(purchases: Iterable[tuple[int, Decimal]]) -> RfmFigures:
    """Batch form: ``purchases`` as ``(occurred_at µs, amount)`` pairs."""
    pairs = list(purchases)
    if not pairs:
        return NO_PURCHASE
    return RfmFigures(len(pairs), max(at for at, _ in pairs), sum((a for _, a in pairs), Decimal(0)))


def rfm_at(figures: RfmFigures, at: int) -> Rfm | None:
    """The RFM of a customer at ``at`` (µs); ``None`` for one who never bought."""
    if figures.last_purchase_at is None:
        return None
    return Rfm(max(0, at - figures.last_purchase_at), figures.purchases, figures.monetary)


def score(value: float | Decimal, boundaries: Sequence[float]) -> int:
    """1–5 against the four ascending quintile boundaries; higher values score higher."""
    if len(boundaries) != 4 or list(boundaries) != sorted(boundaries):
        raise ValueError("four ascending quintile boundaries are needed")
    return 1 + bisect.bisect_left(boundaries, value)


def fm_score(frequency_score: int, monetary_score: int) -> int:
    return (frequency_score + monetary_score + 1) // 2


class Segment(enum.StrEnum):
    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALIST = "potential_loyalist"
    NEW = "new"
    NEED_ATTENTION = "need_attention"
    AT_RISK = "at_risk"
    HIBERNATING = "hibernating"
    LOST = "lost"


_C, _L, _P, _N = Segment.CHAMPIONS, Segment.LOYAL, Segment.POTENTIAL_LOYALIST, Segment.NEW
_A, _R, _H, _X = Segment.NEED_ATTENTION, Segment.AT_RISK, Segment.HIBERNATING, Segment.LOST

SEGMENT_GRID: dict[int, tuple[Segment, ...]] = {  # R score -> segments for FM = 1..5
    5: (_N, _P, _P, _C, _C),
    4: (_P, _P, _P, _L, _L),
    3: (_A, _A, _A, _L, _L),
    2: (_H, _H, _R, _R, _R),
    1: (_X, _X, _R, _R, _R),
}


def segment(r: int, f: int, m: int) -> Segment:
    """The segment of R, F and M scores (each 1–5)."""
    if not all(1 <= s <= 5 for s in (r, f, m)):
        raise ValueError("scores lie in 1..5")
    return SEGMENT_GRID[r][fm_score(f, m) - 1]
