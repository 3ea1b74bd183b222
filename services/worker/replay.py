"""Verify the scale-out views: replay the touchpoints topic through the core, compare.

``verify(settings)`` reads every partition of the touchpoints topic from its first
offset to the end offset it finds at the start (no consumer group: nothing is
committed), folds the records in memory with the core alone (``read_record``, clock ticks included,
``projections.identity.settled``, ``projections.view.evolve``) and compares, byte for
byte, each customer's stored state in Redis with the replayed one, and the partition
positions in Redis with the end offsets. It is the independent check the crash tests
rely on, and what ``touchstream replay`` runs with ``TOUCHSTREAM_RUNTIME=kafka``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from projections.identity import settled
from projections.lifecycle import DEFAULT as LIFECYCLE_DEFAULT
from projections.lifecycle import LifecycleConfig
from projections.nbc_engine import Collector, ContactEngine, fold_event, fold_tick, next_due
from projections.view import CustomerView, initial_view
from projections.view_document import to_state
from services.contracts.confluent import ConfluentRegistry, framed_schema_id
from services.kafka.records import BadRecord, ReadTick, read_record
from services.kafka.topics import TOUCHPOINTS_TOPIC
from services.redis_keys import RedisKeys
from services.settings import Settings

__all__ = ["replay_topic", "verify", "live_states", "states_digest"]

IDLE_SECONDS = 30.0


async def replay_topic(bootstrap: str, topic: str = TOUCHPOINTS_TOPIC, *,
                       schema_registry: ConfluentRegistry | None = None,
                       lifecycle: LifecycleConfig | None = LIFECYCLE_DEFAULT,
                       tick_limit: int = 10_000,
                       engine: ContactEngine | None = None) -> tuple[dict[str, bytes], dict[int, int], int]:
    """(state bytes by customer, last offset by partition, dead letters) of a full replay."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await consumer.start()
    views: dict[str, CustomerView] = {}
    dead = 0
    replayer = _Replayer(views, lifecycle, tick_limit, engine)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        replayer.partitions = len(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        # The end of each partition is the high watermark fetch responses carry: Tansu
        # answers ListOffsets(latest) with the last batch's base offset, not the end.
        ends: dict[TopicPartition, int] = {}
        last_progress = time.monotonic()
        while len(ends) < len(partitions):
            polled = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, records in polled.items():
                last_progress = time.monotonic()
                if schema_registry is not None:
                    await schema_registry.learn({i for r in records if (i := framed_schema_id(r.value)) is not None})
                for record in records:
                    dead += replayer.one(record)
            for tp in partitions:
                high = consumer.highwater(tp)
                if tp not in ends and high is not None and await consumer.position(tp) >= high:
                    ends[tp] = high
            if time.monotonic() - last_progress > IDLE_SECONDS:
                raise TimeoutError(f"no progress reading {topic} for {IDLE_SECONDS} s")
        last = {tp.partition: ends[tp] - 1 for tp in partitions}
    finally:
        await consumer.stop()
    return {c: orjson.dumps(to_state(v)) for c, v in views.items()}, last, dead


class _Replayer:
    """The worker's fold, record by record, with everything in memory: per partition its
    clock and its customers, so a tick visits the customers whose deadline passed, the
    earliest first, at most ``tick_limit``, as the worker's deadline index does."""

    def __init__(self, views: dict[str, CustomerView], lifecycle: LifecycleConfig | None, tick_limit: int,
                 engine: ContactEngine | None = None):
        self.views, self.lifecycle, self.tick_limit, self.engine = views, lifecycle, tick_limit, engine
        self.decisions = Collector()  # what the rules decided on the way (the replay publishes nothing)
        self.clocks: dict[int, int] = {}
        self.homes: dict[int, set[str]] = {}
        self.partitions = 0

    def one(self, record: Any) -> int:
        """Fold one record; 1 when it is a dead letter, else 0."""
        try:
            read = read_record(record.value, record.key, record.headers, partition=record.partition,
                               partitions=self.partitions or None)
            if isinstance(read, ReadTick):
                self._tick(record.partition, read)
                return 0
            view = self.views.get(read.customer_id) or initial_view(read.customer_id)
            self.views[read.customer_id] = fold_event(view, settled(read.event, read.customer_id, read.conflicts).folded,
                                                      self.lifecycle, self.clocks.get(record.partition), self.engine,
                                                      self.decisions)
            self.homes.setdefault(record.partition, set()).add(read.customer_id)
        except BadRecord:
            return 1
        except Exception:  # noqa: BLE001 - the worker dead-letters these too
            return 1
        return 0

    def _tick(self, partition: int, read: ReadTick) -> None:
        self.clocks[partition] = max(self.clocks.get(partition, read.at), read.at)
        if self.lifecycle is None and self.engine is None:
            return
        due = sorted((d, c) for c in self.homes.get(partition, ())
                     if (d := next_due(self.views[c])) is not None and d <= read.at)
        for _, customer_id in due[:self.tick_limit]:
            self.views[customer_id] = fold_tick(self.views[customer_id], read.at, read.tick_id, self.lifecycle,
                                                self.engine, self.decisions)


async def live_states(redis_url: str, prefix: str, partitions: Sequence[int] = (),
                      topic: str = TOUCHPOINTS_TOPIC) -> tuple[dict[str, bytes], dict[int, int]]:
    """Every stored state under ``prefix`` by customer, and the stored position of each
    of ``partitions`` (-1: none)."""
    keys = RedisKeys(prefix)
    client = aioredis.Redis.from_url(redis_url, socket_timeout=30)
    try:
        start = keys.state("")
        names = [k async for k in client.scan_iter(match=start.replace("*", r"\*") + "*", count=2000)]
        states: dict[str, bytes] = {}
        for i in range(0, len(names), 1000):
            chunk = names[i:i + 1000]
            for name, value in zip(chunk, await client.mget(chunk), strict=True):
                if value is not None:
                    states[name.decode()[len(start):]] = value
        raw = await client.mget([keys.position(topic, p) for p in partitions]) if partitions else []
        positions = {p: int(v) if v is not None else -1 for p, v in zip(partitions, raw, strict=True)}
    finally:
        await client.aclose()
    return states, positions


def states_digest(states: dict[str, bytes]) -> str:
    """SHA-256 over every (customer id, stored state bytes), in customer id order."""
    h = hashlib.sha256()
    for customer_id in sorted(states):
        h.update(customer_id.encode() + b"\0" + states[customer_id] + b"\0")
    return h.hexdigest()


async def verify(settings: Settings) -> dict[str, Any]:
    registry = ConfluentRegistry(settings.schema_registry_url) if settings.schema_registry_url else None
    try:
        replayed, ends, dead = await replay_topic(settings.kafka_bootstrap, schema_registry=registry,
                                                  lifecycle=settings.lifecycle(),
                                                  tick_limit=settings.lifecycle_tick_limit,
                                                  engine=settings.contact_engine())
    finally:
        if registry is not None:
            await registry.aclose()
    live, positions = await live_states(settings.redis_url, settings.redis_prefix, sorted(ends))
    differing = sorted(c for c in replayed.keys() | live.keys() if replayed.get(c) != live.get(c))
    behind = {p: {"stored": positions[p], "end": e} for p, e in ends.items() if positions[p] != e}
    return {
        "identical": not differing and not behind,
        "customers": len(replayed),
        "live_customers": len(live),
        "differing_customers": len(differing),
        "examples": differing[:5],
        "partitions_behind": behind,
        "records_dead": dead,
        "replay_digest": states_digest(replayed),
        "live_digest": states_digest(live),
    }
