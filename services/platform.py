"""What the HTTP API needs from a runtime (``Platform``), and the embedded runtime.

The API is written once against ``Platform``; ``EmbeddedPlatform`` (here: one process,
SQLite) and ``services.kafka_platform.KafkaPlatform`` (Kafka + Redis) implement it with
the same meaning, so the behavioural scenario suite passes on both.

Positions: ingest gives every accepted event a position (an integer, increasing in the
order events were acknowledged); a read passing ``min_position`` sees every event
acknowledged at or below it, or is told it cannot yet (``Caught.reached`` false).

The embedded platform: one process owning the log, the view store, the projection
runner and the log writer. After a crash the runner resumes exactly where the last
committed batch ended and catches up in the background (``/readyz`` shows the log and
view positions). Closing drains the writer first (every accepted request is answered),
then stops the runner.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import orjson
import structlog

from projections.codec import instant
from projections.identity import Identifier
from projections.lifecycle import STAGES, Transition
from projections.rfm_cells import Cell, Change
from projections.view_document import transition_document
from services import metrics
from services.clock import ClockScheduler
from services.eventlog import Appended, TouchpointLog, tick_document
from services.gc_tuning import tune_gc
from services.ingest import GroupCommitter
from services.runner import ProjectionRunner
from services.segment_reads import EmbeddedSegments, SegmentSource, set_segment_gauges
from services import segment_store
from services.settings import Settings
from services.viewstore import open_current

__all__ = ["Platform", "Caught", "TimelinePage", "TransitionPage", "TriggerPage", "LifecycleFigures", "Readiness",
           "EmbeddedPlatform", "cursor_out", "cursor_in", "transition_row_document"]

log = structlog.get_logger("touchstream.platform")


class Caught(NamedTuple):
    reached: bool
    position: int  # the position the views include (as far as known)


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
    triggers: list[dict[str, Any]]  # trigger documents (projections.nbc_document), oldest first
    next_cursor: str | None  # pass back as ``after``; stays put when nothing is new


@dataclass(frozen=True, slots=True)
class LifecycleFigures:
    stages: dict[str, int]
    transitions: list[tuple[str, str, int]]  # (from, to, dwell µs)


class Platform(Protocol):
    runtime: str
    settings: Settings
    draining: bool

    @property
    def segments(self) -> SegmentSource:
        """Segment counts, members, entry/exit feed (services.segment_reads)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, documents: list[dict[str, Any]]) -> Sequence[tuple[int, bool]]:
        """Store the canonical documents durably; (position, duplicate) for each, in order.
        Raises ``services.ingest.StorageUnavailable`` when storage cannot take them."""
        ...

    async def caught_up(self, min_position: int | None, timeout: float) -> Caught: ...

    async def state(self, customer_id: str) -> bytes | None:
        """The stored state (JSON of ``to_state``) of a customer, or None."""
        ...

    async def owner(self, identifier: Identifier) -> str | None: ...

    async def timeline(self, customer_id: str, limit: int, cursor: str | None) -> TimelinePage:
        """Newest event time first; ``cursor`` is a ``next_cursor`` this platform gave
        (``ValueError`` when it is not one)."""
        ...

    async def conflicts(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Identity conflicts with position above ``after``: {position, event_id,
        customer_id, identifiers: [{kind, owner}]}, by position."""
        ...

    async def dead_letters(self, after: int, limit: int) -> list[dict[str, Any]]: ...

    async def readiness(self) -> Readiness: ...

    async def refresh_gauges(self) -> None: ...

    async def append_tick(self, at: datetime) -> int:
        """Append a clock tick at ``at`` to the log (scale-out: to every partition); the
        position a read can wait for to see its effects. Idempotent per instant."""
        ...

    async def transitions(self, after: str | None, limit: int, customer_id: str | None) -> TransitionPage:
        """The transition feed, oldest first from the cursor ``after`` (a ``next_cursor``;
        ``ValueError`` when it is not one)."""
        ...

    async def lifecycle_figures(self, start: int, end: int) -> LifecycleFigures:
        """Customers per stage now, and (from, to, dwell µs) of transitions with
        ``start <= at < end`` (µs)."""
        ...

    async def purchase_histories(self) -> list[tuple[int, int, int]]:
        """(first purchase µs, last purchase µs, purchases) of every customer who bought."""
        ...

    async def save_model(self, name: str, body: bytes) -> None: ...

    async def rfm_cells(self) -> dict[Cell, Change]:
        """The portfolio's RFM cells (every partition's, merged)."""
        ...

    async def model(self, name: str) -> bytes | None: ...

    async def triggers(self, after: str | None, limit: int, channel: str | None,
                       customer_id: str | None) -> TriggerPage:
        """Next-best-contact triggers after the cursor, oldest first (one channel or all)."""

    async def contact_figures(self) -> dict[tuple[str, int, str, str], int]:
        """Per-rule figures: (rule, version, channel or "", figure) -> count."""

    async def count_delivered(self, rule: str, version: int, channel: str, trigger_id: str) -> bool:
        """Count a delivery once per trigger; whether this call counted it."""

    async def hold_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Take or renew the named lease for ``owner``; whether it holds it now."""

    async def release_lease(self, name: str, owner: str) -> None: ...

    async def delivery_cursor(self, name: str) -> str | None: ...

    async def save_delivery_cursor(self, name: str, cursor: str) -> None: ...

    async def store_delivery_dead_letter(self, letter: dict[str, Any]) -> None:
        """A trigger a webhook gave up on (``DeliveryDeadLetter`` as a dict)."""

    async def delivery_dead_letters(self, channel: str | None, limit: int) -> list[dict[str, Any]]:
        """The latest delivery dead letters, newest first."""


def set_stage_gauges(counts: dict[str, int]) -> None:
    for stage in STAGES:
        metrics.child(metrics.LIFECYCLE_CUSTOMERS, stage).set(counts.get(stage, 0))


def transition_row_document(row: dict[str, Any]) -> dict[str, Any]:
    """A stored transition (a row of the embedded feed) as its LifecycleStageChanged document."""
    t = Transition(row["sequence"], row["at"], row["from_stage"], row["to_stage"], row["reason"], row["cause"],
                   row["at"] - row["dwell"])
    return transition_document(row["customer_id"], t, row["dwell"])


def cursor_out(*parts: str | int) -> str:
    return base64.urlsafe_b64encode("|".join(str(p) for p in parts).encode()).decode()


def cursor_in(cursor: str) -> list[str]:
    try:
        # the last part may itself hold "|" (an event id is free text): split once
        return base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a cursor this API returned") from None


def feed_position(after: str | None) -> int:
    """The SQLite feed row an API cursor names (0: from the start); ValueError for a
    cursor this API did not give."""
    if not after:
        return 0
    parts = cursor_in(after)
    if len(parts) != 1 or not parts[0].isdigit():
        raise ValueError("not a cursor this API returned")
    return int(parts[0])


class EmbeddedPlatform:
    runtime = "embedded"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.log = TouchpointLog(
            settings.log_path,
            lock_timeout_seconds=settings.sqlite_lock_timeout_seconds,
            max_bytes=settings.log_max_bytes,
        )
        self.views = open_current(settings.views_path, lock_timeout_seconds=settings.sqlite_lock_timeout_seconds)
        self.runner = ProjectionRunner(self.log, self.views, settings.fold_config(),
                                       batch=settings.projection_batch_events, cache_bytes=settings.state_cache_bytes)
        # A changed definition: re-evaluated. fold_config() always loads the segments file, never None.
        segment_store.reconcile(self.views, self.runner.segments)  # type: ignore[arg-type]
        self.segments = EmbeddedSegments(self.views, self.runner.segments)  # type: ignore[arg-type]
        self.writer = GroupCommitter(
            self.log, max_events=settings.group_commit_max_events, on_commit=self.runner.notify
        )
        self.draining = False
        self.clock = ClockScheduler(self, settings.clock_tick_seconds)

    async def start(self) -> None:
        tune_gc()
        self.runner.start()
        self.clock.start()
        log.info("platform_started", runtime=self.runtime, log_position=self.log.head(),
                 view_position=self.runner.position)

    async def close(self) -> None:
        self.draining = True
        await self.clock.stop()
        self.writer.close()
        self.runner.stop()
        self.log.close()
        self.views.datastore.close()
        log.info("platform_stopped", view_position=self.runner.position)

    async def append(self, documents: list[dict[str, Any]]) -> list[Appended]:
        return await self.writer.append(documents)

    async def caught_up(self, min_position: int | None, timeout: float) -> Caught:
        if min_position and self.runner.position < min_position:  # else no thread needed
            reached = await asyncio.to_thread(self.runner.wait_for, min_position, timeout)
            return Caught(reached, self.runner.position)
        return Caught(True, self.runner.position)

    async def state(self, customer_id: str) -> bytes | None:
        # SQLite reads off the event loop: a read waiting on the runner's write lock must
        # not stall every other request
        return await asyncio.to_thread(self.views.state, customer_id)

    async def owner(self, identifier: Identifier) -> str | None:
        owners = await asyncio.to_thread(self.views.owners, [identifier])
        return owners.get(identifier)

    async def timeline(self, customer_id: str, limit: int, cursor: str | None) -> TimelinePage:
        before = None
        if cursor:
            parts = cursor_in(cursor)
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError("not a cursor this API returned")
            before = (parts[0], int(parts[1]))
        # Up to 500 log records: read off the event loop so other requests keep flowing.
        page = await asyncio.to_thread(self.views.timeline_positions, customer_id, limit=limit + 1, before=before)
        more, page = len(page) > limit, page[:limit]
        found = await asyncio.to_thread(self.log.at_positions, [p for _, p in page])
        records = {r.position: r for r in found}
        events = [{"position": p, **records[p].document()} for _, p in page if p in records]
        return TimelinePage(events, cursor_out(*page[-1]) if more else None)

    async def conflicts(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self.views.rows, "identity_conflicts", after=after, limit=limit)
        for row in rows:
            row["identifiers"] = orjson.loads(row.pop("detail"))
        return rows

    async def dead_letters(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self.views.rows, "dead_letters", after=after, limit=limit)
        for row in rows:
            row.pop("record")
        return rows

    async def readiness(self) -> Readiness:
        checks: dict[str, str] = {}
        try:
            head = await asyncio.to_thread(self.log.head)
            checks["log"] = "ok"
        except Exception as error:  # noqa: BLE001
            head, checks["log"] = 0, f"failing: {type(error).__name__}"
        runner = self.runner
        checks["projection"] = (
            "ok" if runner.alive and runner.failed is None
            else f"failing: {type(runner.failed).__name__}" if runner.failed else "stopped"
        )
        checks["writer"] = "ok" if self.writer.alive else "stopped"
        checks["draining"] = "yes" if self.draining else "no"
        return Readiness(checks, head, runner.position)

    async def refresh_gauges(self) -> None:
        await asyncio.to_thread(self._refresh_gauges)

    async def append_tick(self, at: datetime) -> int:
        (position, _), = await self.writer.append([tick_document(at, datetime.now(UTC))])
        return position

    async def transitions(self, after: str | None, limit: int, customer_id: str | None) -> TransitionPage:
        start = feed_position(after)
        rows = await asyncio.to_thread(self.views.transitions, after=start, limit=limit, customer_id=customer_id)
        page = [transition_row_document(r) for r in rows]
        return TransitionPage(page, cursor_out(rows[-1]["feed"]) if rows else after)

    async def purchase_histories(self) -> list[tuple[int, int, int]]:
        return await asyncio.to_thread(self.views.purchase_histories)

    async def save_model(self, name: str, body: bytes) -> None:
        await asyncio.to_thread(self.views.save_model, name, body)

    async def rfm_cells(self) -> dict[Cell, Change]:
        return await asyncio.to_thread(self.views.rfm_cells)

    async def model(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self.views.model, name)

    async def lifecycle_figures(self, start: int, end: int) -> LifecycleFigures:
        stages = await asyncio.to_thread(self.views.stage_counts)
        moves = await asyncio.to_thread(self.views.transitions_between, start, end)
        return LifecycleFigures(stages, moves)

    async def triggers(self, after: str | None, limit: int, channel: str | None,
                       customer_id: str | None) -> TriggerPage:
        start = feed_position(after)
        rows = await asyncio.to_thread(self.views.triggers, after=start, limit=limit, channel=channel,
                                       customer_id=customer_id)
        return TriggerPage([orjson.loads(doc) for _, doc in rows], cursor_out(rows[-1][0]) if rows else after)

    async def contact_figures(self) -> dict[tuple[str, int, str, str], int]:
        return await asyncio.to_thread(self.views.contact_figures)

    async def count_delivered(self, rule: str, version: int, channel: str, trigger_id: str) -> bool:
        return await asyncio.to_thread(self.views.count_delivered, rule, version, channel, trigger_id)

    async def hold_lease(self, name: str, owner: str, seconds: float) -> bool:
        return True  # one process owns the embedded platform's data

    async def release_lease(self, name: str, owner: str) -> None:
        return None

    async def delivery_cursor(self, name: str) -> str | None:
        return await asyncio.to_thread(self.views.delivery_cursor, name)

    async def save_delivery_cursor(self, name: str, cursor: str) -> None:
        await asyncio.to_thread(self.views.save_delivery_cursor, name, cursor)

    async def store_delivery_dead_letter(self, letter: dict[str, Any]) -> None:
        await asyncio.to_thread(self.views.store_delivery_dead_letter, letter["trigger_id"], letter["channel"],
                                letter["at"], orjson.dumps(letter))

    async def delivery_dead_letters(self, channel: str | None, limit: int) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self.views.delivery_dead_letters, channel, limit)
        return [orjson.loads(r) for r in rows]

    def _refresh_gauges(self) -> None:
        """Lag figures are computed when scraped: log head, view position, oldest pending age."""
        set_stage_gauges(self.views.stage_counts())
        set_segment_gauges(self.segments.definitions, segment_store.counts(self.views))
        head, position = self.log.head(), self.runner.position
        metrics.LOG_POSITION.set(head)
        metrics.PROJECTION_POSITION.set(position)
        metrics.PROJECTION_LAG_EVENTS.set(max(0, head - position))
        age = 0.0
        if head > position:
            pending = self.log.read(position, 1)
            if pending:
                received = instant(pending[0].document()["received_at"])
                age = max(0.0, (datetime.now(UTC) - received).total_seconds())
        metrics.PROJECTION_LAG_SECONDS.set(age)
