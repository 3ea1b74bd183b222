"""The scale-out runtime's side of the HTTP API: ingest to Kafka, reads from Redis.

Ingest (``append``), per request batch:

1. events already acknowledged (their event id has a position in Redis) are answered
   ``duplicate`` at once, with the first copy's position; so is a repeat within the batch;
2. identity is resolved with the pure core (``projections.identity.resolve``) against the
   Redis identifier index, and new identifiers are claimed with ``SET NX GET`` (first
   writer wins). A claim lost to a concurrent request updates what is known and the batch
   is resolved again, so every event ends with the decision the index supports;
3. the events go to the touchpoints topic, keyed by the decided customer, the decision in
   a header (``services.scaleout.kafka.records``), ``acks=all``;
4. only once the broker acknowledged them, one Lua script gives each its position and
   records, per partition, the highest offset acknowledged up to that position. A copy
   that raced another copy of the same event is answered ``duplicate``: it is on the topic
   twice, and the worker's fold removes it by event id.

Reads: views, identifiers and timelines are in Redis, written by the workers
(``services.scaleout.worker``). A read with ``min_position`` waits until the watermark (the
highest position whose acknowledged events are all folded, see
``RedisViewStore.watermark``) reaches it: the same read-your-writes as the embedded runtime.

Failures: an unreachable broker is ``StorageUnavailable``, an unreachable Redis
``ViewStoreUnavailable``, a silent schema registry ``RegistryUnavailable``: the API
answers each with 503 and Retry-After. If the answer is lost after the broker
acknowledged, the sender's retry produces another copy, which the worker drops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from projections.codec import from_dict, instant, to_dict
from projections.identity import Identifier, Resolution, identifiers_of, resolve
from projections.touchpoints import Touchpoint
from projections.value.purchase_days import DAY_US, PurchaseDays
from projections.value.rfm_cells import Cell, Change
from projections.view.state import micros
from services import metrics
from services.clock import ClockScheduler
from services.contracts import decode
from services.contracts.confluent import framed_schema_id
from services.gauges import set_segment_gauges, set_stage_gauges
from services.gc_tuning import tune_gc
from services.ports import (
    Caught,
    History,
    LifecycleFigures,
    Readiness,
    StorageUnavailable,
    TimelinePage,
    TransitionPage,
    TriggerPage,
    Cursors,
    MICROS_PATTERN,
    timeline_cursor,
    timeline_point,
)
from services.scaleout.kafka.publisher import TouchpointPublisher
from services.scaleout.kafka.records import tick_record
from services.scaleout.kafka.topics import TopicCreationFailed, ensure_topics
from services.scaleout.redis.feeds import FeedCursor, feed_cursor_pattern
from services.scaleout.redis.segments import RedisSegments
from services.scaleout.redis.views import RedisViewStore, ViewStoreUnavailable
from services.segments.file import load_segments
from services.settings import Settings
from services.value.export import csv_rows

if TYPE_CHECKING:
    from projections.value.rfm_population import Quintiles
    from services.value.job import ValueModel
    from services.value.service import TimeBase

__all__ = ["KafkaPlatform", "ResolutionRace"]

log = structlog.get_logger("touchstream.kafka_platform")

RESOLUTION_ROUNDS = 5
READINESS_KAFKA_SECONDS = 1.0  # a broker slower than this to answer metadata is not ready for ingest
STREAM_SCAN_LIMIT = 100_000  # a feed filtered by customer reads at most this many entries per page


class ResolutionRace(StorageUnavailable):
    """Concurrent requests kept claiming this batch's identifiers; retry."""


def cursors(partitions: int) -> Cursors:
    """The cursor grammars over a topic of ``partitions`` partitions."""
    return Cursors(
        feed=feed_cursor_pattern(partitions),
        feed_meaning=("the last entry read of each partition's Redis stream, '.'-separated stream ids in "
                      f"partition order ({partitions} of them)"),
        timeline=MICROS_PATTERN + r"\.[A-Za-z0-9][A-Za-z0-9._~:@-]{0,127}",
        timeline_meaning="{event time in µs since 1970}.{event id} of the event a page ended at")


class KafkaPlatform:
    runtime = "kafka"

    def __init__(self, settings: Settings):
        if any(setting != "never" for setting in settings.merge_policy.values()):
            raise ValueError("TOUCHSTREAM_MERGE_POLICY: the scale-out runtime keeps no merges yet "
                             "(docs/IDENTITY.md); unset it, or run the embedded runtime")
        self.settings = settings
        self.cursors = cursors(settings.kafka_partitions)
        self.topic = settings.kafka_touchpoints_topic
        self.publisher = TouchpointPublisher.from_settings(settings)
        self.store = RedisViewStore(settings.redis_url, settings.redis_prefix, partitions=settings.kafka_partitions,
                                    timeout=settings.redis_timeout_seconds)
        self.segments = RedisSegments(self.store, load_segments(settings.segments_file), settings.max_future_seconds)
        self.draining = False
        # every API process ticks; ticks of the same second on a partition are one event
        self.clock = ClockScheduler(self, settings.clock_tick_seconds)

    async def start(self) -> None:
        tune_gc()
        # Neither the broker nor Redis has to be up for the API to start: /readyz says
        # what is missing and ingest answers 503 until they are.
        try:
            await ensure_topics(self.settings.kafka_bootstrap, self.settings.kafka_partitions,
                                touchpoints=self.topic,
                                replication_factor=self.settings.kafka_replication_factor,
                                request_timeout_ms=self.settings.kafka_request_timeout_ms)
            await self.publisher.start()
        except (StorageUnavailable, TopicCreationFailed) as error:
            log.warning("kafka_not_ready_at_start", error=type(error).__name__, detail=str(error)[:300])
        self.clock.start()
        log.info("platform_started", runtime=self.runtime, partitions=self.settings.kafka_partitions)

    async def close(self) -> None:
        self.draining = True
        await self.clock.stop()
        await self.publisher.stop()
        await self.store.aclose()
        log.info("platform_stopped", runtime=self.runtime)

    # -- ingest ----------------------------------------------------------------------------
    async def append(self, documents: list[dict[str, Any]]) -> list[tuple[int, bool]]:
        if self.publisher.idempotent is None:  # not started yet (broker was down at start)
            await self.publisher.start()
        return await self._append(documents)

    async def _append(self, documents: list[dict[str, Any]]) -> list[tuple[int, bool]]:
        ids = [d["event_id"] for d in documents]
        answers: list[tuple[int, bool] | None] = [None] * len(documents)
        known_positions = await self.store.event_positions(ids)
        fresh: dict[str, int] = {}  # event id -> index of its first copy in this batch
        repeats: list[int] = []
        for i, event_id in enumerate(ids):
            if event_id in known_positions:
                answers[i] = (known_positions[event_id], True)
            elif event_id in fresh:
                repeats.append(i)
            else:
                fresh[event_id] = i
        order = list(fresh.values())
        if order:
            events = [from_dict(documents[i]) for i in order]
            resolutions = await self._resolve(events)
            acks = await self.publisher.publish(
                [documents[i] for i in order], [(r.customer_id, r.conflicts) for r in resolutions]
            )
            answered = await self.store.acknowledge(
                self.topic, [(ids[i], partition, offset) for i, (partition, offset) in zip(order, acks, strict=True)]
            )
            for i, answer in zip(order, answered, strict=True):
                answers[i] = answer
        for i in repeats:
            answers[i] = (answers[fresh[ids[i]]][0], True)  # type: ignore[index]
        return answers  # type: ignore[return-value]

    async def _resolve(self, events: list[Touchpoint]) -> list[Resolution]:
        identifiers = {i for e in events for i in identifiers_of(e.customer)}
        known = await self.store.owners(identifiers)
        for _ in range(RESOLUTION_ROUNDS):
            running, claims, resolutions = dict(known), {}, []
            for event in events:
                resolution = resolve(event, running)
                for identifier in resolution.links:
                    running[identifier] = claims[identifier] = resolution.customer_id
                resolutions.append(resolution)
            owners = await self.store.claim_all(list(claims.items()))
            if all(owner == claims[i] for i, owner in zip(claims, owners, strict=True)):
                return resolutions
            # another request claimed first (nothing of this batch was written): decide again
            known.update({i: owner for i, owner in zip(claims, owners, strict=True) if owner})
        raise ResolutionRace("identifiers of this batch were claimed concurrently too often")

    # -- reads -----------------------------------------------------------------------------
    async def caught_up(self, min_position: int | None, timeout: float) -> Caught:
        deadline, pause = time.monotonic() + timeout, 0.002
        while True:
            head, mark = await self.store.watermark(self.topic, self.settings.kafka_partitions)
            if not min_position or mark >= min_position:
                return Caught(True, mark)
            if min_position > head:
                return Caught(False, mark, beyond=True)
            if time.monotonic() >= deadline:
                return Caught(False, mark)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)

    async def state(self, customer_id: str) -> bytes | None:
        return (await self.store.states([customer_id])).get(customer_id)

    async def owner(self, identifier: Identifier) -> str | None:
        return (await self.store.owners([identifier])).get(identifier)

    def shown_as(self, customer_id: str) -> str:
        return customer_id  # no merges on this runtime yet (docs/IDENTITY.md)

    async def timeline(self, customer_id: str, limit: int, cursor: str | None) -> TimelinePage:
        before = None
        if cursor:
            before = timeline_point(cursor)
        page = await self.store.timeline_page(customer_id, limit=limit + 1, before=before)
        more, page = len(page) > limit, page[:limit]
        positions = await self.store.event_positions([event_id for _, event_id, _ in page])
        registry = self.publisher.schema_registry
        if registry is not None:  # records framed with ids this process has not met yet
            await registry.learn({i for _, _, record in page if (i := framed_schema_id(record)) is not None})
        events = [{"position": positions.get(event_id), **to_dict(decode(record))} for _, event_id, record in page]
        return TimelinePage(events, timeline_cursor(page[-1][0], page[-1][1]) if more else None)

    async def conflicts(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await self._stream_rows("conflicts", after, limit)
        return [{"position": r["position"], "event_id": r["event_id"], "customer_id": r["customer_id"],
                 "identifiers": r["conflicts"]} for r in rows]

    async def dead_letters(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await self._stream_rows("deadletters", after, limit)
        return [{"position": r["position"], "event_id": r["event_id"], "reason": r["reason"], "topic": r["topic"],
                 "partition": r["partition"], "offset": r["offset"]} for r in rows]

    async def _stream_rows(self, stream: Any, after: int, limit: int) -> list[dict[str, Any]]:
        return await self.store.listing(stream, after, limit)

    # -- operations ------------------------------------------------------------------------
    async def readiness(self) -> Readiness:
        checks: dict[str, str] = {"draining": "yes" if self.draining else "no"}
        head = mark = 0
        try:
            head, mark = await self.store.watermark(self.topic, self.settings.kafka_partitions)
            checks["redis"] = "ok"
        except ViewStoreUnavailable as error:
            checks["redis"] = f"failing: {type(error.__cause__ or error).__name__}"
        if self.publisher.idempotent is None:
            try:
                await self.publisher.start()
            except StorageUnavailable:
                pass
        problem = await self.publisher.probe(READINESS_KAFKA_SECONDS)
        checks["kafka"] = "ok" if problem is None else f"failing: {problem}"
        return Readiness(checks, head, mark)

    # -- lifecycle ----------------------------------------------------------------------------
    async def append_tick(self, at: datetime) -> int:
        """One tick record per partition of the touchpoints topic (each worker moves its
        own customers on), acknowledged like events: the position covers them all."""
        if self.publisher.idempotent is None:
            await self.publisher.start()
        records = [tick_record(at, p) for p in range(self.settings.kafka_partitions)]
        known = await self.store.event_positions([tick_id for tick_id, _, _ in records])
        fresh = [(p, r) for p, r in enumerate(records) if r[0] not in known]
        positions = list(known.values())
        if fresh:
            acks = await self.publisher.publish_ticks([(p, value, headers) for p, (_, value, headers) in fresh])
            answered = await self.store.acknowledge(
                self.topic, [(tick_id, partition, offset) for (_, (tick_id, _, _)), (partition, offset)
                             in zip(fresh, acks, strict=True)])
            positions += [position for position, _ in answered]
        return max(positions)

    async def transitions(self, after: str | None, limit: int, customer_id: str | None) -> TransitionPage:
        async def read(cursor: str | None, count: int) -> list[tuple[str, bytes]]:
            return await self.store.transitions(after=cursor, count=count)

        page, cursor = await _stream_page(read, after, limit, customer_id)
        return TransitionPage(page, cursor)

    async def triggers(self, after: str | None, limit: int, channel: str | None,
                       customer_id: str | None) -> TriggerPage:
        """From the channel's trigger stream (or the all-channel one)."""
        async def read(cursor: str | None, count: int) -> list[tuple[str, bytes]]:
            return await self.store.triggers(channel=channel, after=cursor, count=count)

        page, cursor = await _stream_page(read, after, limit, customer_id)
        return TriggerPage(page, cursor)

    async def contact_figures(self) -> dict[tuple[str, int, str, str], int]:
        return await self.store.contact_figures()

    async def count_delivered(self, rule: str, version: int, channel: str, trigger_id: str) -> bool:
        return await self.store.count_delivered(rule, version, channel, trigger_id)

    async def hold_lease(self, name: str, owner: str, seconds: float) -> bool:
        return await self.store.hold_lease(name, owner, seconds)

    async def release_lease(self, name: str, owner: str) -> None:
        await self.store.release_lease(name, owner)

    async def delivery_cursor(self, name: str) -> str | None:
        return await self.store.delivery_cursor(name)

    async def save_delivery_cursor(self, name: str, cursor: str) -> None:
        await self.store.save_delivery_cursor(name, cursor)

    async def store_delivery_dead_letter(self, letter: dict[str, Any]) -> None:
        await self.store.store_delivery_dead_letter(letter["trigger_id"], letter["channel"],
                                                    micros(instant(letter["at"])), orjson.dumps(letter))

    async def delivery_dead_letters(self, channel: str | None, limit: int) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for raw in await self.store.delivery_dead_letters(channel, limit)]

    async def lifecycle_figures(self, start: int, end: int) -> LifecycleFigures:
        """A transition is committed after its instant (event times are at most
        ``max_future_seconds`` ahead of the clock), so the scan of the transition stream
        starts at the stream id of ``start`` less that margin and reads to the end."""
        stages = await self.store.stage_counts()
        moves: list[tuple[str, str, int]] = []
        first_ms = max(0, (start - self.settings.max_future_seconds * 1_000_000) // 1000)
        cursor: str | FeedCursor | None = FeedCursor.at_millisecond(first_ms, self.store.partitions)
        while True:
            entries = await self.store.transitions(after=cursor, count=5000)
            if not entries:
                break
            for entry_id, record in entries:
                cursor = entry_id
                t = orjson.loads(record)
                if start <= micros(instant(t["at"])) < end:
                    moves.append((t["from_stage"], t["to_stage"], round(t["dwell_seconds"] * 1e6)))
        return LifecycleFigures(stages, moves)

    # -- customer value --------------------------------------------------------------------
    async def purchase_histories(self, currency: str) -> list[History]:
        return await self.store.purchase_histories(currency)

    async def purchase_log(self) -> tuple[list[str], list[int]]:
        """(customer id, the start of a purchase day, µs) of every purchase day the stored
        states keep: the validation's input here, where the log is Kafka's (kept for a
        retention period) and scanning it is not an API request's work. The model counts
        purchase days, so the table is the embedded one's whenever calibration_end and
        observation_end fall at the start of a UTC day (docs/VALUE.md)."""
        who: list[str] = []
        when: list[int] = []
        async for customer, raw in self.store.every_state():
            count, first, bits, _ = orjson.loads(raw)["purchase_days"]
            if count:
                days = PurchaseDays(count, first, int(bits, 16)).days()
                who += [customer] * len(days)
                when += [day * DAY_US for day in days]
        return who, when

    def value_csv(self, model: ValueModel | None, cuts: Quintiles | None, base: TimeBase) -> AsyncIterator[bytes]:
        return csv_rows(self.value_states(), model, cuts, base, self.settings)

    async def value_states(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        async for customer_id, raw in self.store.every_state():
            yield customer_id, orjson.loads(raw)

    async def purchases_by_currency(self) -> dict[str, tuple[int, int, Decimal]]:
        return await self.store.purchases_by_currency()

    async def platform_time(self) -> int | None:
        return await self.store.latest_clock(self.topic, self.settings.kafka_partitions)

    async def save_model(self, name: str, body: bytes) -> None:
        await self.store.save_model(name, body)

    async def rfm_cells(self) -> dict[Cell, Change]:
        return await self.store.rfm_cells(self.topic, self.settings.kafka_partitions)

    async def model(self, name: str) -> bytes | None:
        return await self.store.model(name)

    async def refresh_gauges(self) -> None:
        set_stage_gauges(await self.store.stage_counts())
        set_segment_gauges(self.segments.definitions, await self.segments.counts())
        head, mark = await self.store.watermark(self.topic, self.settings.kafka_partitions)
        metrics.LOG_POSITION.set(head)
        metrics.PROJECTION_POSITION.set(mark)
        metrics.PROJECTION_LAG_EVENTS.set(max(0, head - mark))


async def _stream_page(read: Callable[[str | None, int], Awaitable[list[tuple[str, bytes]]]], after: str | None,
                       limit: int, customer_id: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a Redis stream feed after the API cursor ``after``: the documents (one
    customer's, when given) and the cursor past the last entry read. A customer filter
    scans at most ``STREAM_SCAN_LIMIT`` entries per call, the cursor moving past them."""
    cursor = after or None
    page: list[dict[str, Any]] = []
    scanned = 0
    while len(page) < limit and scanned < STREAM_SCAN_LIMIT:
        entries = await read(cursor, max(limit, 500) if customer_id else limit)
        if not entries:
            break
        scanned += len(entries)
        for entry_id, record in entries:
            document = orjson.loads(record)
            if customer_id is None or document["customer_id"] == customer_id:
                if len(page) == limit:
                    break
                page.append(document)
            cursor = entry_id
        else:
            continue
        break
    return page, cursor or after
