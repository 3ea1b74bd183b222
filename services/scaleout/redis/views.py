"""The scale-out view store: customer views, identity index and partition positions in Redis.

Same responsibilities as the embedded ``services.embedded.storage.unit.ViewStore``, with Redis as the
position of record (docs/SCALE_OUT.md): a worker folds a batch of one partition, then
``commit`` writes the batch's states, published documents, identity links, conflict and
dead-letter entries *and* the partition's new position in ONE Lua script, fenced: it
applies only if the offset is beyond the stored position, so a worker that lost its
partition, or a replay of an older batch, changes nothing. On assignment a worker reads
``position`` and seeks to it + 1.

Key layout: ``services.scaleout.redis.keys`` and docs/REDIS_KEYS.md (generated from it).
Every key of a partition's commit carries the partition's hash tag, so the commit runs on
Redis Cluster; the partition-scoped streams (triggers, transitions, conflicts, dead
letters, segment changes) are read merged, with a **feed cursor** naming the last entry
read of every partition (``FeedCursor``), and the partition-scoped counters (stages,
figures, segment sizes) are summed over partitions.

Connection failures and timeouts (also "loading", read-only replica, out of memory) raise
``ViewStoreUnavailable``. If ``commit`` raises it, the outcome is unknown: re-read
``position`` before going on. ``commit`` is never retried by the client (a retry of an
applied batch would answer False); other calls are retried once, without delay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import asyncio
import time

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from projections.identity import Identifier
from projections.value.rfm_cells import Cell, Change
from services.ports import History, history
from services.scaleout.redis import commit as redis_commit
from services.scaleout.redis.commit import PartitionCommit
from services.scaleout.redis.feeds import FeedCursor, feed_cursor_pattern, glob_prefix
from services.scaleout.redis.keys import KEY_LAYOUT, STREAM_FIELD, RedisKeys
from services.scaleout.redis.segments import SegmentWrites

__all__ = ["RedisViewStore", "ViewStoreUnavailable", "RedisKeys", "TimelineEntry", "PartitionCommit",
           "LifecycleWrites", "partition_commit", "FeedCursor", "feed_cursor_pattern"]

TimelineEntry = tuple[str, int, str, bytes]  # customer id, occurred_at µs, event id, document


@dataclass(slots=True)
class LifecycleWrites:
    """What a batch changes of lifecycle stages on its partition, committed in the same
    fenced script as its views."""

    deadlines: dict[str, int | None] = field(default_factory=dict)  # customer -> next deadline (None: none)
    transitions: list[bytes] = field(default_factory=list)  # LifecycleStageChanged JSON, fold order
    stages: dict[str, int] = field(default_factory=dict)  # customers per stage: the change
    clock: int | None = None  # the latest clock tick folded on the partition
    rfm: dict[Cell, Change] = field(default_factory=dict)  # the portfolio's RFM cells: the change
    triggers: list[tuple[str, bytes]] = field(default_factory=list)  # (channel, trigger document JSON), fold order
    figures: dict[tuple[str, int, str, str], int] = field(default_factory=dict)  # next-best-contact figures: the change
    segments: SegmentWrites = field(default_factory=SegmentWrites)  # segment members and entry/exit feed

def partition_commit(topic: str, partition: int, offset: int, states: dict[str, bytes], documents: dict[str, bytes],
                     links: Sequence[tuple[str, str, str]] = (), conflicts: Sequence[bytes] = (),
                     dead_letters: Sequence[bytes] = (), timeline: Sequence[TimelineEntry] = (),
                     base: int | None = None, lifecycle: LifecycleWrites | None = None) -> PartitionCommit:
    """The typed commit (``services.scaleout.redis.commit``) of a partition batch."""
    lc = lifecycle or LifecycleWrites()
    return PartitionCommit(topic, partition, offset, base, lc.clock, states, documents, links, conflicts,
                           dead_letters, timeline, lc.deadlines, lc.transitions, lc.stages, lc.rfm, lc.triggers,
                           lc.figures, lc.segments.members, lc.segments.feed)


POSITION_WAIT_SECONDS = 0.2  # how long a commit waits for ingest to record a listed event's position

# ResponseError covers the refusals a healthy client can meet (MISCONF, NOREPLICAS, BUSY,
# LOADING...): the call did not apply, retry later.
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OutOfMemoryError, ResponseError, OSError)

# A delivery counted once per trigger id.
_COUNT_DELIVERED = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return 1
"""

# A lease: taken when free, renewed by its holder, never taken from a live holder.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# Ingest, after the broker acknowledged: give each new event the next position, remember
# it under its event id (a second copy answers the first copy's position, negated), and
# keep per partition the highest offset acknowledged. Answers, per event, its position
# and 1 when its offset is that partition's new highest (the caller then adds it to the
# partition's acknowledgements, in the partition's own slot). KEYS: seq, acked, one
# event key per event; all in the {ingest} slot.
_ACKNOWLEDGE = """#!lua
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local existing = redis.call('GET', KEYS[2 + i])
  if existing then
    out[2 * i - 1], out[2 * i] = -tonumber(existing), 0
  else
    local position = redis.call('INCR', KEYS[1])
    redis.call('SET', KEYS[2 + i], position)
    local field, offset = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
    local high = tonumber(redis.call('HGET', KEYS[2], field) or '-1')
    out[2 * i - 1], out[2 * i] = position, 0
    if offset > high then
      redis.call('HSET', KEYS[2], field, offset)
      out[2 * i] = 1
    end
  end
end
return out
"""

# Identity claims of one ingest batch, all or none (first writer wins per identifier).
_CLAIM = """#!lua
local owners, taken = {}, false
for i = 1, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  owners[i] = owner
  if owner and owner ~= ARGV[i] then taken = true end
end
local out = {}
for i = 1, #KEYS do
  if owners[i] then
    out[i] = owners[i]
  elseif taken then
    out[i] = ''
  else
    redis.call('SET', KEYS[i], ARGV[i])
    out[i] = ARGV[i]
  end
end
return out
"""

# One partition's first acknowledged position not yet folded (-1: none): the views
# include every event below it. KEYS: the partition's pos and acks. Read-only.
_PENDING = """#!lua
local folded = tonumber(redis.call('GET', KEYS[1]) or '-1')
local start = 0
while true do
  local chunk = redis.call('ZRANGE', KEYS[2], start, start + 99, 'WITHSCORES')
  if chunk[1] == nil then return -1 end
  for j = 1, #chunk, 2 do
    if tonumber(chunk[j]) > folded then return tonumber(chunk[j + 1]) end
  end
  start = start + 100
end
"""


class ViewStoreUnavailable(RuntimeError):
    """Redis could not be reached or could not take the call (connection, timeout, loading,
    read-only, out of memory). Retry later; for ``commit`` the outcome is unknown."""


class RedisViewStore:
    def __init__(self, url: str, prefix: str = "touchstream", *, partitions: int = 1, timeout: float = 2.0,
                 connect_timeout: float = 1.0):
        self.keys = RedisKeys(prefix, partitions)
        options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": connect_timeout,
                                   "decode_responses": False}
        self._redis = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)
        self._writer = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        kw = self._redis.connection_pool.connection_kwargs
        self._where = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"  # never the password
        self._commit = self._writer.register_script(redis_commit.SCRIPT)
        self._acknowledge = self._writer.register_script(_ACKNOWLEDGE)
        self._claim = self._writer.register_script(_CLAIM)
        self._pending = self._redis.register_script(_PENDING)
        self._count_delivered = self._writer.register_script(_COUNT_DELIVERED)
        self._lease = self._writer.register_script(_LEASE)
        self._release = self._writer.register_script(_RELEASE)

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self._writer.aclose()

    async def __aenter__(self) -> RedisViewStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except _UNAVAILABLE as error:
            detail = f"{type(error).__name__}: {error}"
            raise ViewStoreUnavailable(f"redis at {self._where} unavailable: {detail}") from error

    # -- reading -------------------------------------------------------------------------
    @property
    def partitions(self) -> int:
        return self.keys.partitions

    def use_partitions(self, partitions: int) -> None:
        """The topic's partition count, which places every customer's keys."""
        if partitions != self.keys.partitions:
            self.keys = RedisKeys(self.keys.prefix, partitions)

    async def states(self, customer_ids: Iterable[str]) -> dict[str, bytes]:
        """Stored states of those customers that have one: one MGET per partition, in one
        round trip."""
        by_partition: dict[int, list[str]] = {}
        for c in dict.fromkeys(customer_ids):
            by_partition.setdefault(self.keys.partition_of(c), []).append(c)
        if not by_partition:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for p, ids in by_partition.items():
            pipe.mget([self.keys.state(c, p) for c in ids])
        out: dict[str, bytes] = {}
        for ids, values in zip(by_partition.values(), await self._call(pipe.execute()), strict=True):
            out.update((c, v) for c, v in zip(ids, values, strict=True) if v is not None)
        return out

    async def document(self, customer_id: str) -> bytes | None:
        return await self._call(self._redis.get(self.keys.view(customer_id)))

    async def owners(self, identifiers: Iterable[Identifier]) -> dict[Identifier, str]:
        wanted = list(dict.fromkeys(identifiers))
        if not wanted:
            return {}
        values = await self._call(self._redis.mget([self.keys.identifier(k, v) for k, v in wanted]))
        return {i: o.decode() for i, o in zip(wanted, values) if o is not None}

    async def adopt_state_format(self, topic: str, partitions: int, state_format: int) -> int | None:
        """The stored-state format this prefix holds; claimed as ``state_format`` when it
        holds nothing folded yet. None: states folded before the format was recorded."""
        held, layout = await self._singles([self.keys.state_format, self.keys.key_layout])
        if held is not None:
            # states of an older key layout are not where this code looks: refold, like another format
            return int(held) if layout is not None and int(layout) == KEY_LAYOUT else None
        positions = await self._singles([self.keys.position(topic, p) for p in range(partitions)])
        if any(p is not None for p in positions):
            return None
        await self._call(self._writer.set(self.keys.key_layout, KEY_LAYOUT, nx=True))
        await self._call(self._writer.set(self.keys.state_format, state_format, nx=True))
        held = await self._call(self._redis.get(self.keys.state_format))
        return None if held is None else int(held)

    async def _singles(self, names: Sequence[str]) -> list[bytes | None]:
        """GET of each key, in one round trip: keys of different slots (an MGET could not)."""
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.get(name)
        return list(await self._call(pipe.execute())) if names else []

    async def position(self, topic: str, partition: int) -> int:
        """The last offset of ``partition`` folded into the store; -1 when none."""
        value = await self._call(self._redis.get(self.keys.position(topic, partition)))
        return -1 if value is None else int(value)

    async def records(self, stream: Literal["conflicts", "deadletters"], *, count: int = 100) -> list[bytes]:
        """The oldest ``count`` entries of the conflicts or dead-letters feed."""
        return [record for _, record in await self.records_after(stream, None, count)]

    async def records_after(self, stream: Literal["conflicts", "deadletters"], after: str | None,
                            count: int) -> list[tuple[str, bytes]]:
        """(feed cursor after the entry, record) of at most ``count`` entries of the
        conflicts or dead-letters feed after the cursor ``after`` (None: from the start)."""
        key = self.keys.conflicts if stream == "conflicts" else self.keys.deadletters
        return await self.feed(key, after, count)

    async def feed(self, key: Callable[[int], str], after: str | FeedCursor | None,
                   count: int) -> list[tuple[str, bytes]]:
        """At most ``count`` entries of the partition streams ``key(p)``, merged in stream-id
        order, after the feed cursor ``after``: (the feed cursor after the entry, record).
        Each partition's own order is kept, so paging by the returned cursors reads every
        entry once. ValueError for a cursor this feed did not give."""
        n = self.keys.partitions
        cursor = after if isinstance(after, FeedCursor) else FeedCursor.parse(after, n)
        pipe = self._redis.pipeline(transaction=False)
        for p, (ms, seq) in enumerate(cursor.ids):
            pipe.xrange(key(p), min=f"({ms}-{seq}" if (ms, seq) != (0, 0) else "-", count=count)
        merged: list[tuple[int, int, int, bytes]] = []
        for p, entries in enumerate(await self._call(pipe.execute())):
            for entry_id, fields in entries:
                left, _, right = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).partition("-")
                merged.append((int(left), int(right), p, fields[STREAM_FIELD]))
        merged.sort(key=lambda e: e[:3])
        ids = list(cursor.ids)
        out: list[tuple[str, bytes]] = []
        for ms, seq, p, record in merged[:count]:
            ids[p] = (ms, seq)
            out.append((str(FeedCursor(ids)), record))
        return out

    # -- writing -------------------------------------------------------------------------
    async def claim(self, identifier: Identifier, customer_id: str) -> str:
        """Link ``identifier`` to ``customer_id`` unless it is linked already (atomic, first
        writer wins); returns the owner after the call."""
        kind, value = identifier
        previous = await self._call(self._redis.set(self.keys.identifier(kind, value), customer_id, nx=True, get=True))
        return customer_id if previous is None else previous.decode()

    async def commit(
        self,
        topic: str,
        partition: int,
        offset: int,
        states: dict[str, bytes],
        documents: dict[str, bytes],
        links: Sequence[tuple[str, str, str]] = (),
        conflicts: Sequence[bytes] = (),
        dead_letters: Sequence[bytes] = (),
        timeline: Sequence[TimelineEntry] = (),
        base: int | None = None,
        lifecycle: LifecycleWrites | None = None,
    ) -> bool:
        """Write one partition batch and ``offset`` as the partition's position, atomically,
        only if ``offset`` is beyond the stored position — and, given ``base`` (the position
        the batch was folded on top of), only if the stored position is still ``base``, so
        two workers never both apply overlapping batches. Returns whether it applied.
        Links (kind, value, customer) are added first-writer-wins, like ``claim``;
        ``timeline`` entries are (customer id, occurred_at µs, event id, document)."""
        batch = partition_commit(topic, partition, offset, states, documents, links, conflicts, dead_letters,
                                 timeline, base, lifecycle)
        return (await self.commit_all([batch]))[0]

    async def commit_all(self, batches: Sequence[PartitionCommit]) -> list[bool]:
        """Several partitions' batches in one round trip (a pipeline of the same fenced
        script, each applied or refused on its own); whether each applied."""
        if not batches:
            return []
        await self._with_positions(batches)
        links = [link for batch in batches for link in batch.links]
        if links:  # the identity index is not a partition's: first writer wins, before the fenced scripts
            pipe = self._writer.pipeline(transaction=False)
            for kind, value, cid in links:
                pipe.set(self.keys.identifier(kind, value), cid, nx=True)
            await self._call(pipe.execute())
        pipe = self._writer.pipeline(transaction=False)
        for batch in batches:
            keys, args = redis_commit.encode(batch, self.keys)
            await self._commit(keys=keys, args=args, client=pipe)  # queues it on the pipeline
        return [bool(applied) for applied in await self._call(pipe.execute())]

    async def _with_positions(self, batches: Sequence[PartitionCommit]) -> None:
        """Conflict and dead-letter entries carry the position ingest gave their event, so
        the listings page by position in O(page). Ingest records a position just after the
        broker's acknowledgement, so a record folded within that instant may find none yet:
        asked again, for at most ``POSITION_WAIT_SECONDS``. A record that never went
        through ingest (a producer writing to the topic directly) has none: null, listed
        first."""
        entries = {id(b): ([orjson.loads(e) for e in b.conflicts], [orjson.loads(e) for e in b.dead_letters])
                   for b in batches if b.conflicts or b.dead_letters}
        if not entries:
            return
        wanted = {d["event_id"] for pair in entries.values() for side in pair for d in side if d.get("event_id")}
        known: dict[str, int] = {}
        deadline = time.monotonic() + POSITION_WAIT_SECONDS
        while wanted - known.keys():
            known.update(await self.event_positions(sorted(wanted - known.keys())))
            if not wanted - known.keys() or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        for batch in batches:
            if id(batch) in entries:
                conflicts, dead = entries[id(batch)]
                batch.conflicts = [orjson.dumps({**d, "position": known.get(d.get("event_id") or "")})
                                   for d in conflicts]
                batch.dead_letters = [orjson.dumps({**d, "position": known.get(d.get("event_id") or "")})
                                      for d in dead]

    async def listing(self, stream: Literal["conflicts", "deadletters"], after: int,
                      limit: int) -> list[dict[str, Any]]:
        """The conflict or dead-letter entries after the position ``after``, by position
        (then topic, partition, offset), at most ``limit``: each partition's index read
        from ``after`` on, ``limit`` entries each, merged. Entries with no position come
        first, with ``after`` 0."""
        pipe = self._redis.pipeline(transaction=False)
        for p in range(self.keys.partitions):
            pipe.zrangebyscore(self.keys.listing(stream, p), 0 if after <= 0 else f"({after}", "+inf",
                               start=0, num=limit)
        rows = [orjson.loads(member) for members in await self._call(pipe.execute()) for member in members]
        rows.sort(key=lambda r: (r.get("position") or 0, r["topic"], r["partition"], r["offset"]))
        return rows[:limit]

    # -- lifecycle -------------------------------------------------------------------------
    async def due(self, topic: str, partition: int, at: int, limit: int) -> list[tuple[str, int]]:
        """The earliest lifecycle deadlines at or before ``at`` on a partition, at most ``limit``."""
        found = await self._call(self._redis.zrangebyscore(self.keys.deadlines(topic, partition), "-inf", at,
                                                           start=0, num=limit, withscores=True))
        return [(c.decode(), int(score)) for c, score in found]

    async def clock(self, topic: str, partition: int) -> int | None:
        value = await self._call(self._redis.get(self.keys.clock(topic, partition)))
        return None if value is None else int(value)

    async def latest_clock(self, topic: str, partitions: int) -> int | None:
        """The latest clock tick folded on any partition of ``topic``, in one round trip."""
        values = await self._singles([self.keys.clock(topic, p) for p in range(partitions)])
        return max((int(v) for v in values if v is not None), default=None)

    async def purchase_histories(self, currency: str) -> list[History]:
        """Every customer who bought (``History``): every stored state is scanned and
        parsed, a thousand at a time."""
        out: list[History] = []

        def take(d: dict[str, Any]) -> None:
            if d["purchases"]:
                totals = next((t for t in d["currencies"] if t[0] == currency), (currency, 0, "0"))
                first_day = next((v for k, v in d["purchase_days"][3] if k == currency), "0")
                count, first, bits, _ = d["purchase_days"]
                out.append(history(count, first, bits, d["purchases"], totals[1], totals[2], first_day))

        await self._each_state(take)
        return out

    async def purchases_by_currency(self) -> dict[str, tuple[int, int, Decimal]]:
        """Per currency: (customers, purchases, spend) over every stored state."""
        out: dict[str, tuple[int, int, Decimal]] = {}

        def take(d: dict[str, Any]) -> None:
            for currency, count, revenue, *_ in d["currencies"]:
                customers, purchases, spend = out.get(currency, (0, 0, Decimal(0)))
                out[currency] = (customers + (count > 0), purchases + count, spend + Decimal(revenue))  # net of refunds

        await self._each_state(take)
        return out

    async def _each_state(self, take: Callable[[dict[str, Any]], None]) -> None:
        """Every stored state, parsed."""
        async for _, raw in self.every_state():
            take(orjson.loads(raw))

    async def every_state(self) -> AsyncIterator[tuple[str, bytes]]:
        """(customer id, stored state) of every customer, partition after partition, each
        scanned a thousand at a time (Redis' scan order)."""
        for partition in range(self.keys.partitions):
            async for row in self._partition_states(partition):
                yield row

    async def _partition_states(self, partition: int) -> AsyncIterator[tuple[str, bytes]]:
        start = self.keys.state("", partition)
        batch: list[bytes] = []

        async def flush() -> list[tuple[str, bytes]]:
            values = await self._call(self._redis.mget(batch))
            found = [(name.decode()[len(start):], raw)
                     for name, raw in zip(batch, values, strict=True) if raw is not None]
            batch.clear()
            return found

        try:
            async for name in self._redis.scan_iter(match=glob_prefix(start), count=2000):
                batch.append(name)
                if len(batch) >= 1000:
                    for row in await flush():
                        yield row
            if batch:
                for row in await flush():
                    yield row
        except _UNAVAILABLE as error:
            raise ViewStoreUnavailable(f"redis at {self._where} unavailable: {type(error).__name__}") from error

    async def rfm_cells(self, topic: str, partitions: int) -> dict[Cell, Change]:
        """The RFM cells of every partition, merged."""
        pipe = self._redis.pipeline(transaction=False)
        for p in range(partitions):
            pipe.hgetall(self.keys.rfm(topic, p))
        merged: dict[Cell, list[int]] = {}
        for fields in await self._call(pipe.execute()):
            for name, value in fields.items():
                r, f, m, what = name.decode().split(":")
                held = merged.setdefault((int(r), int(f), int(m)), [0, 0])
                held[0 if what == "c" else 1] += int(value)
        return {cell: Change(n, v) for cell, (n, v) in merged.items() if n or v}

    async def save_model(self, name: str, body: bytes) -> None:
        await self._call(self._writer.set(self.keys.model(name), body))

    async def model(self, name: str) -> bytes | None:
        return await self._call(self._redis.get(self.keys.model(name)))

    async def triggers(self, *, channel: str | None = None, after: str | None = None,
                       count: int = 100) -> list[tuple[str, bytes]]:
        """(feed cursor, trigger document JSON) after the feed cursor ``after``, oldest first."""
        return await self.feed(lambda p: self.keys.triggers(p, channel), after, count)

    async def contact_figures(self) -> dict[tuple[str, int, str, str], int]:
        """Every partition's figures and the delivered counts, summed."""
        pipe = self._redis.pipeline(transaction=False)
        for p in range(self.keys.partitions):
            pipe.hgetall(self.keys.contact_figures(p))
        pipe.hgetall(self.keys.delivered_figures)
        out: dict[tuple[str, int, str, str], int] = {}
        for raw in await self._call(pipe.execute()):
            for name, value in raw.items():
                rule, version, channel, figure = name.decode().split("|")
                key = (rule, int(version), channel, figure)
                out[key] = out.get(key, 0) + int(value)
        return out

    async def count_delivered(self, rule: str, version: int, channel: str, trigger_id: str) -> bool:
        """Once per trigger (a set of delivered ids), atomically with the figure."""
        counted = await self._call(self._count_delivered(
            keys=[self.keys.delivered, self.keys.delivered_figures],
            args=[trigger_id, f"{rule}|{version}|{channel}|delivered"]))
        return bool(counted)

    async def hold_lease(self, name: str, owner: str, seconds: float) -> bool:
        held = await self._call(self._lease(keys=[self.keys.lease(name)], args=[owner, int(seconds * 1000)]))
        return bool(held)

    async def release_lease(self, name: str, owner: str) -> None:
        await self._call(self._release(keys=[self.keys.lease(name)], args=[owner]))

    async def delivery_cursor(self, name: str) -> str | None:
        value = await self._call(self._redis.get(self.keys.delivery_cursor(name)))
        return None if value is None else value.decode()

    async def save_delivery_cursor(self, name: str, cursor: str) -> None:
        await self._call(self._writer.set(self.keys.delivery_cursor(name), cursor))

    async def store_delivery_dead_letter(self, trigger_id: str, channel: str, at_us: int, letter: bytes) -> None:
        """Once per trigger, indexed by when it was given up, all channels and its own."""
        pipe = self._writer.pipeline(transaction=True)  # one slot: {delivery}
        pipe.hsetnx(self.keys.delivery_dead_letters, trigger_id, letter)
        pipe.zadd(self.keys.delivery_dead_letter_times(), {trigger_id: at_us}, nx=True)
        pipe.zadd(self.keys.delivery_dead_letter_times(channel), {trigger_id: at_us}, nx=True)
        await self._call(pipe.execute())

    async def delivery_dead_letters(self, channel: str | None, limit: int) -> list[bytes]:
        """The ``limit`` newest, of one channel or all: a page read, not the whole hash."""
        ids = await self._call(self._redis.zrevrange(self.keys.delivery_dead_letter_times(channel), 0, limit - 1))
        if not ids:
            return []
        return [v for v in await self._call(self._redis.hmget(self.keys.delivery_dead_letters, ids)) if v is not None]

    async def stage_counts(self) -> dict[str, int]:
        """Customers per stage: every partition's counts, summed."""
        pipe = self._redis.pipeline(transaction=False)
        for p in range(self.keys.partitions):
            pipe.hgetall(self.keys.stages(p))
        out: dict[str, int] = {}
        for raw in await self._call(pipe.execute()):
            for k, v in raw.items():
                out[k.decode()] = out.get(k.decode(), 0) + int(v)
        return {k: v for k, v in sorted(out.items()) if v}

    async def transitions(self, *, after: str | FeedCursor | None = None,
                          count: int = 100) -> list[tuple[str, bytes]]:
        """(feed cursor, record) of transitions after the feed cursor ``after``, oldest first."""
        return await self.feed(self.keys.transitions, after, count)

    # -- ingest ----------------------------------------------------------------------------
    async def claim_all(self, claims: Sequence[tuple[Identifier, str]]) -> list[str | None]:
        """Link every identifier to its customer, or none of them: if any is already
        owned by another customer, nothing is written (so a batch that must be resolved
        again leaves no identifier owned by a customer that will never exist). Returns the
        owner of each after the call; None for one still unowned."""
        if not claims:
            return []
        keys = [self.keys.identifier(kind, value) for (kind, value), _ in claims]
        owners = await self._call(self._claim(keys=keys, args=[c for _, c in claims]))
        return [o.decode() if o else None for o in owners]

    async def event_positions(self, event_ids: Sequence[str]) -> dict[str, int]:
        """Positions ingest gave to those of the events it acknowledged."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        values = await self._call(self._redis.mget([self.keys.event(e) for e in ids]))
        return {e: int(v) for e, v in zip(ids, values) if v is not None}

    async def acknowledge(self, topic: str, acked: Sequence[tuple[str, int, int]]) -> list[tuple[int, bool]]:
        """After the broker acknowledged (event id, partition, offset) of each record: the
        position of each and whether it was a duplicate (then the first copy's position).
        Never retried by the client: a lost answer is a 503 and the sender's retry is
        answered ``duplicate``."""
        if not acked:
            return []
        keys = [self.keys.sequence, self.keys.high_water]
        args: list[Any] = [len(acked)]
        for event_id, partition, offset in acked:
            keys.append(self.keys.event(event_id))
            args += [f"{topic}:{partition}", offset]
        answers = await self._call(self._acknowledge(keys=keys, args=args))
        # then each partition's acknowledgements, in the partition's slot (ZADD is idempotent)
        pipe = self._writer.pipeline(transaction=False)
        added = False
        for (_, partition, offset), (position, new_high) in zip(acked, zip(answers[::2], answers[1::2]),
                                                                 strict=True):
            if int(new_high):
                pipe.zadd(self.keys.acks(topic, partition), {str(offset): int(position)})
                added = True
        if added:
            await self._call(pipe.execute())
        return [(abs(int(a)), int(a) < 0) for a in answers[::2]]

    async def watermark(self, topic: str, partitions: int) -> tuple[int, int]:
        """(log head, view position): the last position given, and the highest position
        such that every event acknowledged at or below it is in the views."""
        # the head first: what is acknowledged later lies above it; then each partition in its
        # own slot (positions only grow, so reading them one after the other stays safe)
        head = int(await self._call(self._redis.get(self.keys.sequence)) or 0)
        pipe = self._redis.pipeline(transaction=False)
        for p in range(partitions):
            await self._pending(keys=[self.keys.position(topic, p), self.keys.acks(topic, p)], client=pipe)
        mark = head
        for pending in await self._call(pipe.execute()):
            if int(pending) >= 0:
                mark = min(mark, int(pending) - 1)
        return head, mark

    # -- timeline --------------------------------------------------------------------------
    async def timeline_page(self, customer_id: str, *, limit: int,
                            before: tuple[int, str] | None) -> list[tuple[int, str, bytes]]:
        """Newest first: (occurred_at µs, event id, document) strictly before ``before``."""
        key = self.keys.timeline(customer_id)
        if before is None:
            entries = await self._call(self._redis.zrevrangebyscore(key, "+inf", "-inf", start=0, num=limit,
                                                                    withscores=True))
        else:
            at, event_id = before
            # ties on the instant are ordered by event id: take the whole instant, then cut
            entries = await self._call(self._redis.zrevrangebyscore(key, at, "-inf", start=0,
                                                                    num=limit + 1000, withscores=True))
            entries = [(m, s) for m, s in entries if int(s) < at or m.decode() < event_id][:limit]
        if not entries:
            return []
        ids = [m for m, _ in entries]
        documents = await self._call(self._redis.hmget(self.keys.events(customer_id), ids))
        return [(int(s), m.decode(), d) for (m, s), d in zip(entries, documents, strict=True) if d is not None]

    async def ping(self) -> bool:
        return bool(await self._call(self._redis.ping()))
