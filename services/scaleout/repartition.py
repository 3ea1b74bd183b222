"""``touchstream repartition``: move the scale-out runtime to another partition count
without misrouting a customer.

A customer's partition is ``murmur2(customer id) % partitions``; adding partitions to the
touchpoints topic itself would send a customer's next events to another partition than
their history (the worker dead-letters such records as misrouted). So the count changes
by a **generation**: a new touchpoints topic with the new count and a new Redis prefix,
filled from the current ones, then folded by workers of the new generation from its
first offset (docs/SCALE_OUT.md, "Growing the partition count"):

1. every record of the current topic (up to its end when the command starts, after the
   offsets an earlier run copied) is read and put in the order ingest acknowledged it
   (its position; records that never went through ingest follow, in partition and offset
   order), then written to the new topic on its customer's new partition; a clock tick is
   written once per instant, to every new partition, where the instant was first
   acknowledged — so every new partition sees its customers' events and the clock in the
   order the platform accepted them, and folds them to the same views;
2. the new prefix gets what ingest knows: the log head, the event-id index (positions do
   not change: a client's ``min_position`` stays meaningful), each new partition's
   acknowledgements (so read-your-writes works across the switch) and the identity index;
3. how far each old partition was copied is kept in the new prefix (``repartition``
   hash), so a second run, with ingest stopped, copies only what came since.

Idempotent per run: re-running after a failure copies from the recorded offsets (a record
copied twice is a duplicate the worker's idempotency window or the event index answers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.scaleout.kafka.records import TICK_TYPE, partition_of, read_tick, tick_record
from services.scaleout.kafka.topics import TOUCHPOINTS_TOPIC, ensure_topics
from services.scaleout.redis.feeds import FeedCursor, glob_prefix
from services.scaleout.redis.keys import RedisKeys
from services.settings import Settings

__all__ = ["repartition", "finish", "Copied"]

IDLE_SECONDS = 30.0  # no record and no end of partition for this long: the broker is not answering
CHUNK = 1_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Copied:
    """What one run copied."""

    events: int = 0
    ticks: int = 0  # instants (each written to every new partition)
    without_position: int = 0  # records that never went through ingest
    identifiers: int = 0
    kept: int = 0  # models, segment definitions, webhook delivery counts and dead letters
    offsets: dict[int, tuple[int, int]] = field(default_factory=dict)  # old partition -> (first, last) copied


@dataclass(order=True)
class _Record:
    position: float
    partition: int
    offset: int
    key: bytes | None = field(compare=False)
    value: bytes | None = field(compare=False)
    headers: list[tuple[str, bytes]] = field(compare=False)
    event_id: str | None = field(compare=False)
    tick_at: int | None = field(compare=False)


async def repartition(settings: Settings, *, topic: str, partitions: int, prefix: str) -> dict[str, Any]:
    """Copy the current generation (``settings``) into ``topic`` of ``partitions``
    partitions and the Redis ``prefix``; the report as a dict."""
    old_topic, old_prefix = settings.kafka_touchpoints_topic, settings.redis_prefix
    if topic == old_topic or prefix == old_prefix:
        raise ValueError("the new generation needs a topic and a Redis prefix of its own")
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    started = time.monotonic()
    new_keys = RedisKeys(prefix, partitions)
    progress = f"{prefix}:repartition"
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=30)
    await ensure_topics(settings.kafka_bootstrap, partitions, [TOUCHPOINTS_TOPIC], touchpoints=topic,
                        replication_factor=settings.kafka_replication_factor,
                        request_timeout_ms=settings.kafka_request_timeout_ms)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5,
                                request_timeout_ms=settings.kafka_request_timeout_ms)
    copied = Copied()
    try:
        await consumer.start()
        old_count = len(consumer.partitions_for_topic(old_topic) or ())
        if not old_count:
            raise ValueError(f"the broker knows no topic {old_topic}")
        old_keys = RedisKeys(old_prefix, old_count)
        done = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in (await client.hgetall(progress)).items()}
        records = await _read(consumer, old_topic, old_count, done)
        await _place(client, old_keys, records)
        records.sort()
        await producer.start()
        await _write(client, producer, records, topic, partitions, new_keys, copied)
        copied.identifiers = await _copy_identities(client, old_keys, new_keys)
        copied.kept = await _copy_kept(client, old_keys, new_keys)
        head = int(await client.get(old_keys.sequence) or 0)
        await client.set(new_keys.sequence, max(head, int(await client.get(new_keys.sequence) or 0)))
        for r in records:
            first, last = copied.offsets.get(r.partition, (r.offset, r.offset))
            copied.offsets[r.partition] = (min(first, r.offset), max(last, r.offset))
        if copied.offsets:
            await client.hset(progress, mapping={f"{old_topic}:{p}": last + 1
                                                 for p, (_, last) in copied.offsets.items()})
    finally:
        await consumer.stop()
        await producer.stop()
        await client.aclose()
    return {"from": {"topic": old_topic, "prefix": old_prefix},
            "to": {"topic": topic, "prefix": prefix, "partitions": partitions},
            "events": copied.events, "ticks": copied.ticks, "without_position": copied.without_position,
            "identifiers": copied.identifiers, "kept": copied.kept,
            "offsets": {p: {"first": a, "last": b} for p, (a, b) in sorted(copied.offsets.items())},
            "seconds": round(time.monotonic() - started, 2)}


async def _read(consumer: AIOKafkaConsumer, topic: str, count: int, done: dict[str, int]) -> list[_Record]:
    """Every record of ``topic`` from the recorded offsets to the end each partition has
    now (the fetch high watermark: Tansu answers ListOffsets(latest) with the last batch's
    base offset)."""
    tps = [TopicPartition(topic, p) for p in range(count)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, done.get(f"{topic}:{tp.partition}", 0))
    ends: dict[TopicPartition, int] = {}
    out: list[_Record] = []
    quiet_since = time.monotonic()
    while len(ends) < len(tps) or [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
        polled = await consumer.getmany(timeout_ms=200, max_records=5_000)
        for tp, batch in polled.items():
            for m in batch:
                if tp not in ends or m.offset < ends[tp]:
                    out.append(_record(m.partition, m.offset, m.key, m.value, list(m.headers or ())))
        for tp in tps:
            high = consumer.highwater(tp)
            if high is not None and tp not in ends:
                ends[tp] = high  # the end when this run first saw it: later records are the next run's
        if polled:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > IDLE_SECONDS:
            raise TimeoutError(f"no progress reading {topic} for {IDLE_SECONDS:g} s")
    return [r for r in out if r.offset < ends[TopicPartition(topic, r.partition)]]


def _record(partition: int, offset: int, key: bytes | None, value: bytes | None,
            headers: list[tuple[str, bytes]]) -> _Record:
    named = dict(headers)
    tick_at = None
    if named.get("ce_type") == TICK_TYPE:
        tick_at = read_tick(value).at
    event_id = named["ce_id"].decode() if "ce_id" in named else None
    return _Record(float("inf"), partition, offset, key, value, headers, event_id, tick_at)


async def _place(client: aioredis.Redis, keys: RedisKeys, records: list[_Record]) -> None:
    """Each record's position, from the event-id index ingest keeps (one slot: MGET)."""
    with_ids = [r for r in records if r.event_id]
    for i in range(0, len(with_ids), CHUNK):
        chunk = with_ids[i:i + CHUNK]
        for r, value in zip(chunk, await client.mget([keys.event(r.event_id or "") for r in chunk]), strict=True):
            if value is not None:
                r.position = float(int(value))


async def _write(client: aioredis.Redis, producer: AIOKafkaProducer, records: list[_Record], topic: str,
                 partitions: int, keys: RedisKeys, copied: Copied) -> None:
    """Write the records in order, then what ingest knows of each into the new prefix."""
    sends: list[tuple[Any, str | None, int | None]] = []  # (delivery, event id, position)
    instants: set[int] = set()
    for r in records:
        position = None if r.position == float("inf") else int(r.position)
        if r.tick_at is not None:
            at = EPOCH + timedelta(microseconds=r.tick_at)
            if r.tick_at in instants or await client.exists(keys.event(tick_record(at, 0)[0])):
                continue  # this instant is copied already (from another old partition, or an earlier run)
            instants.add(r.tick_at)
            copied.ticks += 1
            for p in range(partitions):
                tick_id, value, headers = tick_record(at, p)
                sends.append((await producer.send(topic, value=value, partition=p, headers=headers), tick_id,
                              position))
            await _flush(client, sends, topic, keys)  # ticks are rare: each instant recorded at once
            continue
        if r.key is None:  # unkeyed: the worker dead-letters it wherever it lands
            p = 0
        else:
            p = partition_of(r.key.decode("utf-8", errors="replace"), partitions)
        copied.events += 1
        copied.without_position += position is None
        sends.append((await producer.send(topic, key=r.key, value=r.value, partition=p, headers=r.headers),
                      r.event_id, position))
        if len(sends) >= CHUNK:
            await _flush(client, sends, topic, keys)
    await _flush(client, sends, topic, keys)


async def _flush(client: aioredis.Redis, sends: list[tuple[Any, str | None, int | None]], topic: str,
                 keys: RedisKeys) -> None:
    """Wait for the broker's acknowledgements, then record positions and acknowledgements
    in the new prefix: the event index and ``acked`` in the {ingest} slot, each
    partition's ``acks`` in its own."""
    if not sends:
        return
    acked = [(await delivery, event_id, position) for delivery, event_id, position in sends]
    sends.clear()
    pipe = client.pipeline(transaction=False)
    highest: dict[int, int] = {}
    for meta, event_id, position in acked:
        if event_id is not None and position is not None:
            pipe.set(keys.event(event_id), position, nx=True)
            pipe.zadd(keys.acks(topic, meta.partition), {str(meta.offset): position})
        highest[meta.partition] = max(highest.get(meta.partition, -1), meta.offset)
    for p, offset in highest.items():
        pipe.hset(keys.high_water, f"{topic}:{p}", offset)
    await pipe.execute()


async def _copy_identities(client: aioredis.Redis, old: RedisKeys, new: RedisKeys) -> int:
    """The identity index, first writer wins (a second run adds what is new)."""
    start = old.identifier("k", "")[: -len("k:")]  # <prefix>:{identity}:id:
    copied = 0
    names: list[bytes] = []

    async def flush() -> int:
        values = await client.mget(names)
        pipe = client.pipeline(transaction=False)
        for name, value in zip(names, values, strict=True):
            if value is not None:
                kind, _, identifier = name.decode()[len(start):].partition(":")
                pipe.set(new.identifier(kind, identifier), value, nx=True)
        results = await pipe.execute()
        names.clear()
        return sum(1 for r in results if r)

    async for name in client.scan_iter(match=glob_prefix(start), count=2000):
        names.append(name)
        if len(names) >= CHUNK:
            copied += await flush()
    if names:
        copied += await flush()
    return copied


async def _copy_kept(client: aioredis.Redis, old: RedisKeys, new: RedisKeys) -> int:
    """What is neither folded nor ingested and must outlive the switch: fitted models,
    the segment definitions' stamps, the webhook dispatcher's counts and dead letters
    (DUMP and RESTORE, one key at a time: each is its own slot or the {delivery} one)."""
    patterns = [glob_prefix(f"{old.prefix}:model:"), glob_prefix(old.segment_definitions),
                glob_prefix(f"{old.prefix}:{{delivery}}:")]
    copied = 0
    for pattern in patterns:
        async for name in client.scan_iter(match=pattern, count=1000):
            text = name.decode()
            dumped = await client.dump(name)
            if dumped is not None:
                await client.restore(new.prefix + text[len(old.prefix):], 0, dumped, replace=True)
                copied += 1
    return copied


async def finish(settings: Settings, *, prefix: str, partitions: int) -> dict[str, str]:
    """Once the new generation's workers have caught up, before its API starts: each
    webhook dispatcher of the current generation resumes, in the new one, at the end of
    its channel's trigger feed (the refold issued again the triggers it had delivered)."""
    old, new = RedisKeys(settings.redis_prefix), RedisKeys(prefix, partitions)
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=30)
    moved: dict[str, str] = {}
    try:
        start = old.delivery_cursor("")
        async for name in client.scan_iter(match=glob_prefix(start), count=1000):
            dispatcher = name.decode()[len(start):]
            channel = dispatcher.removeprefix("webhook:")
            ids: list[tuple[int, int]] = []
            for p in range(partitions):
                last = await client.xrevrange(new.triggers(p, channel), "+", "-", count=1)
                entry = last[0][0] if last else b"0-0"
                ms, _, seq = (entry.decode() if isinstance(entry, bytes) else str(entry)).partition("-")
                ids.append((int(ms), int(seq)))
            cursor = str(FeedCursor(ids))
            await client.set(new.delivery_cursor(dispatcher), cursor)
            moved[dispatcher] = cursor
    finally:
        await client.aclose()
    return moved
