"""Segments in the scale-out view store (Redis): members, counts, the entry/exit feed.

Keys (docs/REDIS_KEYS.md), in the partition's slot but the definitions:

* ``<prefix>:{p<partition>}:segment:<id>`` hash: customer id -> since (µs) for every
  member of the partition; the segment's size is the sum of their lengths. A customer
  belongs to one partition, so only that partition's worker writes their fields, in the
  fenced commit of the batch that changed them.
* ``<prefix>:{p<partition>}:segment-changes`` stream, field ``record``:
  ``SegmentMembershipChanged`` JSON, in commit order; ``GET /v1/segments/changes`` reads
  the partitions' streams merged (a feed cursor).
* ``<prefix>:segment-definitions`` hash: segment id -> ``version:fingerprint`` the members
  were computed for (``touchstream segments rebuild`` writes it).

``SegmentWrites`` is what a batch adds to the fenced commit (``services.scaleout.redis.views``);
``RedisSegments`` is the API's ``SegmentSource``; ``rebuild`` re-evaluates every stored
view when the definitions changed (workers stopped: it is not fenced against them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from projections.codec import instant
from projections.segments.membership import ENTERED, EXITED, Change, SegmentSet, members_of, since_of
from projections.view.document import from_state
from projections.view.state import micros
from services.progress import meter
from services.scaleout.redis.feeds import FeedCursor, glob_prefix

__all__ = ["SegmentWrites", "RedisSegments", "rebuild"]


@dataclass(slots=True)
class SegmentWrites:
    members: list[tuple[str, str, int | None]] = field(default_factory=list)  # segment, customer, since (None: out)
    feed: list[bytes] = field(default_factory=list)  # SegmentMembershipChanged JSON, in order


def _stamp(definitions: SegmentSet) -> dict[str, str]:
    return {s.id: f"{s.version}:{s.fingerprint}" for s in definitions.segments}


class RedisSegments:
    """``SegmentSource`` over Redis; reads go through the view store's client."""

    def __init__(self, store: Any, definitions: SegmentSet, max_future_seconds: int = 0) -> None:
        self.store, self.definitions, self.margin = store, definitions, max_future_seconds

    async def counts(self) -> dict[str, int]:
        """Each segment's size: its partitions' member counts, summed."""
        keys, n = self.store.keys, self.store.partitions
        pipe = self.store._redis.pipeline(transaction=False)  # noqa: SLF001 - the store's one client
        for s in self.definitions.segments:
            for p in range(n):
                pipe.hlen(keys.segment(p, s.id))
        sizes = await self.store._call(pipe.execute())  # noqa: SLF001
        return {s.id: sum(int(x) for x in sizes[i * n:(i + 1) * n]) for i, s in enumerate(self.definitions.segments)}

    async def window(self, start: int, end: int) -> dict[str, dict[str, int]]:
        """Scan the feed from the stream id of ``start`` less the future margin (a change is
        committed after its event time, which is at most that far ahead of the clock)."""
        out: dict[str, dict[str, int]] = {}
        first_ms = max(0, (start - self.margin * 1_000_000) // 1000)
        cursor: Any = FeedCursor.at_millisecond(first_ms, self.store.partitions)
        while True:
            entries = await self._entries(cursor, 5000)
            if not entries:
                return out
            for entry_id, record in entries:
                cursor = entry_id
                change = orjson.loads(record)
                at = change["at"]
                if at is not None and start <= micros(instant(at)) < end:
                    row = out.setdefault(change["segment"], {ENTERED: 0, EXITED: 0})
                    row[change["kind"]] += 1

    async def _entries(self, after: Any, count: int) -> list[tuple[str, bytes]]:
        """(feed cursor, record) of the partitions' change streams, merged."""
        return await self.store.feed(self.store.keys.segment_changes, after, count)

    async def members(self, segment: str) -> AsyncIterator[tuple[str, int | None, bytes]]:
        """Every member, partition after partition, in HSCAN order (not sorted: a hash has
        no order), states in MGETs."""
        for partition in range(self.store.partitions):
            cursor = 0
            key = self.store.keys.segment(partition, segment)
            while True:
                cursor, found = await self.store._call(self.store._redis.hscan(key, cursor, count=1000))  # noqa: SLF001
                if found:
                    ids = [c.decode() for c in found]
                    states = await self.store.states(ids)
                    for cid in sorted(ids):
                        if cid in states:
                            yield cid, int(found[cid.encode()]), states[cid]
                if not cursor:
                    break

    async def changes(self, after: str | None, limit: int, segment: str | None) -> Any:
        from services.segments.changes import ChangePage  # the protocol's module imports this one's users

        start: Any = FeedCursor.parse(after, self.store.partitions)  # ValueError: not a cursor this API returned
        page: list[dict[str, Any]] = []
        cursor = after
        scanned = 0
        while len(page) < limit and scanned < 100_000:
            entries = await self._entries(start, max(limit, 500) if segment else limit)
            if not entries:
                break
            scanned += len(entries)
            for entry_id, record in entries:
                cursor = start = entry_id
                change = orjson.loads(record)
                if segment is None or change["segment"] == segment:
                    page.append(change)
                    if len(page) == limit:
                        break
        return ChangePage(page, cursor)


async def check_definitions(store: Any, definitions: SegmentSet) -> list[str]:
    """The segments whose definition differs from the one the members were last rebuilt
    for (none when no rebuild ever ran, or when Redis cannot be read now); a worker logs
    them at start: their members follow the new definition only for customers it touches
    until ``touchstream segments rebuild`` runs."""
    try:
        stored = await stored_definitions(store)
    except Exception:  # noqa: BLE001 - the worker starts anyway; its stall logic handles Redis
        return []
    if not stored:
        return []
    current = _stamp(definitions)
    return sorted({*stored, *current} - {k for k in current if stored.get(k) == current[k]})


async def stored_definitions(store: Any) -> dict[str, str]:
    raw = await store._call(store._redis.hgetall(store.keys.segment_definitions))  # noqa: SLF001
    return {k.decode(): v.decode() for k, v in raw.items()}


async def rebuild(store: Any, definitions: SegmentSet) -> list[Change]:
    """Re-evaluate every stored view against the segments whose definition differs from
    the stored one (and drop removed segments); write members, the feed and the new
    definitions. Run with the workers stopped. Returns the entries and exits."""
    from services.segments.changes import change_document, change_id

    stored = await stored_definitions(store)
    current = _stamp(definitions)
    changed = SegmentSet(tuple(s for s in definitions.segments if stored.get(s.id) != current[s.id]))
    removed = [sid for sid in stored if sid not in current]
    if not changed.segments and not removed:
        return []
    keys, redis = store.keys, store._redis  # noqa: SLF001
    was: set[tuple[str, str]] = set()
    for s in (*(x.id for x in changed.segments), *removed):
        for p in range(store.partitions):
            async for cid, _ in redis.hscan_iter(keys.segment(p, s)):
                was.add((s, cid.decode()))
    moves: list[Change] = []
    batch: list[bytes] = []

    async def evaluate() -> None:
        for raw in await store._call(redis.mget(batch)):  # noqa: SLF001
            if raw is None:
                continue
            view = from_state(orjson.loads(raw))
            now = members_of(view, changed)
            for s in changed.segments:
                held = (s.id, view.customer_id) in was
                was.discard((s.id, view.customer_id))
                if held != (s.id in now):
                    moves.append(Change(view.customer_id, s.id, s.version, ENTERED if s.id in now else EXITED,
                                        since_of(view)))
        batch.clear()

    with meter("re-evaluating stored views") as shown:
        for p in range(store.partitions):  # one partition's keys at a time: an MGET stays in one slot
            async for name in redis.scan_iter(match=glob_prefix(keys.state("", p)), count=2000):
                batch.append(name)
                if len(batch) >= 1000:
                    await evaluate()
                    shown.advance(1000)
            if batch:
                shown.advance(len(batch))
                await evaluate()
    versions = {sid: int(stored[sid].split(":")[0]) for sid in removed}
    moves += [Change(cid, sid, versions.get(sid, 0), EXITED, None) for sid, cid in sorted(was)]
    cause = "definition:" + ",".join(f"{s.id}@{s.fingerprint}" for s in changed.segments)
    # each partition's members and feed entries in one MULTI/EXEC of that partition's slot
    by_partition: dict[int, list[Change]] = {}
    for ch in moves:
        by_partition.setdefault(keys.partition_of(ch.customer_id), []).append(ch)
    for p, changes in sorted(by_partition.items()):
        pipe = redis.pipeline(transaction=True)
        for ch in changes:
            key = keys.segment(p, ch.segment)
            if ch.kind == ENTERED:
                pipe.hset(key, ch.customer_id, ch.at or 0)
            else:
                pipe.hdel(key, ch.customer_id)
            document = change_document(change_id(ch, cause), ch.segment, ch.version, ch.customer_id, ch.kind, ch.at,
                                       cause)
            pipe.xadd(keys.segment_changes(p), {"record": orjson.dumps(document)})
        await store._call(pipe.execute())  # noqa: SLF001
    pipe = redis.pipeline(transaction=False)
    for sid in removed:
        for p in range(store.partitions):
            pipe.delete(keys.segment(p, sid))
        pipe.hdel(keys.segment_definitions, sid)
    if current:
        pipe.hset(keys.segment_definitions, mapping={s.id: current[s.id] for s in changed.segments} or current)
    await store._call(pipe.execute())  # noqa: SLF001
    return moves
