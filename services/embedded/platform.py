"""The embedded runtime, wired: every port of ``services.ports`` on one process and SQLite.

The embedded platform: one process owning the log, the view store, the projection
runner and the log writer. After a crash the runner resumes exactly where the last
committed batch ended and catches up in the background (``/readyz`` shows the log and
view positions). Closing drains the writer first (every accepted request is answered),
then stops the runner.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from projections.codec import format_instant, instant
from projections.identity import Identifier
from projections.lifecycle.stages import Transition
from projections.value.rfm_cells import Cell, Change
from projections.view.document import transition_document
from projections.view.state import instant_of, micros
from services import metrics
from services.clock import ClockScheduler
from services.embedded.eventlog import Appended, TouchpointLog, tick_document
from services.embedded.ingest import GroupCommitter
from services.embedded.purchase_log import purchases
from projections.merge_policy import MergePolicy
from services.embedded.runner import ProjectionRunner
from services.embedded.segment_reads import EmbeddedSegments
from services.embedded.storage.unit import open_current
from services.embedded.value_export import ParallelCsvExport
from services.gauges import set_segment_gauges, set_stage_gauges
from services.gc_tuning import tune_gc
from services.ports import (
    Caught,
    History,
    LifecycleFigures,
    Readiness,
    TimelinePage,
    TransitionPage,
    TriggerPage,
    Cursors,
    MICROS_PATTERN,
    timeline_cursor,
    timeline_point,
)
from services.settings import Settings

if TYPE_CHECKING:
    from projections.merge import Merges
    from projections.value.rfm_population import Quintiles
    from services.value.job import ValueModel
    from services.value.service import TimeBase

__all__ = ["EmbeddedPlatform", "transition_row_document", "feed_position"]

log = structlog.get_logger("touchstream.platform")


def transition_row_document(row: dict[str, Any]) -> dict[str, Any]:
    """A stored transition (a row of the embedded feed) as its LifecycleStageChanged document."""
    t = Transition(row["sequence"], row["at"], row["from_stage"], row["to_stage"], row["reason"], row["cause"],
                   row["at"] - row["dwell"])
    return transition_document(row["customer_id"], t, row["dwell"])


CURSORS = Cursors(
    feed=r"[0-9]{1,18}", feed_meaning="the number of the feed entry a page ended at",
    timeline=MICROS_PATTERN + r"\.[0-9]{1,18}",
    timeline_meaning="{event time in µs since 1970}.{log position} of the event a page ended at")


def feed_position(after: str | None) -> int:
    """The SQLite feed row an API cursor names (0: from the start)."""
    return int(after) if after else 0


class EmbeddedPlatform:
    runtime = "embedded"
    cursors = CURSORS

    def __init__(self, settings: Settings):
        self.settings = settings
        self.log = TouchpointLog(
            settings.log_path,
            lock_timeout_seconds=settings.sqlite_lock_timeout_seconds,
            max_bytes=settings.log_max_bytes,
        )
        self.views = open_current(settings.views_path, lock_timeout_seconds=settings.sqlite_lock_timeout_seconds)
        self.runner = ProjectionRunner(self.log, self.views, settings.fold_config(),
                                       batch=settings.projection_batch_events, cache_bytes=settings.state_cache_bytes,
                                       policy=MergePolicy(settings.merge_policy))
        segments = self.runner.segments
        if segments is None:
            raise RuntimeError("fold_config() always loads the segments file")
        self.views.segments.reconcile(segments)  # a changed definition: re-evaluated over every view
        self.segments = EmbeddedSegments(self.views, segments)
        self.writer = GroupCommitter(
            self.log, max_events=settings.group_commit_max_events, on_commit=self.runner.notify
        )
        self.draining = False
        self.clock = ClockScheduler(self, settings.clock_tick_seconds)
        self.csv_export = ParallelCsvExport(settings.views_path)

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
        self.csv_export.close()
        self.log.close()
        self.views.datastore.close()
        log.info("platform_stopped", view_position=self.runner.position)

    async def append(self, documents: list[dict[str, Any]]) -> list[Appended]:
        return await self.writer.append(documents)

    async def caught_up(self, min_position: int | None, timeout: float) -> Caught:
        if min_position and self.runner.position < min_position:  # else no thread needed
            if min_position > await asyncio.to_thread(self.log.head):
                return Caught(False, self.runner.position, beyond=True)
            reached = await asyncio.to_thread(self.runner.wait_for, min_position, timeout)
            return Caught(reached, self.runner.position)
        return Caught(True, self.runner.position)

    async def state(self, customer_id: str) -> bytes | None:
        # SQLite reads off the event loop: a read waiting on the runner's write lock must
        # not stall every other request
        return await asyncio.to_thread(self.views.customers.state, customer_id)

    async def owner(self, identifier: Identifier) -> str | None:
        owners = await asyncio.to_thread(self.views.identity.owners, [identifier])
        return owners.get(identifier)

    def shown_as(self, customer_id: str) -> str:
        return self.runner.merges.root(customer_id)

    def merges(self) -> Merges:
        return self.runner.merges

    async def merge_record(self, merge_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.views.identity.merge, merge_id)

    async def merge_feed(self, after: int, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.views.identity.merge_feed, after, limit)

    async def merge_refusal(self, position: int) -> str | None:
        letter = await asyncio.to_thread(self.views.dead_letters.at, position)
        return None if letter is None else str(letter["reason"])

    async def timeline(self, customer_id: str, limit: int, cursor: str | None) -> TimelinePage:
        before = None
        if cursor:
            at, position = timeline_point(cursor)
            before = (format_instant(instant_of(at)), int(position))
        # Up to 500 log records: read off the event loop so other requests keep flowing.
        merges = self.runner.merges
        group = sorted(merges.group(merges.root(customer_id)))
        page = await asyncio.to_thread(self.views.customers.timeline_positions, group, limit=limit + 1, before=before)
        more, page = len(page) > limit, page[:limit]
        found = await asyncio.to_thread(self.log.at_positions, [p for _, p in page])
        records = {r.position: r for r in found}
        events = [{"position": p, **records[p].document()} for _, p in page if p in records]
        return TimelinePage(events, timeline_cursor(micros(instant(page[-1][0])), page[-1][1]) if more else None)

    async def conflicts(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self.views.identity.conflicts, after=after, limit=limit)
        for row in rows:
            row["identifiers"] = orjson.loads(row.pop("detail"))
        return rows

    async def dead_letters(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self.views.dead_letters.rows, after=after, limit=limit)
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
        rows = await asyncio.to_thread(self.views.lifecycle.transitions, after=start, limit=limit, customer_id=customer_id)
        page = [transition_row_document(r) for r in rows]
        return TransitionPage(page, str(rows[-1]["feed"]) if rows else after)

    async def purchase_histories(self, currency: str) -> list[History]:
        return await asyncio.to_thread(self.views.customers.purchase_histories, currency)

    async def purchase_log(self) -> tuple[list[str], list[int]]:
        return await asyncio.to_thread(purchases, self.log, self.views)

    def value_csv(self, model: ValueModel | None, cuts: Quintiles | None, base: TimeBase) -> AsyncIterator[bytes]:
        return self.csv_export.csv(model, cuts, base, self.settings)

    async def value_states(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Read a page ahead: SQLite cuts the next page's states to their value fields in
        a thread while the caller computes the cards of this one."""
        read = self.views.customers.value_states_after
        pending = asyncio.ensure_future(asyncio.to_thread(read, "", 2000))
        try:
            while page := await pending:
                pending = asyncio.ensure_future(asyncio.to_thread(read, page[-1][0], 2000))
                for row in page:
                    yield row
        finally:
            pending.cancel()

    async def purchases_by_currency(self) -> dict[str, tuple[int, int, Decimal]]:
        return await asyncio.to_thread(self.views.customers.purchases_by_currency)

    async def platform_time(self) -> int | None:
        return await asyncio.to_thread(self.views.clock)

    async def save_model(self, name: str, body: bytes) -> None:
        await asyncio.to_thread(self.views.value.save_model, name, body)

    async def rfm_cells(self) -> dict[Cell, Change]:
        return await asyncio.to_thread(self.views.value.rfm_cells)

    async def model(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self.views.value.model, name)

    async def lifecycle_figures(self, start: int, end: int) -> LifecycleFigures:
        stages = await asyncio.to_thread(self.views.lifecycle.stage_counts)
        moves = await asyncio.to_thread(self.views.lifecycle.transitions_between, start, end)
        return LifecycleFigures(stages, moves)

    async def triggers(self, after: str | None, limit: int, channel: str | None,
                       customer_id: str | None) -> TriggerPage:
        start = feed_position(after)
        rows = await asyncio.to_thread(self.views.contacts.triggers, after=start, limit=limit, channel=channel,
                                       customer_id=customer_id)
        return TriggerPage([orjson.loads(doc) for _, doc in rows], str(rows[-1][0]) if rows else after)

    async def contact_figures(self) -> dict[tuple[str, int, str, str], int]:
        return await asyncio.to_thread(self.views.contacts.figures)

    async def count_delivered(self, rule: str, version: int, channel: str, trigger_id: str) -> bool:
        return await asyncio.to_thread(self.views.delivery.count_delivered, rule, version, channel, trigger_id)

    async def hold_lease(self, name: str, owner: str, seconds: float) -> bool:
        return True  # one process owns the embedded platform's data

    async def release_lease(self, name: str, owner: str) -> None:
        return None

    async def delivery_cursor(self, name: str) -> str | None:
        return await asyncio.to_thread(self.views.delivery.cursor, name)

    async def save_delivery_cursor(self, name: str, cursor: str) -> None:
        await asyncio.to_thread(self.views.delivery.save_cursor, name, cursor)

    async def store_delivery_dead_letter(self, letter: dict[str, Any]) -> None:
        await asyncio.to_thread(self.views.delivery.store_dead_letter, letter["trigger_id"], letter["channel"],
                                letter["at"], orjson.dumps(letter))

    async def delivery_dead_letters(self, channel: str | None, limit: int) -> list[dict[str, Any]]:
        rows = await asyncio.to_thread(self.views.delivery.dead_letters, channel, limit)
        return [orjson.loads(r) for r in rows]

    def _refresh_gauges(self) -> None:
        """Lag figures are computed when scraped: log head, view position, oldest pending age."""
        set_stage_gauges(self.views.lifecycle.stage_counts())
        set_segment_gauges(self.segments.definitions, self.views.segments.counts())
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
