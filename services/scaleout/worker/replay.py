"""Verify the scale-out views: replay the touchpoints topic through the core, compare at a snapshot.

``verify(settings)`` works on a running system (workers folding, clock ticks arriving):

1. **Snapshot.** The stored position of every partition is read in one round trip:
   Redis commits a partition's states with its position atomically, so each position
   says exactly what its partition's views held when it was read.
2. **Replay.** Each partition is read from offset 0 up to and including its snapshot
   position — not to the end of the topic: records after it (ticks, events arriving
   during or before the replay) are not part of the snapshot — and folded in memory by
   the core's one batch decider (``projections.batch.fold_batch``, through the worker's
   own adapter ``services.scaleout.worker.fold.decode``, with an in-memory deadline index in place
   of Redis's: ``Replayer``). No consumer group: nothing is committed.
3. **Compare.** Every customer, replayed or stored, is compared byte for byte with its
   stored state, a thousand at a time; each partition's states of a chunk are read in
   one MULTI/EXEC together with the offset of the batch that last wrote each of them
   (the partition's ``changed`` hash, written by the same fenced commit). A state
   written after the snapshot is not compared with the snapshot: the partition's replay
   goes on to its new stored position and that customer is compared again, for at most
   ``ROUNDS`` rounds; one still moving after that is ``unsettled``, never a difference.

A difference names the customer and the field paths that differ (``services.state_diff``).
A stored position behind the topic's end is lag (information); one beyond what the topic
holds is a difference (the views hold records the log does not). Broker or Redis
unreachable: ``ReplayUnavailable``. This is what ``touchstream replay`` runs with
``TOUCHSTREAM_RUNTIME=kafka``, and the independent check the crash tests rely on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from projections.batch import FoldConfig, fold_batch
from projections.view.document import to_state
from projections.view.fold import CustomerView
from services import progress
from services.contracts.confluent import ConfluentRegistry, RegistryUnavailable, framed_schema_id
from services.scaleout.kafka.records import partition_of
from services.scaleout.kafka.topics import TOUCHPOINTS_TOPIC
from services.scaleout.redis.feeds import glob_prefix
from services.scaleout.redis.keys import RedisKeys
from services.scaleout.worker.fold import decode, due_fetch_size
from services.settings import Settings
from services.state_diff import Comparison

__all__ = ["verify", "live_states", "states_digest", "Replayer", "TopicReader", "ReplayUnavailable"]

IDLE_SECONDS = 30.0  # no record and no end of partition for this long: the broker is not answering
AHEAD_SECONDS = 2.0  # a partition's end seen below its target for this long: the target is beyond the topic
CHUNK = 2_000  # records per fold: batch boundaries change nothing, this only bounds the work in hand
COMPARE_CHUNK = 1_000  # customers per atomic read of states and their changed offsets
ROUNDS = 10  # rounds of replaying further for states written after the snapshot


class ReplayUnavailable(RuntimeError):
    """The broker, Redis or the schema registry could not be read: no verdict."""


class TopicReader:
    """The topic read from offset 0, each partition only up to an offset it is asked for,
    folded by a ``Replayer`` (no consumer group). Records read beyond a target are held
    for a later, further target; a partition waits paused in between."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str, partitions: Sequence[int], replayer: Replayer,
                 registry: ConfluentRegistry | None = None):
        self.consumer, self.replayer, self.registry = consumer, replayer, registry
        self.tps = {p: TopicPartition(topic, p) for p in partitions}
        self.held: dict[int, list[Any]] = {p: [] for p in partitions}  # read beyond the target, in offset order
        self.ends: dict[int, int] = {}  # the last offset on the topic when the partition was last read
        self.ahead: dict[int, int] = {}  # partition -> a target beyond its end
        self.read = 0  # records read from the topic (the progress bar's count)

    def start(self) -> None:
        self.consumer.assign(list(self.tps.values()))
        for tp in self.tps.values():
            self.consumer.seek(tp, 0)
        self.consumer.pause(*self.tps.values())

    async def read_to(self, targets: dict[int, int]) -> None:
        """Fold every partition of ``targets`` up to and including its target offset (or
        its end, when the topic holds less: then it is in ``ahead``)."""
        wanted: dict[int, int] = {}
        for p, target in targets.items():
            self.ahead.pop(p, None)
            self._take(p, target)
            if self.held[p] and p in self.ends:
                self.replayer.flush(p)  # a record beyond the target was read already
            else:
                wanted[p] = target
        self.consumer.resume(*(self.tps[p] for p in wanted))
        progress = time.monotonic()
        short: dict[int, float] = {}  # partition -> since when its end is seen below its target
        while wanted:
            polled = await self.consumer.getmany(*(self.tps[p] for p in wanted), timeout_ms=200, max_records=10_000)
            for tp, records in polled.items():
                progress = time.monotonic()
                self.read += len(records)
                if self.registry is not None:
                    await self.registry.learn({i for r in records if (i := framed_schema_id(r.value)) is not None})
                self.held[tp.partition].extend(records)
                if tp.partition in wanted:
                    self._take(tp.partition, wanted[tp.partition])
            for p, target in list(wanted.items()):
                tp = self.tps[p]
                high = self.consumer.highwater(tp)
                if high is None:
                    continue  # no fetch answered yet
                self.ends[p] = high - 1
                position = await self.consumer.position(tp)
                if self.held[p] or position > target:
                    done = True
                elif position >= high and target >= high:
                    # the end is below the target: fresh fetches must keep saying so
                    progress = time.monotonic()
                    done = time.monotonic() - short.setdefault(p, time.monotonic()) >= AHEAD_SECONDS
                    if done:
                        self.ahead[p] = target
                else:
                    short.pop(p, None)
                    done = False
                if done:
                    self.consumer.pause(tp)
                    self.replayer.flush(p)
                    del wanted[p]
            if time.monotonic() - progress > IDLE_SECONDS:
                raise TimeoutError(f"no progress reading {sorted(wanted)} for {IDLE_SECONDS} s")

    def _take(self, partition: int, target: int) -> None:
        """Fold the held records of ``partition`` up to ``target``; keep those beyond it."""
        held = self.held[partition]
        n = 0
        while n < len(held) and held[n].offset <= target:
            n += 1
        if n:
            self.replayer.add(partition, held[:n])
            del held[:n]


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

    def flush(self, partition: int | None = None) -> None:
        """Fold what is held (of one partition, or of all)."""
        for p in list(self.pending) if partition is None else [partition]:
            self._fold(p)

    def state(self, customer_id: str) -> bytes | None:
        """The replayed stored state of a customer, encoded as the worker encodes it."""
        view = self.views.get(customer_id)
        return None if view is None else orjson.dumps(to_state(view))

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


async def live_states(redis_url: str, prefix: str, partitions: int,
                      topic: str = TOUCHPOINTS_TOPIC) -> tuple[dict[str, bytes], dict[int, int]]:
    """Every stored state under ``prefix`` (a topic of ``partitions`` partitions) by
    customer, and the stored position of each partition (-1: none)."""
    keys = RedisKeys(prefix, partitions)
    client = aioredis.Redis.from_url(redis_url, socket_timeout=30)
    try:
        states: dict[str, bytes] = {}
        for p in range(keys.partitions):  # one partition's slot per MGET
            start = keys.state("", p)
            names = [k async for k in client.scan_iter(match=glob_prefix(start), count=2000)]
            for i in range(0, len(names), 1000):
                chunk = names[i:i + 1000]
                for name, value in zip(chunk, await client.mget(chunk), strict=True):
                    if value is not None:
                        states[name.decode()[len(start):]] = value  # type: ignore[assignment]  # bytes: no decode_responses
        positions = await stored_positions(client, keys, topic, range(partitions))
    finally:
        await client.aclose()
    return states, positions


def states_digest(states: dict[str, bytes]) -> str:
    """SHA-256 over every (customer id, stored state bytes), in customer id order."""
    h = hashlib.sha256()
    for customer_id in sorted(states):
        h.update(customer_id.encode() + b"\0" + states[customer_id] + b"\0")
    return h.hexdigest()


async def stored_positions(client: aioredis.Redis, keys: RedisKeys, topic: str,
                           partitions: Sequence[int]) -> dict[int, int]:
    """Every partition's stored position (-1: none), in one round trip. Each position is
    committed atomically with its partition's states, so each says exactly what its
    partition's views held when it was read (the comparison needs no more than that)."""
    pipe = client.pipeline(transaction=False)
    for p in partitions:
        pipe.get(keys.position(topic, p))
    raw = await pipe.execute() if partitions else []
    return {p: -1 if v is None else int(v) for p, v in zip(partitions, raw, strict=True)}


async def _stored_customers(client: aioredis.Redis, keys: RedisKeys) -> set[str]:
    found: set[str] = set()
    for p in range(keys.partitions):
        start = keys.state("", p)
        found |= {name.decode()[len(start):] async for name in client.scan_iter(match=glob_prefix(start), count=2000)}
    return found


async def _live_with_offsets(client: aioredis.Redis, keys: RedisKeys, topic: str, partitions: int,
                             customers: Sequence[str]) -> dict[str, tuple[bytes | None, int | None]]:
    """(stored state, offset of the batch that last wrote it) of each customer, each
    partition's read in one MULTI/EXEC of its slot: a state and its offset always belong
    together."""
    by_partition: dict[int, list[str]] = {}
    for c in customers:
        by_partition.setdefault(partition_of(c, partitions), []).append(c)
    out: dict[str, tuple[bytes | None, int | None]] = {}
    for p, cs in by_partition.items():
        pipe = client.pipeline(transaction=True)
        pipe.mget([keys.state(c, p) for c in cs])
        pipe.hmget(keys.changed(topic, p), cs)
        states, offsets = await pipe.execute()
        out.update((c, (s, None if o is None else int(o))) for c, s, o in zip(cs, states, offsets, strict=True))
    return out


async def verify(settings: Settings, topic: str | None = None) -> dict[str, Any]:
    """The report of the topic replayed at a snapshot and compared with Redis
    (``identical``: no difference). ``ReplayUnavailable`` when broker, Redis or registry
    cannot be read."""
    try:
        return await _verify(settings, topic or settings.kafka_touchpoints_topic)
    except (KafkaError, RedisError, RegistryUnavailable, TimeoutError, OSError) as error:
        name = type(error).__name__
        raise ReplayUnavailable(str(error) if str(error).startswith(name) else f"{name}: {error}") from error


async def _verify(settings: Settings, topic: str) -> dict[str, Any]:
    keys = RedisKeys(settings.redis_prefix, settings.kafka_partitions)
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=5)
    registry = ConfluentRegistry(settings.schema_registry_url) if settings.schema_registry_url else None
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    try:
        await client.ping()
        await consumer.start()
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            raise ReplayUnavailable(f"the broker knows no topic {topic}")
        count = len(partitions)
        keys = RedisKeys(settings.redis_prefix, count)  # the topic's own count places the customers' keys
        snapshot = await stored_positions(client, keys, topic, partitions)
        replayer = Replayer(settings.fold_config(), count)
        reader = TopicReader(consumer, topic, partitions, replayer, registry)
        reader.start()
        with progress.polled("replaying the topic", sum(o + 1 for o in snapshot.values() if o >= 0),
                             lambda: reader.read):
            await reader.read_to(snapshot)

        comparison = Comparison()
        stored = await _stored_customers(client, keys)
        customers = sorted(stored | replayer.views.keys())
        compared_at = dict(snapshot)

        async def compare(candidates: Sequence[str]) -> dict[int, list[str]]:
            """Compare those customers at ``compared_at``; the ones written later, by partition."""
            moved: dict[int, list[str]] = {}
            for i in range(0, len(candidates), COMPARE_CHUNK):
                chunk = candidates[i:i + COMPARE_CHUNK]
                for c, (live, offset) in (await _live_with_offsets(client, keys, topic, count, chunk)).items():
                    p = partition_of(c, count)
                    if offset is not None and offset > compared_at[p]:
                        moved.setdefault(p, []).append(c)
                    elif live is not None or c in replayer.views:
                        comparison.compare(c, replayer.state(c), live)
            return moved

        moved = await compare(customers)
        rounds = 0
        while moved and rounds < ROUNDS:
            rounds += 1
            now = await stored_positions(client, keys, topic, sorted(moved))
            await reader.read_to(now)
            compared_at.update(now)
            moved = await compare(sorted(c for cs in moved.values() for c in cs))
        unsettled = sorted(c for cs in moved.values() for c in cs)
    finally:
        await consumer.stop()
        await client.aclose()
        if registry is not None:
            await registry.aclose()
    lag = {p: {"stored": snapshot[p], "end": end} for p, end in sorted(reader.ends.items()) if end > snapshot[p]}
    ahead = {p: {"stored": target, "end": reader.ends.get(p, -1)} for p, target in sorted(reader.ahead.items())}
    return {
        "runtime": "kafka",
        "identical": comparison.differing == 0 and not ahead,
        "snapshot": snapshot,
        "compared_at": {p: o for p, o in compared_at.items() if o != snapshot[p]},
        "lag": lag,
        "ahead": ahead,
        "customers": len(replayer.views),
        "live_customers": len(stored),
        **comparison.report(),
        "unsettled_customers": len(unsettled),
        "unsettled": unsettled[:20],
        "rounds": rounds,
        "records_dead": replayer.dead,
    }
