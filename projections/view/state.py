"""The state of the 360° customer view: immutable records, and the empty view.

Instants inside the view are integers: microseconds since the Unix epoch (UTC). A view
is stored after every batch that touches it; integers compare, store and load several
times faster than datetimes. ``micros``/``instant_of`` convert at the edges. Records are
NamedTuples: immutable, built four times faster than frozen dataclasses, and ordered as
tuples (the recent list and the contact ledger sort on their first fields).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from projections.lifecycle.stages import Lifecycle
from projections.nbc.state import ContactState
from projections.value.purchase_days import PurchaseDays

__all__ = [
    "RECENT_LIMIT",
    "SEEN_LIMIT",
    "CASES_LIMIT",
    "ClosedCases",
    "PRESSURE_WINDOW",
    "PRESSURE_MARKS_LIMIT",
    "Stamp",
    "Attribute",
    "ChannelStats",
    "CurrencyTotals",
    "PurchaseDays",
    "CaseState",
    "Score",
    "ConsentState",
    "ContactMark",
    "Recent",
    "CustomerView",
    "initial_view",
    "mean_resolution_seconds",
    "micros",
    "instant_of",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def instant_of(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


RECENT_LIMIT = 50
SEEN_LIMIT = 128  # event ids remembered per customer, latest arrivals: a producer retry is caught
CASES_LIMIT = 32  # service cases kept per customer: every open one first, then the latest resolved
PRESSURE_WINDOW = 30 * 24 * 3600 * 1_000_000  # 30 days, in microseconds
PRESSURE_MARKS_LIMIT = 200

Stamp = tuple[int, str]
"""(occurred_at in µs, event_id): the total order "last writer wins" uses."""


class Attribute(NamedTuple):
    value: str
    stamp: Stamp


class ChannelStats(NamedTuple):
    count: int  # type: ignore[assignment]  # the field hides tuple.count: the name is the domain's
    first_at: int
    last_at: int
    last_outcome: str | None = None
    outcome_stamp: Stamp | None = None


class CurrencyTotals(NamedTuple):
    """One currency's money: ``revenue`` and ``margin`` are net of refunds."""

    count: int  # type: ignore[assignment]  # purchases; the field hides tuple.count: the name is the domain's
    revenue: Decimal  # purchases' amounts less refunds' amounts
    margin: Decimal  # purchases' stated margins less refunds' stated margins
    margin_count: int  # purchases that stated a margin
    refunds: int = 0  # refunds in this currency (none is a purchase)
    refunded: Decimal = Decimal("0.0000")  # the money they gave back (four places, as every amount)


class CaseState(NamedTuple):
    opened_at: int
    status: str
    status_stamp: Stamp
    severity: str
    category: str | None = None
    category_stamp: Stamp | None = None

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"


class ClosedCases(NamedTuple):
    """Resolved cases no longer kept one by one (beyond ``CASES_LIMIT``): their count and
    the sum of their resolution times, so the figures stay exact while the state stays bounded."""

    count: int = 0  # type: ignore[assignment]  # the field hides tuple.count
    resolution_us: int = 0


class Score(NamedTuple):
    value: int
    stamp: Stamp


class ConsentState(NamedTuple):
    status: str
    stamp: Stamp
    source: str


class ContactMark(NamedTuple):
    """Ordered as tuples: by (occurred_at, event_id)."""

    occurred_at: int
    event_id: str
    channel: str
    by_company: bool


class Recent(NamedTuple):
    """Ordered as tuples: by (occurred_at, event_id)."""

    occurred_at: int
    event_id: str
    type: str
    channel: str
    summary: str


class CustomerView(NamedTuple):
    """Immutable like every record here; a NamedTuple because a new view is built for
    every event and tuples are built four times faster than frozen dataclasses."""

    customer_id: str
    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    external_ids: frozenset[tuple[str, str]] = frozenset()
    first_seen: int | None = None
    last_seen: int | None = None
    touchpoints: int = 0
    profile: tuple[tuple[str, Attribute], ...] = ()
    channels: tuple[tuple[str, ChannelStats], ...] = ()
    recent: tuple[Recent, ...] = ()
    purchases: int = 0
    first_purchase_at: int | None = None
    last_purchase_at: int | None = None
    purchase_days: PurchaseDays = PurchaseDays()  # distinct purchase days (projections.value.purchase_days)
    currencies: tuple[tuple[str, CurrencyTotals], ...] = ()
    cases: tuple[tuple[str, CaseState], ...] = ()  # at most CASES_LIMIT, by case id
    closed_cases: ClosedCases = ClosedCases()  # resolved cases folded out of ``cases``
    csat: Score | None = None
    nps: Score | None = None
    consents: tuple[tuple[tuple[str, str], ConsentState], ...] = ()
    contacts: tuple[ContactMark, ...] = ()
    seen: tuple[str, ...] = ()  # the latest SEEN_LIMIT event ids folded, in arrival order (idempotency window)
    lifecycle: Lifecycle = Lifecycle()
    contact: ContactState = ContactState()  # next-best-contact state (projections.nbc.engine)


def mean_resolution_seconds(cases: list[CaseState], closed: ClosedCases) -> float | None:
    """The mean time to resolve a case, over the cases kept and those folded into totals."""
    resolved = [c.status_stamp[0] - c.opened_at for c in cases if not c.is_open]
    n = len(resolved) + closed.count
    return round((sum(resolved) + closed.resolution_us) / 1e6 / n, 3) if n else None


def initial_view(customer_id: str) -> CustomerView:
    return CustomerView(customer_id=customer_id)
