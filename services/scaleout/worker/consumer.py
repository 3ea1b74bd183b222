"""The view worker's hot path: a batched aiokafka consumer folding touchpoints into Redis.

Loop, per poll (up to ``worker_batch_events`` records over the owned partitions):

1. decode every record (``fold.decode``); undecodable ones become dead letters;
2. load the stored states of every customer the poll names, in one MGET;
3. fold each partition's records with the core (``fold.fold``);
4. publish what the poll derived — changed customer views (compacted topic) and dead
   letters with their reasons — and wait for the broker's acknowledgement;
5. commit each partition's batch to Redis with its last offset, atomically and fenced
   (``RedisViewStore.commit``): a commit for a partition whose stored position has moved
   on (another worker owns it now) changes nothing, and the worker re-seeks.

Redis, not the consumer group, holds the position of record. On assignment each
partition is paused until its stored position is read, then sought to position + 1, so a
restart or a rebalance resumes exactly after the last committed batch: nothing lost,
nothing folded twice (and a record folded twice would change nothing: the fold is
idempotent by event id). Group offsets are committed too, as a hint for monitoring tools.
The rebalance callbacks run between any two awaits of a batch, so a batch takes its
partition's position, clock and ownership epoch when it is polled, is dropped if the
partition was revoked before it folds, and feeds the position, clock and view cache only
if the partition is still held under the same assignment when its commit returns.

When Kafka or Redis fails mid-batch the batch is dropped, the worker waits (bounded
backoff) and resumes from the stored positions: it pauses and recovers by itself and
never dies on a bad record or an outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from projections.view.document import STATE_FORMAT
from services import metrics
from services.contracts import default_registry
from services.contracts.confluent import ConfluentRegistry, RegistryUnavailable, framed_schema_id
from services.nbc.figures import count_contact_figures
from services.scaleout.kafka.topics import (
    CUSTOMER_VIEWS_TOPIC,
    DEAD_LETTERS_TOPIC,
    LIFECYCLE_TOPIC,
    SEGMENTS_TOPIC,
    trigger_topic,
)
from services.scaleout.redis.segments import check_definitions
from services.scaleout.redis.views import RedisViewStore, ViewStoreUnavailable, partition_commit
from services.scaleout.worker.fold import (
    Decoded,
    Folded,
    decode,
    due_fetch_size,
    fold,
    transition_headers,
    trigger_headers,
    view_event_headers,
)
from services.scaleout.worker.segment_fold import segment_headers
from services.settings import Settings
from services.view_cache import StateCache, States

__all__ = ["ViewWorker"]

log = structlog.get_logger("touchstream.worker")

HINT_COMMIT_SECONDS = 5.0
IDLE_POLLS = 20  # empty polls in a row (up to 200 ms each) before the idle fetch wait


class _Claim(NamedTuple):
    """What a partition batch folds on, taken when it is polled: the ownership epoch, the
    stored position (the commit's fence) and the partition's clock."""

    epoch: int
    base: int
    clock: int | None


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: ViewWorker):
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.worker.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.worker.assigned(set(assigned))


class ViewWorker:
    def __init__(self, settings: Settings, *, store: RedisViewStore | None = None, client_id: str = "touchstream-worker"):
        self.settings = settings
        self.topic = settings.kafka_touchpoints_topic
        self.client_id = client_id
        self.store = store or RedisViewStore(settings.redis_url, settings.redis_prefix,
                                             partitions=settings.kafka_partitions,
                                             timeout=settings.redis_timeout_seconds)
        self.owned: set[TopicPartition] = set()
        self.unpositioned: set[TopicPartition] = set()
        self.positions: dict[int, int] = {}
        self.clocks: dict[int, int | None] = {}  # per partition: the latest clock tick folded
        # per partition: bumped on every revoke and assignment. A batch (or a position read)
        # belongs to the assignment it started under; the rebalance callbacks run in the
        # consumer's coordinator task, between any two awaits of a batch, so what a batch
        # learnt under an older assignment must not be folded on nor remembered.
        self.epochs: dict[int, int] = {}
        self.config = settings.fold_config()
        self.segments = self.config.segments
        self.joined = False
        self.draining = False  # from the stop signal on: /readyz answers 503 until exit
        self.stalled: str | None = None  # why the last batch failed, until one succeeds
        self.refused = False  # the prefix holds states of another format: nothing is folded
        self.folded = 0
        self.batch_limit = settings.worker_batch_events  # records a poll takes (halved after a publish timeout)
        self._stopping = asyncio.Event()
        self._running, self._finished = asyncio.Event(), asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._hinted = time.monotonic()
        self._empty_polls = 0  # polls in a row that brought no record (adaptive fetch wait)
        self.cache = StateCache(settings.state_cache_bytes)
        self.schema_registry = ConfluentRegistry(settings.schema_registry_url) if settings.schema_registry_url else None

    # -- group membership ------------------------------------------------------------------
    def revoked(self, partitions: set[TopicPartition]) -> None:
        self.cache.clear()  # views of partitions now owned elsewhere may change there
        self.owned -= partitions
        self.unpositioned -= partitions
        for tp in partitions:
            self._new_epoch(tp.partition)
            self.positions.pop(tp.partition, None)
            self.clocks.pop(tp.partition, None)
        log.info("partitions_revoked", partitions=sorted(tp.partition for tp in partitions))

    def assigned(self, partitions: set[TopicPartition]) -> None:
        self.joined = True
        self.cache.clear()  # another worker may have moved these customers on since we held them
        self.owned |= partitions
        self.unpositioned |= partitions
        for tp in partitions:
            self._new_epoch(tp.partition)
        if partitions and self._consumer is not None:
            self._consumer.pause(*partitions)  # until the stored position is known
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in partitions))

    def _new_epoch(self, partition: int) -> None:
        self.epochs[partition] = self.epochs.get(partition, 0) + 1

    def _current(self, partition: int, epoch: int) -> bool:
        return self.epochs.get(partition, 0) == epoch

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap, client_id=f"{self.client_id}-derived", acks="all",
            request_timeout_ms=s.kafka_request_timeout_ms, linger_ms=2,
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            client_id=self.client_id,
            group_id=s.worker_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=s.kafka_fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=int(s.kafka_session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(s.kafka_heartbeat_seconds * 1000),
            request_timeout_ms=max(s.kafka_request_timeout_ms, int(s.kafka_session_timeout_seconds * 1000) + 5000),
        )
        await _retry_start(self._producer, "producer", self._stopping)
        held = await self.store.adopt_state_format(self.topic, s.kafka_partitions, STATE_FORMAT)
        if held != STATE_FORMAT:
            # Folding onto states of another format would dead-letter every event of every
            # customer: refuse, say why and what to do; /readyz answers 503 meanwhile.
            self.stalled = "state-format"
            log.error("state_format_mismatch", stored=held if held is not None else "before 4", expected=STATE_FORMAT,
                      action="point TOUCHSTREAM_REDIS_PREFIX at a new prefix (the workers refold the touchpoints "
                             "topic from its start) or delete this prefix's keys")
            self.refused = True
            return
        changed = await check_definitions(self.store, self.segments)  # type: ignore[arg-type]  # fold_config sets them
        if changed:  # segment ids only: definitions are configuration, not customer data
            log.warning("segment_definitions_changed", segments=changed, action="touchstream segments rebuild")
        self._consumer.subscribe([self.topic], listener=_Assignments(self))
        await _retry_start(self._consumer, "consumer", self._stopping)

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Let the batch in flight finish (published and committed), then leave the group
        and close: a graceful stop hands partitions over with nothing to refold."""
        self.draining = True
        self._stopping.set()
        if self._running.is_set():
            try:
                await asyncio.wait_for(self._finished.wait(), drain_seconds)
            except TimeoutError:
                log.warning("worker_drain_timeout", seconds=drain_seconds)
        for client in (self._consumer, self._producer):
            if client is not None:
                try:
                    await client.stop()
                except Exception as error:  # noqa: BLE001 - stopping anyway
                    log.warning("client_stop_failed", error=type(error).__name__)
        await self.store.aclose()
        if self.schema_registry is not None:
            await self.schema_registry.aclose()

    async def run(self) -> None:
        """Fold until stopped; never raises on bad records or outages."""
        self._running.set()
        try:
            if self.refused:
                await self._stopping.wait()
                return
            await self._run()
        finally:
            self._finished.set()

    async def _run(self) -> None:
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                if self.unpositioned:
                    await self._position()
                await self.run_once()
            except Exception as error:  # noqa: BLE001 - whatever failed, the batch is dropped and retried
                if self._stopping.is_set():
                    break  # stop() closed the clients under this batch: dropped, refolded by the next owner
                cause = ("redis" if isinstance(error, ViewStoreUnavailable)
                         else "schema-registry" if isinstance(error, RegistryUnavailable)
                         else "kafka" if isinstance(error, (KafkaError, OSError, asyncio.TimeoutError))
                         else "unexpected")
                self._stall(cause, error)
                if isinstance(error, (asyncio.TimeoutError, TimeoutError)) and cause == "kafka":
                    self._shrink()
                await _sleep(self._stopping, backoff)
                backoff = min(backoff * 2, 2.0)
                self.unpositioned |= self.owned  # resume from the stored positions
                self.cache.clear()
                if self._consumer is not None and self.owned:
                    self._consumer.pause(*self.owned)
            else:
                backoff = 0.05
                if self.stalled:
                    log.info("worker_resumed", after=self.stalled)
                    self.stalled = None
                if self.batch_limit < self.settings.worker_batch_events:  # grow back, a little per batch
                    self.batch_limit = min(self.settings.worker_batch_events,
                                           self.batch_limit + max(1, self.batch_limit // 8))

    def _shrink(self) -> None:
        """A batch whose derived records were not acknowledged within the request timeout
        is dropped and folded again: the next polls take half as many records, so a slow
        broker slows the worker down instead of refusing the same batch forever."""
        if self.batch_limit > 1:
            self.batch_limit = max(1, self.batch_limit // 2)
            log.warning("worker_batch_shrunk", records=self.batch_limit)

    def _stall(self, cause: str, error: BaseException) -> None:
        metrics.child(metrics.WORKER_STALLS, cause).inc()
        if self.stalled != cause:
            log.error("worker_stalled", cause=cause, error=type(error).__name__, detail=str(error)[:300])
        self.stalled = cause

    async def _position(self) -> None:
        assert self._consumer is not None
        pending = sorted(self.unpositioned & self.owned, key=lambda tp: tp.partition)
        for tp in pending:
            epoch = self.epochs.get(tp.partition, 0)
            stored = await self.store.position(tp.topic, tp.partition)
            clock = await self.store.clock(tp.topic, tp.partition)
            if tp in self.owned and self._current(tp.partition, epoch):  # still ours, same assignment
                self._consumer.seek(tp, stored + 1)
                self.positions[tp.partition] = stored
                self.clocks[tp.partition] = clock
                self.unpositioned.discard(tp)
                self._consumer.resume(tp)
        self.unpositioned &= self.owned

    async def run_once(self) -> int:
        assert self._consumer is not None and self._producer is not None
        polled = await self._consumer.getmany(timeout_ms=200, max_records=self.batch_limit)
        self._adapt_fetch_wait(any(polled.values()))
        batches = {tp: records for tp, records in polled.items() if records and tp in self.owned
                   and tp not in self.unpositioned}
        # what each batch folds on, taken now, before any await lets a rebalance in
        claims = {tp.partition: _Claim(self.epochs.get(tp.partition, 0), self.positions[tp.partition],
                                       self.clocks.get(tp.partition)) for tp in batches}
        for tp, records in list(batches.items()):
            if records[0].offset <= claims[tp.partition].base:  # folded already: a fetch from before a seek
                log.warning("records_before_position", partition=tp.partition, first=records[0].offset,
                            position=claims[tp.partition].base)
                del batches[tp]
                self.unpositioned.add(tp)
                self._consumer.pause(tp)
        if not batches:
            await self._hint()
            return 0
        started = time.perf_counter()
        await self._learn_schema_ids(batches.values())
        partitions = len(self._consumer.partitions_for_topic(self.topic) or ()) or None
        if partitions:  # the topic's own count places customers' keys, as it places their records
            self.store.use_partitions(partitions)
        decoded = {tp: decode(records, partitions) for tp, records in batches.items()}
        customers = set().union(*(d.customers for d in decoded.values()))
        due_stored: dict[TopicPartition, dict[str, list[tuple[str, int]]]] = {}
        limit = self.config.tick_limit
        for tp, d in decoded.items():  # the deadline index, for the batch's clock ticks
            ticks = d.ticks
            # each tick may visit ``limit`` customers; earlier ticks and events of the batch
            # change at most that many more entries than a tick will read
            enough = due_fetch_size(len(ticks), len(batches[tp]), limit)
            for tick in ticks:
                found = await self.store.due(tp.topic, tp.partition, tick.at, enough)
                due_stored.setdefault(tp, {})[tick.tick_id] = found
                customers.update(c for c, _ in found)
        stored = self.cache.take(customers)  # states this worker committed last: no read needed
        stored.update(await self.store.states(customers - stored.keys()))
        # a partition revoked (or revoked and assigned again) during those awaits: not ours to
        # fold any more; its next owner re-reads it from the stored position
        moved = sorted(tp.partition for tp in batches if not self._current(tp.partition, claims[tp.partition].epoch))
        if moved:
            log.info("batch_dropped_on_rebalance", partitions=moved)
            batches = {tp: records for tp, records in batches.items() if tp.partition not in moved}
        if not batches:
            return 0
        # the fold is CPU work: in a thread, so the loop keeps answering health checks,
        # metrics scrapes and the group's heartbeats while a large batch folds; it folds on
        # the claims taken at poll time (a revoke during the fold is fenced by their base)
        jobs = [(tp, decoded[tp], claims[tp.partition].base, claims[tp.partition].clock, due_stored.get(tp))
                for tp in sorted(batches, key=lambda tp: tp.partition)]
        folded = await asyncio.to_thread(self._fold, jobs, States(stored))
        await self._publish(folded)
        for batch, applied in zip(folded, await self._commit(folded, claims), strict=True):
            if applied and self._current(batch.partition, claims[batch.partition].epoch):
                self.cache.keep(batch.states)
        metrics.PROJECTION_BATCH_SECONDS.observe(time.perf_counter() - started)
        await self._hint()
        return sum(len(r) for r in batches.values())

    def _fold(self, jobs: Sequence[tuple[TopicPartition, Decoded, int | None, int | None, Any]],
              states: States) -> list[Folded]:
        return [fold(tp.topic, tp.partition, decoded, states, self.config, base=base, clock=clock, due_stored=due)
                for tp, decoded, base, clock, due in jobs]

    async def _learn_schema_ids(self, batches: Iterable[list[Any]]) -> None:
        """Records framed with schema-registry ids this process has not seen: learn them
        from the registry first (an unreachable registry stalls the worker; an id the
        registry does not know makes the record a dead letter)."""
        if self.schema_registry is None:
            return
        known = default_registry().knows_registry_id
        ids = {i for records in batches for r in records
               if (i := framed_schema_id(r.value)) is not None and not known(i)}
        if ids:
            await self.schema_registry.learn(ids)  # RegistryUnavailable: a stall, see run()

    async def _publish(self, batches: list[Folded]) -> None:
        """Derived events of the poll, acknowledged before the views commit: a crash in
        between re-publishes them under the same deterministic ids."""
        views = [(customer_id.encode(), document,
                  view_event_headers(customer_id, b.topic, b.partition, b.view_offsets[customer_id],
                                     max(b.views[customer_id].last_seen or 0, b.lifecycle.clock or 0) or None))
                 for b in batches for customer_id, document in b.documents.items()]
        dead = [record for b in batches for record in b.dead_records]
        moves = [(customer_id.encode(), value, transition_headers(transition_id, at))
                 for b in batches for customer_id, transition_id, at, value in b.transitions]
        contacts: dict[str, list[tuple[bytes | None, bytes | None, Any]]] = {}
        for b in batches:
            for channel, customer_id, trigger_id, at, value in b.triggers:
                contacts.setdefault(trigger_topic(channel), []).append(
                    (customer_id.encode(), value, trigger_headers(trigger_id, at)))
        segment_moves = [(customer_id.encode(), value, segment_headers(change_id, at))
                         for b in batches for customer_id, change_id, at, value in b.segment_events]
        async with asyncio.timeout(self.settings.kafka_request_timeout_ms / 1000):
            await asyncio.gather(self._send_all(CUSTOMER_VIEWS_TOPIC, views), self._send_all(DEAD_LETTERS_TOPIC, dead),
                                 self._send_all(LIFECYCLE_TOPIC, moves), self._send_all(SEGMENTS_TOPIC, segment_moves),
                                 *(self._send_all(topic, items) for topic, items in contacts.items()))

    async def _send_all(self, topic: str, messages: Sequence[tuple[bytes | None, bytes | None, Any]]) -> None:
        """Send and wait for the acks, building one record batch per partition: the
        per-message path of the producer (a future and a partitioner call per record)
        cost ~37 µs a record here, more than folding the event."""
        if not messages:
            return
        producer = self._producer
        assert producer is not None
        partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[tuple[bytes | None, bytes | None, Any]]] = {}
        for message in messages:
            key = message[0]
            index = (murmur2(key) & 0x7FFFFFFF) % len(partitions) if key else 0
            by_partition.setdefault(partitions[index], []).append(message)
        sent = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value, headers in items:
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    batch.close()
                    sent.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
            batch.close()
            sent.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*sent)

    async def _commit(self, batches: list[Folded], claims: dict[int, _Claim]) -> list[bool]:
        """Every partition's batch in one Redis round trip, each fenced on its own. A batch
        that applied after its partition was revoked is counted but not remembered: the
        position and clock are re-read from Redis if the partition comes back."""
        applied = await self.store.commit_all([
            partition_commit(b.topic, b.partition, b.offset, b.states, b.documents, b.links, b.conflicts,
                             b.dead_letters, b.timeline, b.base, b.lifecycle) for b in batches
        ])
        for batch, ok in zip(batches, applied, strict=True):
            if ok:
                if self._current(batch.partition, claims[batch.partition].epoch):
                    self.positions[batch.partition] = batch.offset
                    self.clocks[batch.partition] = batch.lifecycle.clock
                self.folded += batch.folded
                _count(batch)
                continue
            # another worker committed past us: start again from its position
            metrics.WORKER_COMMITS_FENCED.inc()
            log.warning("commit_fenced", partition=batch.partition, offset=batch.offset)
            self.cache.clear()
            tp = TopicPartition(batch.topic, batch.partition)
            if tp in self.owned and self._consumer is not None:
                self.unpositioned.add(tp)
                self._consumer.pause(tp)
        return applied

    def _adapt_fetch_wait(self, records: bool) -> None:
        """An idle worker asks the broker for records less often: after ``IDLE_POLLS``
        empty polls in a row its fetch wait becomes ``kafka_idle_fetch_wait_ms``, and the
        first records bring back ``kafka_fetch_max_wait_ms``. A broker that answers a fetch
        as soon as records arrive (Kafka, Redpanda) loses nothing by it; one that holds an
        empty fetch for the whole wait (Tansu) delays the first records after a quiet spell
        by up to that wait, never a steady flow (docs/BENCHMARKS.md, idle cost)."""
        self._empty_polls = 0 if records else self._empty_polls + 1
        busy, idle = self.settings.kafka_fetch_max_wait_ms, self.settings.kafka_idle_fetch_wait_ms
        wanted = max(busy, idle) if self._empty_polls >= IDLE_POLLS else busy
        fetcher = getattr(self._consumer, "_fetcher", None)  # aiokafka 0.14 reads it for every fetch request
        if fetcher is not None and getattr(fetcher, "_fetch_max_wait_ms", wanted) != wanted:
            fetcher._fetch_max_wait_ms = wanted  # noqa: SLF001 - aiokafka has no public setter

    async def _hint(self) -> None:
        """Commit group offsets now and then (monitoring only; Redis is the truth) and
        refresh the lag gauges."""
        if time.monotonic() - self._hinted < HINT_COMMIT_SECONDS or self._consumer is None:
            return
        self._hinted = time.monotonic()
        offsets = {TopicPartition(self.topic, p): o + 1 for p, o in self.positions.items() if o >= 0}
        offsets = {tp: o for tp, o in offsets.items() if tp in self.owned}
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except KafkaError as error:  # a rebalance in progress: the next hint will do
                log.info("offset_hint_skipped", error=type(error).__name__)
        for tp in self.owned:
            high = self._consumer.highwater(tp)
            position = self.positions.get(tp.partition)
            if high is not None and position is not None:
                behind = max(0, high - 1 - position)
                metrics.child(metrics.WORKER_PARTITION_LAG, str(tp.partition)).set(behind)
                if not behind:  # caught up: the views trail the partition by nothing
                    metrics.child(metrics.WORKER_PARTITION_LAG_SECONDS, str(tp.partition)).set(0)

    def status(self) -> dict[str, Any]:
        return {
            "joined": self.joined,
            "draining": self.draining,
            "partitions": sorted(tp.partition for tp in self.owned),
            "positions": {str(p): o for p, o in sorted(self.positions.items())},
            "stalled": self.stalled,
            "folded": self.folded,
        }


def _count(batch: Folded) -> None:
    if batch.tick_failures:
        metrics.TICK_FAILURES.inc(batch.tick_failures)
        log.error("tick_failed", partition=batch.partition, customers=batch.tick_failures)
    metrics.child(metrics.WORKER_PARTITION_POSITION, str(batch.partition)).set(batch.offset)
    metrics.child(metrics.WORKER_RECORDS, "folded").inc(batch.folded)
    if batch.duplicates:
        metrics.child(metrics.WORKER_RECORDS, "duplicate").inc(batch.duplicates)
    if batch.dead_letters:
        metrics.child(metrics.WORKER_RECORDS, "dead_letter").inc(len(batch.dead_letters))
        for entry in batch.dead_letters:
            reason = orjson.loads(entry)["reason"].split(":", 1)[0]
            metrics.child(metrics.DEAD_LETTERS, reason).inc()
            log.warning("dead_letter", partition=batch.partition, reason=reason)
    if batch.conflicts:
        metrics.IDENTITY_CONFLICTS.inc(len(batch.conflicts))
    metrics.child(metrics.DERIVED_EVENTS, CUSTOMER_VIEWS_TOPIC).inc(len(batch.documents))
    metrics.VIEWS_WRITTEN.inc(len(batch.states))
    if batch.transitions:
        metrics.child(metrics.DERIVED_EVENTS, LIFECYCLE_TOPIC).inc(len(batch.transitions))
        for from_stage, to_stage in batch.stage_moves:
            metrics.child(metrics.LIFECYCLE_TRANSITIONS, from_stage, to_stage).inc()
    if batch.visited:
        metrics.LIFECYCLE_TICK_DUE.inc(batch.visited)
    for channel, *_ in batch.triggers:
        metrics.child(metrics.DERIVED_EVENTS, trigger_topic(channel)).inc()
    count_contact_figures(batch.lifecycle.figures)
    if batch.segment_events:
        metrics.child(metrics.DERIVED_EVENTS, SEGMENTS_TOPIC).inc(len(batch.segment_events))
    if batch.dead_records:
        metrics.child(metrics.DERIVED_EVENTS, DEAD_LETTERS_TOPIC).inc(len(batch.dead_records))
    now = micros_now()
    histogram = metrics.VIEW_LATENCY_SECONDS
    for received in batch.received:
        histogram.observe(max(0.0, (now - received) / 1e6))
    if batch.received:  # the views now trail the partition by the age of its newest folded record
        lag = max(0.0, (now - max(batch.received)) / 1e6)
        metrics.child(metrics.WORKER_PARTITION_LAG_SECONDS, str(batch.partition)).set(lag)


def micros_now() -> int:
    return int(time.time() * 1_000_000)


async def _retry_start(client: Any, what: str, stopping: asyncio.Event) -> None:
    backoff = 0.2
    while not stopping.is_set():
        try:
            await client.start()
            return
        except KafkaError as error:
            log.warning("kafka_unreachable", client=what, error=type(error).__name__)
            await _sleep(stopping, backoff)
            backoff = min(backoff * 2, 5.0)


async def _sleep(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass

