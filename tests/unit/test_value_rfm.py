"""RFM figures, scores and segments of the customer card."""

from __future__ import annotations

from decimal import Decimal
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.value.rfm import (
    NO_PURCHASE,
    SEGMENT_GRID,
    Rfm,
    Segment,
    add_purchase,
    figures_of,
    fm_score,
    rfm_at,
    score,
    segment,
)

START = 1_700_000_000_000_000
DAY_US = 86_400 * 1_000_000
purchases = st.lists(
    st.tuples(st.integers(START, START + 900 * DAY_US), st.decimals("-50", "5000", places=2)), max_size=30
)


@settings(max_examples=200, deadline=None)
@given(purchases, st.randoms(use_true_random=False))
def test_folding_purchases_in_any_order_gives_the_batch_figures(bought, rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(bought)
    rnd.shuffle(shuffled)
    folded = reduce(lambda f, p: add_purchase(f, *p), shuffled, NO_PURCHASE)
    assert folded == figures_of(bought)
    if bought:
        assert folded.last_purchase_at == max(at for at, _ in bought)
        assert folded.monetary == sum(a for _, a in bought)


def test_recency_is_the_time_since_the_last_purchase_at_the_time_asked() -> None:
    figures = figures_of([(START, Decimal("10")), (START + 3 * DAY_US, Decimal("15.50"))])
    assert rfm_at(figures, START + 10 * DAY_US) == Rfm(7 * DAY_US, 2, Decimal("25.50"))
    assert rfm_at(NO_PURCHASE, START) is None


def test_scores_count_the_quintile_boundaries_below_the_value() -> None:
    cuts = [10, 20, 30, 40]
    assert [score(v, cuts) for v in (0, 10, 10.5, 20, 29, 40, 41, 1e9)] == [1, 1, 2, 2, 3, 4, 5, 5]


def test_a_population_of_one_time_buyers_scores_them_all_one_and_repeat_buyers_higher() -> None:
    cuts = [1, 1, 1, 2]  # 70% bought once
    assert (score(1, cuts), score(2, cuts), score(3, cuts)) == (1, 4, 5)


def test_boundaries_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError):
        score(5, [40, 30, 20, 10])
    with pytest.raises(ValueError):
        score(5, [1, 2, 3])


def test_the_fm_score_rounds_half_up() -> None:
    assert [fm_score(f, m) for f, m in [(1, 1), (1, 2), (3, 4), (4, 5), (5, 5), (2, 5)]] == [1, 2, 4, 5, 5, 4]


@pytest.mark.parametrize(
    ("r", "f", "m", "expected"),
    [
        (5, 5, 5, Segment.CHAMPIONS),
        (5, 4, 3, Segment.CHAMPIONS),
        (4, 5, 4, Segment.LOYAL),
        (3, 4, 4, Segment.LOYAL),
        (5, 1, 1, Segment.NEW),
        (5, 2, 2, Segment.POTENTIAL_LOYALIST),
        (4, 1, 1, Segment.POTENTIAL_LOYALIST),
        (3, 3, 3, Segment.NEED_ATTENTION),
        (3, 1, 2, Segment.NEED_ATTENTION),
        (2, 5, 5, Segment.AT_RISK),
        (1, 3, 3, Segment.AT_RISK),
        (2, 1, 2, Segment.HIBERNATING),
        (1, 1, 1, Segment.LOST),
        (1, 2, 2, Segment.LOST),
    ],
)
def test_the_segment_grid(r: int, f: int, m: int, expected: Segment) -> None:
    assert segment(r, f, m) is expected


def test_the_grid_covers_every_score_and_uses_all_eight_segments() -> None:
    cells = {segment(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert cells == set(Segment) and len(Segment) == 8
    assert sorted(SEGMENT_GRID) == [1, 2, 3, 4, 5] and all(len(row) == 5 for row in SEGMENT_GRID.values())
    with pytest.raises(ValueError):
        segment(0, 3, 3)


def test_more_recent_buyers_never_land_in_an_older_segment_row() -> None:
    order = [Segment.LOST, Segment.HIBERNATING, Segment.AT_RISK, Segment.NEED_ATTENTION]
    for fm in range(5):
        assert SEGMENT_GRID[5][fm] not in order and SEGMENT_GRID[4][fm] not in order
