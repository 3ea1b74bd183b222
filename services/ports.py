"""The ports: what the HTTP API and the feature shells need of a runtime.

The API is written once against these narrow Protocols; ``services.embedded.platform``
(one process, SQLite) and ``services.scaleout.platform`` (Kafka + Redis) implement every
one of them with the same meaning, so the behavioural scenario suite passes on both. A
router, the value job or webhook delivery names only the ports it uses.

Positions: ingest gives every accepted event a position (an integer, increasing in the
order events were acknowledged); a read passing ``min_position`` sees every event
acknowledged at or below it, or is told it cannot yet (``Caught.reached`` false).
Cursors are short strings each runtime states as a pattern (``Cursors``: the feeds' and
the timeline's), published in the OpenAPI document and checked before a port sees them:
any string of that pattern names a point in its order (past the end: an empty page), so
what a client's tools generate from the contract is what the server accepts. Storage that
cannot take events raises ``StorageUnavailable``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from projections.identity import Identifier
from projections.value.purchase_days import DAY_US, mean_repeat_purchase_value
from projections.value.rfm_cells import Cell, Change
from services.segments.changes import SegmentSource
from services.settings import Settings

if TYPE_CHECKING:
    from projections.merge import Merges
    from projections.value.rfm_population import Quintiles
    from services.value.job import ValueModel
    from services.value.service import TimeBase

__all__ = ["Runtime", "Intake", "CustomerReads", "LifecycleReads", "Health", "ValueStore", "TriggerFeed",
           "DeliveryLedger", "SegmentReads", "Platform", "Caught", "TimelinePage", "Readiness", "TransitionPage",
           "TriggerPage", "LifecycleFigures", "StorageUnavailable", "Cursors", "MICROS_PATTERN", "timeline_cursor",
           "timeline_point", "History", "history",
           "PurchaseLog"]


class StorageUnavailable(Exception):
    """The log could not durably store the events (locked, full, I/O error, broker down).
    ``retry_after``: seconds after which trying again makes sense (None: at once)."""

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Caught(NamedTuple):
    reached: bool
    position: int  # the position the views include (as far as known)
    beyond: bool = False  # the position asked for is past the log's head: no write was given it


@dataclass(frozen=True, slots=True)


class TimelinePage:
    events: list[dict[str, Any]]  # {"position": int | None, **canonical document}, newest first
    next_cursor: str | None


@dataclass(frozen=True, slots=True)


class Readiness:
    checks: dict[str, str]
    log_position: int
    view_position: int

    @property
    def ready(self) -> bool:
        return all(v == "ok" for k, v in self.checks.items() if k != "draining") and self.checks.get("draining") != "yes"


@dataclass(frozen=True, slots=True)


class TransitionPage:
    transitions: list[dict[str, Any]]  # LifecycleStageChanged documents, feed order
    next_cursor: str | None


@dataclass(frozen=True, slots=True)


class TriggerPage:
    triggers: list[dict[str, Any]]  # trigger documents (projections.nbc.document), oldest first
    next_cursor: str | None  # pass back as ``after``; stays put when nothing is new


@dataclass(frozen=True, slots=True)


class LifecycleFigures:
    stages: dict[str, int]
    transitions: list[tuple[str, str, int]]  # (from, to, dwell µs)


class Cursors(NamedTuple):
    """A runtime's cursor grammars: regular expressions (no anchors) with what they mean."""

    feed: str  # the transition, trigger and segment-change feeds' cursor
    feed_meaning: str
    timeline: str  # a customer's timeline cursor
    timeline_meaning: str


# Event time in µs, as a cursor holds it: 1653 to 5138, within what a date can be.
MICROS_PATTERN = r"(?:-?[0-9]{1,16}|[0-9]{17})"


class Runtime(Protocol):
    """What every port carries: which runtime, its settings, whether it is stopping, and
    its cursors' grammar."""

    runtime: str

    cursors: Cursors

    settings: Settings

    draining: bool


class Intake(Runtime, Protocol):
    """Ingest: events into the log, clock ticks, and how far the views have caught up."""

    async def append(self, documents: list[dict[str, Any]]) -> Sequence[tuple[int, bool]]:
        """Store the canonical documents durably; (position, duplicate) for each, in order.
        Raises ``services.embedded.ingest.StorageUnavailable`` when storage cannot take them."""
        ...

    async def caught_up(self, min_position: int | None, timeout: float) -> Caught: ...

    async def append_tick(self, at: datetime) -> int:
        """Append a clock tick at ``at`` to the log (scale-out: to every partition); the
        position a read can wait for to see its effects. Idempotent per instant."""
        ...


class CustomerReads(Runtime, Protocol):
    """The 360° view, the timeline, identity conflicts and dead letters."""

    async def caught_up(self, min_position: int | None, timeout: float) -> Caught: ...

    async def state(self, customer_id: str) -> bytes | None:
        """The stored state (JSON of ``to_state``) of a customer, or None."""
        ...

    async def owner(self, identifier: Identifier) -> str | None: ...

    def shown_as(self, customer_id: str) -> str:
        """The customer ``customer_id`` is shown as: itself, or the customer a merge
        absorbed it into (``projections.merge``; the scale-out runtime keeps no merges yet)."""
        ...

    async def timeline(self, customer_id: str, limit: int, cursor: str | None) -> TimelinePage:
        """Newest event time first, the events of every customer shown as ``customer_id``;
        ``cursor`` is a ``next_cursor`` this platform gave (``ValueError`` when it is not one)."""
        ...

    async def conflicts(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Identity conflicts with position above ``after``: {position, event_id,
        customer_id, identifiers: [{kind, owner}]}, by position."""
        ...

    async def dead_letters(self, after: int, limit: int) -> list[dict[str, Any]]: ...


@runtime_checkable
class MergeLog(Protocol):
    """Merges and undone merges (``projections.merge``): appended to the log, folded by
    the views (the embedded runtime; the scale-out runtime has none yet)."""

    def merges(self) -> Merges:
        """The merges in force, as the views have folded them."""
        ...

    async def merge_record(self, merge_id: str) -> dict[str, Any] | None:
        """A merge as recorded (survivor, absorbed, reason, actor, position, and its
        undoing: undone_position, undo_reason, undo_actor), or None."""
        ...

    async def merge_feed(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Merges made and undone with a log position above ``after``, in log order: the
        merge's record plus ``undone`` (1 for the row of its undoing)."""
        ...

    async def merge_refusal(self, position: int) -> str | None:
        """Why the merge or undo at ``position`` was refused when the views folded it (a
        race with another merge), or None."""
        ...


class LifecycleReads(Runtime, Protocol):
    """The lifecycle transition feed and the stage figures."""

    async def transitions(self, after: str | None, limit: int, customer_id: str | None) -> TransitionPage:
        """The transition feed, oldest first from the cursor ``after`` (a ``next_cursor``;
        ``ValueError`` when it is not one)."""
        ...

    async def lifecycle_figures(self, start: int, end: int) -> LifecycleFigures:
        """Customers per stage now, and (from, to, dwell µs) of transitions with
        ``start <= at < end`` (µs)."""
        ...

    async def append_tick(self, at: datetime) -> int:
        """Append a clock tick at ``at`` to the log (scale-out: to every partition); the
        position a read can wait for to see its effects. Idempotent per instant."""
        ...


class Health(Runtime, Protocol):
    """Readiness and the gauges computed when scraped."""

    async def readiness(self) -> Readiness: ...

    async def refresh_gauges(self) -> None: ...


History = tuple[int, int, int, float | None]
"""(first purchase µs, last purchase µs, distinct purchase days, mean repeat-purchase value
in the value currency or None): what the value model is fitted on, per customer."""


def history(days: int, first_day: int | None, bits: str, purchases: int, orders: int, spent: str,
            first_day_spend: str) -> History:
    """A customer's ``History`` from their stored purchase days (``PurchaseDays``: count,
    first day, days as hexadecimal bits) and totals; first and last purchase are taken at
    the start of their day (all BG/NBD reads of them), refunds being no purchase day."""
    if not days or first_day is None:
        return 0, 0, 0, None
    repeat = mean_repeat_purchase_value(days, purchases, orders, Decimal(spent), Decimal(first_day_spend))
    last_day = first_day + int(bits, 16).bit_length() - 1
    return first_day * DAY_US, last_day * DAY_US, days, None if repeat is None else float(repeat)



class ValueStore(Runtime, Protocol):
    """What the value model reads and keeps: purchase histories, RFM cells, fitted models."""

    async def purchase_histories(self, currency: str) -> list[History]:
        """Every customer who bought: first and last purchase, purchase days, mean
        repeat-purchase value in ``currency`` (``History``)."""
        ...

    async def purchases_by_currency(self) -> dict[str, tuple[int, int, Decimal]]:
        """Per currency: (customers, purchases, spend) over every customer."""
        ...

    def value_states(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(customer id, the stored state decoded, holding at least its
        ``projections.view.document.VALUE_FIELDS``) of every customer, streamed (embedded:
        in customer-id order, the value fields alone; scale-out: the whole stored state)."""
        ...

    def value_csv(self, model: ValueModel | None, cuts: Quintiles | None, base: TimeBase) -> AsyncIterator[bytes]:
        """Every customer's value card as CSV (``services.value.export.FIELDS``, the header
        first), streamed (embedded: in customer-id order, written by a worker process per
        core, ``services.embedded.value_export``; scale-out: here, from ``value_states``)."""
        ...

    async def platform_time(self) -> int | None:
        """The platform's time (µs): the latest clock tick the views have folded (scale-out:
        the latest over the partitions); None before the first tick."""
        ...

    async def save_model(self, name: str, body: bytes) -> None: ...

    async def model(self, name: str) -> bytes | None: ...

    async def rfm_cells(self) -> dict[Cell, Change]:
        """The portfolio's RFM cells (every partition's, merged)."""
        ...


@runtime_checkable
class PurchaseLog(Protocol):
    """Every purchase the views have folded, per customer: what the purchase model's
    validation refits on. Embedded: every purchase from the log; scale-out: every purchase
    day from the stored states (the log is Kafka's, kept for a retention period)."""

    async def purchase_log(self) -> tuple[list[str], list[int]]:
        """(customer id, purchase instant µs) of every purchase."""
        ...


class TriggerFeed(Runtime, Protocol):
    """Next-best-contact triggers and their per-rule figures."""

    async def triggers(self, after: str | None, limit: int, channel: str | None,
                       customer_id: str | None) -> TriggerPage:
        """Next-best-contact triggers after the cursor, oldest first (one channel or all)."""

    async def contact_figures(self) -> dict[tuple[str, int, str, str], int]:
        """Per-rule figures: (rule, version, channel or "", figure) -> count."""

    async def delivery_dead_letters(self, channel: str | None, limit: int) -> list[dict[str, Any]]:
        """The latest delivery dead letters, newest first."""


class DeliveryLedger(Runtime, Protocol):
    """Webhook delivery's bookkeeping: cursors, leases, counts once per trigger, dead letters."""

    async def count_delivered(self, rule: str, version: int, channel: str, trigger_id: str) -> bool:
        """Count a delivery once per trigger; whether this call counted it."""

    async def hold_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Take or renew the named lease for ``owner``; whether it holds it now."""

    async def release_lease(self, name: str, owner: str) -> None: ...

    async def delivery_cursor(self, name: str) -> str | None: ...

    async def save_delivery_cursor(self, name: str, cursor: str) -> None: ...

    async def store_delivery_dead_letter(self, letter: dict[str, Any]) -> None:
        """A trigger a webhook gave up on (``DeliveryDeadLetter`` as a dict)."""


class SegmentReads(Runtime, Protocol):
    """Customer segments: counts, members, the entry/exit feed."""

    @property
    def segments(self) -> SegmentSource:
        """Segment counts, members, entry/exit feed (services.embedded.segment_reads)."""
        ...


class Platform(Intake, CustomerReads, LifecycleReads, Health, ValueStore, TriggerFeed, DeliveryLedger, SegmentReads,
               Protocol):
    """A whole runtime, as ``touchstream run`` wires it: every port, and its start and stop.
    Each consumer (a router, the value job, webhook delivery) asks only for the ports it uses."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def timeline_cursor(at: int, tiebreak: str | int) -> str:
    """``{event time µs}.{tiebreak}``: the point a timeline page ended at."""
    return f"{at}.{tiebreak}"


def timeline_point(cursor: str) -> tuple[int, str]:
    """(event time µs, tiebreak) of a timeline cursor of the runtime's pattern."""
    at, _, tiebreak = cursor.partition(".")
    return int(at), tiebreak
