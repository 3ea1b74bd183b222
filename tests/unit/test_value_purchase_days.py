"""Distinct purchase days on the view: orders on one day are one purchase occasion,
counted exactly whatever the arrival order."""

from __future__ import annotations

import random
from decimal import Decimal
from functools import reduce

from projections.value.purchase_days import PurchaseDays, add_purchase_day, day_of
from projections.view.document import from_state, to_state
from projections.view.fold import CustomerView, evolve, initial_view
from tests.support.touchpoints import at, purchase, refund

DAY = 86_400_000_000


def fold(events) -> CustomerView:  # type: ignore[no-untyped-def]
    return reduce(evolve, events, initial_view("c-1"))


def test_orders_on_the_first_day_make_a_one_time_buyer() -> None:
    view = fold([purchase(f"p{i}", at(0, hours=i)) for i in range(4)])
    assert view.purchases == 4 and view.purchase_days.count == 1


def test_each_distinct_day_counts_once_and_the_state_round_trips() -> None:
    view = fold([purchase("a", at(0)), purchase("b", at(0, hours=5)), purchase("c", at(3)), purchase("d", at(3, 2)),
                 purchase("e", at(10))])
    assert view.purchase_days.count == 3
    assert view.purchase_days.days() == [day_of(int(at(d).timestamp()) * 1_000_000) for d in (0, 3, 10)]
    assert from_state(to_state(view)) == view


def test_any_arrival_order_of_a_long_history_gives_the_same_days() -> None:
    rng = random.Random(7)
    days = rng.sample(range(3000), 400)
    events = [purchase(f"p{d}-{k}", at(d, hours=7 * k)) for d in days for k in range(rng.randint(1, 3))]
    in_order = fold(sorted(events, key=lambda e: e.occurred_at)).purchase_days
    assert in_order.count == 400 and in_order.days() == sorted(day_of(int(at(d).timestamp()) * 1_000_000)
                                                                 for d in days)
    for _ in range(10):
        rng.shuffle(events)
        assert fold(events).purchase_days == in_order
    first = min(days)
    assert in_order.first_day_spend == (("EUR", Decimal("100.00") * sum(1 for e in events if e.occurred_at.date()
                                                                         == at(first).date())),)


def test_a_purchase_before_the_first_day_moves_the_first_day_and_its_spend() -> None:
    days = add_purchase_day(add_purchase_day(PurchaseDays(), 10 * DAY, "EUR", Decimal(5)), 12 * DAY, "EUR", Decimal(1))
    earlier = add_purchase_day(days, 7 * DAY + 5, "USD", Decimal(3))
    assert earlier == PurchaseDays(3, 7, 0b101001, (("USD", Decimal(3)),)) and earlier.days() == [7, 10, 12]
    assert add_purchase_day(earlier, 10 * DAY + 1, "EUR", Decimal(2)) is earlier  # a day already counted adds nothing
    same_day = add_purchase_day(earlier, 7 * DAY + 9, "EUR", Decimal(2))
    assert same_day.count == 3 and same_day.first_day_spend == (("EUR", Decimal(2)), ("USD", Decimal(3)))


def test_a_refund_is_no_purchase_day_and_moves_neither_the_first_nor_the_last() -> None:
    view = fold([purchase("a", at(2), "50.00"), purchase("b", at(5), "30.00"), refund("r", at(9), "o-b", "30.00"),
                 refund("r0", at(0), "o-x", "5.00")])
    days = view.purchase_days
    assert days.count == 2 and days.days() == [days.first_day, days.first_day + 3]
    assert days.last_day == days.first_day + 3
    assert days.first_day == day_of(int(at(2).timestamp()) * 1_000_000) and view.purchases == 2
