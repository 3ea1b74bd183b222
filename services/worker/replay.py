"""Verify the scale-out views: replay the touchpoints topic through the core, compare.

``verify(settings)`` reads every partition of the touchpoints topic from its first
offset to the end offset it finds at the start (no consumer group: nothing is
committed), folds the records in memory with the core's one batch decider
(``projections.batch.fold_batch``, through the worker's own adapter
``services.worker.fold``, with an in-memory deadline index in place of Redis's) and
compares, byte for byte, each customer's stored state in Redis with the replayed one,
and the partition positions in Redis with the end offsets. It is the independent check
the crash tests rely on, and what ``touchstream replay`` runs with
``TOUCHSTREAM_RUNTIME=kafka``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from projections.batch import FoldConfig, fold_batch
from projections.view import CustomerView
from projections.view_document import to_state
from services.contracts.confluent import ConfluentRegistry, framed_schema_id
from services.kafka.topics import TOUCHPOINTS_TOPIC
from services.redis_keys import RedisKeys
from services.settings import Settings
from services.worker.fold import decode, due_fetch_size

__all__ = ["replay_topic", "verify", "live_states", "states_digest", "Replayer"]

IDLE_SECONDS = 30.0
CHUNK = 2_000  # records per fold: batch boundaries change nothing, this only bounds the work in hand


async def replay_topic(bootstrap: str, config: FoldConfig, topic: str = TOUCHPOINTS_TOPIC, *,
                       schema_registry: ConfluentRegistry | None = None,
                       ) -> tuple[dict[str, bytes], dict[int, int], int]:
    """(state bytes by customer, last offset by partition, dead letters) of a full replay."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        replayer = Replayer(config, len(partitions))
        consumer.assign(partitions)
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
                replayer.add(tp.partition, records)
            for tp in partitions:
                high = consumer.highwater(tp)
                if tp not in ends and high is not None and await consumer.position(tp) >= high:
                    ends[tp] = high
            if time.monotonic() - last_progress > IDLE_SECONDS:
                raise TimeoutError(f"no progress reading {topic} for {IDLE_SECONDS} s")
        replayer.flush()
        last = {tp.partition: ends[tp] - 1 for tp in partitions}
    finally:
        await consumer.stop()
    return {c: orjson.dumps(to_state(v)) for c, v in replayer.views.items()}, last, replayer.dead


class Replayer:
    """The worker's fold with everything in memory: per partition its clock and its
    deadline index (what Redis holds for the worker), records folded in chunks."""

    def __init__(self, config: FoldConfig, partitions: int):
        self.config, self.partitions = config, partitions
        self.views: dict[str, CustomerView] = {}
        self.clocks: dict[int, int | None] = {}
        self.index: dict[int, dict[str, int]] = {}  # partition -> customer -> next deadline
        self.pending: dict[int, list[Any]] = {}
        self.dead = 0

    def add(self, partition: int, records: Sequence[Any]) -> None:
        held = self.pending.setdefault(partition, [])
        held.extend(records)
        if len(held) >= CHUNK:
            self._fold(partition)

    def flush(self) -> None:
        for partition in list(self.pending):
            self._fold(partition)

    def _fold(self, partition: int) -> None:
        records = self.pending.pop(partition, [])
        if not records:
            return
        decoded = decode(records, self.partitions or None)
        index = self.index.setdefault(partition, {})
        ticks = decoded.ticks
        enough = due_fetch_size(len(ticks), len(records), self.config.tick_limit)
        due_stored = {t.tick_id: sorted(((c, d) for c, d in index.items() if d <= t.at),
                                        key=lambda e: (e[1], e[0]))[:enough] for t in ticks}
        result = fold_batch(self.views, decoded.records, self.config, clock=self.clocks.get(partition),
                            due_stored=due_stored)
        self.views.update(result.views)
        self.clocks[partition] = result.clock
        for customer_id, deadline in result.deadlines.items():
            if deadline is None:
                index.pop(customer_id, None)
            else:
                index[customer_id] = deadline
        self.dead += len(result.dead_letters)


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
                    states[name.decode()[len(start):]] = value  # type: ignore[assignment]  # bytes: no decode_responses
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
        replayed, ends, dead = await replay_topic(settings.kafka_bootstrap, settings.fold_config(),
                                                  schema_registry=registry)
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
