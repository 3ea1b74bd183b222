"""Purchase days: the distinct UTC calendar days on which a customer bought.

BG/NBD (and the ``lifetimes`` package) count purchase *occasions*, not orders: two
orders on one day are one purchase, so a customer whose orders all fell on their first
day is a one-time buyer. With the first and last purchase instants the view already
keeps, the number of distinct days is all the model needs: ``x = days − 1``,
``t_x = last day − first day``, ``T = observation end's day − first day``.

Kept as a set of days, so the count is exact whatever the arrival order (a union; a
late order on a day already counted adds nothing): one bit per day from the first
purchase day, held as an integer. The state grows with the length of the relationship,
not with the number of purchases — 46 bytes a year, 92 characters a year as stored
(hexadecimal) — and a purchase dated before the first shifts the bits.

Refunds (their own touchpoint, never a negative purchase) are not purchase occasions:
they add no day and move neither the first nor the last purchase day; their amounts are
netted in the customer's total spend (the view's currency totals, net of refunds), so the
mean repeat-purchase value below nets them too. An order of amount 0 is an occasion, as
every row is in ``lifetimes``.

The first day's spend, per currency, is kept beside them: the *mean repeat-purchase
value* of the spend model (Gamma-Gamma, as ``lifetimes`` summarises it) is the spend of
the later purchase days averaged over those days, ``(total − first day's spend) /
(days − 1)``. A sum over the earliest day, so it too is the same in any arrival order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

__all__ = ["DAY_US", "PurchaseDays", "add_purchase_day", "day_of", "mean_repeat_purchase_value"]

DAY_US = 86_400 * 1_000_000


class PurchaseDays(NamedTuple):
    count: int = 0  # type: ignore[assignment]  # the field hides tuple.count: the name is the domain's
    first_day: int | None = None  # the first purchase day (days since 1970-01-01, UTC)
    bits: int = 0  # bit i set: a purchase on day first_day + i
    first_day_spend: tuple[tuple[str, Decimal], ...] = ()  # per currency, sorted by currency

    @property
    def last_day(self) -> int | None:
        """The last purchase day."""
        return None if self.first_day is None else self.first_day + self.bits.bit_length() - 1

    def days(self) -> list[int]:
        """The purchase days, ascending."""
        first, bits = self.first_day, self.bits
        return [] if first is None else [first + i for i in range(bits.bit_length()) if bits >> i & 1]


def day_of(at: int) -> int:
    """The UTC calendar day (days since 1970-01-01) of an instant in µs."""
    return at // DAY_US


def add_purchase_day(days: PurchaseDays, at: int, currency: str, amount: Decimal) -> PurchaseDays:
    """The purchase days after a purchase of ``amount`` in ``currency`` at ``at`` (µs)."""
    day, first = day_of(at), days.first_day
    if first is None:
        return PurchaseDays(1, day, 1, ((currency, amount),))
    if day < first:
        return PurchaseDays(days.count + 1, day, days.bits << (first - day) | 1, ((currency, amount),))
    if day == first:
        spend = dict(days.first_day_spend)
        spend[currency] = spend.get(currency, Decimal(0)) + amount
        return days._replace(first_day_spend=tuple(sorted(spend.items())))
    bits = days.bits | 1 << (day - first)
    return days if bits == days.bits else days._replace(count=days.count + 1, bits=bits)


def mean_repeat_purchase_value(days: int, purchases: int, orders: int, spend: Decimal,
                               first_day_spend: Decimal) -> Decimal | None:
    """``(spend − first day's spend) / (days − 1)`` in one currency: None without a repeat
    day, or when some of the ``purchases`` are not among the ``orders`` in that currency
    (their days cannot be told apart from the others')."""
    if days < 2 or orders != purchases:
        return None
    return (spend - first_day_spend) / (days - 1)
