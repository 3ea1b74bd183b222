"""The scale-out view store: customer views, identity index and partition positions in Redis.

Same responsibilities as the embedded ``services.embedded.storage.unit.ViewStore``, with Redis as the
position of record (docs/SCALE_OUT.md): a worker folds a batch of one partition, then
``commit`` writes the batch's states, published documents, identity links, conflict and
dead-letter entries *and* the partition's new position in ONE Lua script, fenced: it
applies only if the offset is beyond the stored position, so a worker that lost its
partition, or a replay of an older batch, changes nothing. On assignment a worker reads
``position`` and seeks to it + 1.

Key layout (details and value formats in ``services.scaleout.redis.keys`` and docs/REDIS_KEYS.md):

* ``{prefix}:view:{customer_id}`` the published 360° document (JSON), read downstream
* ``{prefix}:state:{customer_id}`` the stored state (JSON of ``to_state``), for the worker
* ``{prefix}:id:{kind}:{value}`` the customer owning an identifier (first writer wins)
* ``{prefix}:pos:{topic}:{partition}`` last folded offset of that partition
* ``{prefix}:changed:{topic}:{partition}`` hash: customer -> offset of the batch that last
  wrote its state (what ``touchstream replay`` needs to compare a running system)
* ``{prefix}:conflicts``, ``{prefix}:deadletters`` streams, field ``record`` (JSON, no
  identifier values, no payloads)

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
from services.scaleout.redis.keys import STREAM_FIELD, RedisKeys
from services.scaleout.redis.segments import SegmentWrites

__all__ = ["RedisViewStore", "ViewStoreUnavailable", "RedisKeys", "TimelineEntry", "PartitionCommit",
           "LifecycleWrites", "partition_commit"]

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
# record per partition the highest offset acknowledged up to that position.
_ACKNOWLEDGE = """#!lua
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local existing = redis.call('GET', KEYS[1 + 2 * i])
  if existing then
    out[i] = -tonumber(existing)
  else
    local position = redis.call('INCR', KEYS[1])
    redis.call('SET', KEYS[1 + 2 * i], position)
    local field, offset = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
    local high = tonumber(redis.call('HGET', KEYS[2], field) or '-1')
    if offset > high then
      redis.call('HSET', KEYS[2], field, offset)
      redis.call('ZADD', KEYS[2 + 2 * i], position, offset)
    end
    out[i] = position
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

# The log head and the highest position every view includes: for each partition, the
# first acknowledgement not yet folded bounds it. Read-only.
_WATERMARK = """#!lua
local n = tonumber(ARGV[1])
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local mark = head
for i = 1, n do
  local folded = tonumber(redis.call('GET', KEYS[1 + i]) or '-1')
  local start = 0
  while true do
    local chunk = redis.call('ZRANGE', KEYS[1 + n + i], start, start + 99, 'WITHSCORES')
    if chunk[1] == nil then break end
    local pending = nil
    for j = 1, #chunk, 2 do
      if tonumber(chunk[j]) > folded then pending = tonumber(chunk[j + 1]); break end
    end
    if pending then mark = math.min(mark, pending - 1); break end
    start = start + 100
  end
end
return {head, mark}
"""


class ViewStoreUnavailable(RuntimeError):
    """Redis could not be reached or could not take the call (connection, timeout, loading,
    read-only, out of memory). Retry later; for ``commit`` the outcome is unknown."""


class RedisViewStore:
    def __init__(self, url: str, prefix: str = "touchstream", *, timeout: float = 2.0,
                 connect_timeout: float = 1.0):
        self.keys = RedisKeys(prefix)
        options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": connect_timeout,
                                   "decode_responses": False}
        self._redis = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)
        self._writer = aioredis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        kw = self._redis.connection_pool.connection_kwargs
        self._where = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"  # never the password
        self._commit = self._writer.register_script(redis_commit.SCRIPT)
        self._acknowledge = self._writer.register_script(_ACKNOWLEDGE)
        self._claim = self._writer.register_script(_CLAIM)
        self._watermark = self._redis.register_script(_WATERMARK)
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
    async def states(self, customer_ids: Iterable[str]) -> dict[str, bytes]:
        """Stored states of those customers that have one, in one MGET."""
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return {}
        values = await self._call(self._redis.mget([self.keys.state(c) for c in ids]))
        return {c: v for c, v in zip(ids, values) if v is not None}

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
        held = await self._call(self._redis.get(self.keys.state_format))
        if held is not None:
            return int(held)
        positions = await self._call(self._redis.mget([self.keys.position(topic, p) for p in range(partitions)]))
        if any(p is not None for p in positions):
            return None
        await self._call(self._writer.set(self.keys.state_format, state_format, nx=True))
        held = await self._call(self._redis.get(self.keys.state_format))
        return None if held is None else int(held)

    async def position(self, topic: str, partition: int) -> int:
        """The last offset of ``partition`` folded into the store; -1 when none."""
        value = await self._call(self._redis.get(self.keys.position(topic, partition)))
        return -1 if value is None else int(value)

    async def records(self, stream: Literal["conflicts", "deadletters"], *, count: int = 100) -> list[bytes]:
        """The oldest ``count`` entries of the conflicts or dead-letters stream."""
        return [record for _, record in await self.records_after(stream, None, count)]

    async def records_after(self, stream: Literal["conflicts", "deadletters"], after: str | None,
                            count: int) -> list[tuple[str, bytes]]:
        """(entry id, record) of at most ``count`` entries of the conflicts or dead-letters
        stream after the entry id ``after`` (None: from the start), oldest first."""
        key = self.keys.conflicts if stream == "conflicts" else self.keys.deadletters
        entries = await self._call(self._redis.xrange(key, min="-" if after is None else f"({after}", count=count))
        return [(entry_id.decode() if isinstance(entry_id, bytes) else entry_id, fields[STREAM_FIELD])
                for entry_id, fields in entries]

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
        pipe = self._writer.pipeline(transaction=False)
        for batch in batches:
            keys, args = redis_commit.encode(batch, self.keys)
            await self._commit(keys=keys, args=args, client=pipe)  # queues it on the pipeline
        return [bool(applied) for applied in await self._call(pipe.execute())]

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
        """The latest clock tick folded on any partition of ``topic``, in one MGET."""
        values = await self._call(self._redis.mget([self.keys.clock(topic, p) for p in range(partitions)]))
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
        """(customer id, stored state) of every customer, scanned a thousand at a time
        (Redis' scan order)."""
        start = self.keys.state("")
        batch: list[bytes] = []

        async def flush() -> list[tuple[str, bytes]]:
            values = await self._call(self._redis.mget(batch))
            found = [(name.decode()[len(start):], raw)
                     for name, raw in zip(batch, values, strict=True) if raw is not None]
            batch.clear()
            return found

        try:
            async for name in self._redis.scan_iter(match=start.replace("*", r"\*") + "*", count=2000):
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
        """(stream id, trigger document JSON) after the stream id ``after``, oldest first."""
        start = "-" if after is None else f"({after}"
        entries = await self._call(self._redis.xrange(self.keys.triggers(channel), min=start, count=count))
        return [(i.decode(), fields[STREAM_FIELD]) for i, fields in entries]

    async def contact_figures(self) -> dict[tuple[str, int, str, str], int]:
        raw = await self._call(self._redis.hgetall(self.keys.contact_figures))
        out: dict[tuple[str, int, str, str], int] = {}
        for name, value in raw.items():
            rule, version, channel, figure = name.decode().split("|")
            out[(rule, int(version), channel, figure)] = int(value)
        return out

    async def count_delivered(self, rule: str, version: int, channel: str, trigger_id: str) -> bool:
        """Once per trigger (a set of delivered ids), atomically with the figure."""
        counted = await self._call(self._count_delivered(
            keys=[self.keys.delivered, self.keys.contact_figures],
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

    async def store_delivery_dead_letter(self, trigger_id: str, letter: bytes) -> None:
        await self._call(self._writer.hsetnx(self.keys.delivery_dead_letters, trigger_id, letter))

    async def delivery_dead_letters(self) -> list[bytes]:
        return list((await self._call(self._redis.hgetall(self.keys.delivery_dead_letters))).values())

    async def stage_counts(self) -> dict[str, int]:
        raw = await self._call(self._redis.hgetall(self.keys.stages))
        return {k.decode(): int(v) for k, v in sorted(raw.items()) if int(v)}

    async def transitions(self, *, after: str | None = None, count: int = 100) -> list[tuple[str, bytes]]:
        """(stream id, record) of transitions after the stream id ``after``, oldest first."""
        start = "-" if after is None else f"({after}"
        entries = await self._call(self._redis.xrange(self.keys.transitions, min=start, count=count))
        return [(i.decode(), fields[STREAM_FIELD]) for i, fields in entries]

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
            keys += [self.keys.event(event_id), self.keys.acks(topic, partition)]
            args += [f"{topic}:{partition}", offset]
        answers = await self._call(self._acknowledge(keys=keys, args=args))
        return [(abs(int(a)), int(a) < 0) for a in answers]

    async def watermark(self, topic: str, partitions: int) -> tuple[int, int]:
        """(log head, view position): the last position given, and the highest position
        such that every event acknowledged at or below it is in the views."""
        keys = [self.keys.sequence]
        keys += [self.keys.position(topic, p) for p in range(partitions)]
        keys += [self.keys.acks(topic, p) for p in range(partitions)]
        head, mark = await self._call(self._watermark(keys=keys, args=[partitions]))
        return int(head), int(mark)

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
