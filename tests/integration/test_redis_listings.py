"""The scale-out dead-letter and conflict listings page by position in O(page): every
entry is listed once, in position order, however many there are, and a page reads about
a page from Redis (measured by the bytes Redis sent), past 100,000 entries."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import redis

from services.scaleout.redis.commit import PartitionCommit
from services.scaleout.redis.keys import RedisKeys, conflict_record, dead_letter_record
from services.scaleout.redis.views import RedisViewStore

PARTITIONS = 4
TOPIC = "t"


def fill(url: str, prefix: str, entries: int, per_commit: int = 5_000) -> dict[str, int]:
    """Dead letters committed by the real commit, in commit order, their events at
    shuffled ingest positions, and a few records that never went through ingest (no
    position). Returns event id -> position."""
    client, keys = redis.Redis.from_url(url), RedisKeys(prefix, PARTITIONS)
    positions = list(range(1, entries + 1))
    random.Random(7).shuffle(positions)
    given = {f"e{n}": position for n, position in enumerate(positions)}
    pipe = client.pipeline(transaction=False)
    for event_id, position in given.items():
        pipe.set(keys.event(event_id), position)
    pipe.execute()
    client.close()
    by_partition: dict[int, list[bytes]] = {}
    for n in range(entries):
        by_partition.setdefault(n % PARTITIONS, []).append(
            dead_letter_record(TOPIC, n % PARTITIONS, n, f"e{n}", "unfoldable"))
    by_partition[0] += [dead_letter_record(TOPIC, 0, entries + n, None, "not a record") for n in range(3)]

    async def commit() -> None:
        async with RedisViewStore(url, prefix, partitions=PARTITIONS) as store:
            offsets = dict.fromkeys(by_partition, 0)
            for p, letters in by_partition.items():
                for i in range(0, len(letters), per_commit):
                    chunk = letters[i:i + per_commit]
                    offsets[p] += len(chunk)
                    applied = await store.commit_all([PartitionCommit(TOPIC, p, offsets[p], dead_letters=chunk)])
                    assert applied == [True]

    asyncio.run(commit())
    return given


async def _page(url: str, prefix: str, after: int, limit: int) -> list[dict[str, Any]]:
    async with RedisViewStore(url, prefix, partitions=PARTITIONS) as store:
        return await store.listing("deadletters", after, limit)


def test_every_dead_letter_is_listed_once_in_position_order_page_after_page(redis_url: str,
                                                                           redis_prefix: str) -> None:
    entries = 5_000
    given = fill(redis_url, redis_prefix, entries)

    async def pages() -> list[list[dict[str, Any]]]:
        out, after = [], 0
        async with RedisViewStore(redis_url, redis_prefix, partitions=PARTITIONS) as store:
            while page := await store.listing("deadletters", after, 700):
                out.append(page)
                after = int(page[-1]["position"] or 0)
        return out

    listed = [row for page in asyncio.run(pages()) for row in page]
    unpositioned = [r for r in listed if r["position"] is None]
    positioned = [r for r in listed if r["position"] is not None]
    assert len(unpositioned) == 3 and listed[:3] == unpositioned  # first, on the first page
    assert [r["position"] for r in positioned] == list(range(1, entries + 1))  # every one, once, in order
    assert all(given[str(r["event_id"])] == r["position"] for r in positioned)
    # the commit stored the position in the stream entry too
    stream = redis.Redis.from_url(redis_url).xrange(RedisKeys(redis_prefix, PARTITIONS).deadletters(1), count=1)
    assert orjson.loads(stream[0][1][b"record"])["position"] == given["e1"]


def test_a_page_past_100_000_entries_reads_a_page_not_the_listing(redis_url: str, redis_prefix: str) -> None:
    entries = 120_000
    fill(redis_url, redis_prefix, entries, per_commit=10_000)
    client = redis.Redis.from_url(redis_url)

    def sent_during(after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        before = int(client.info("stats")["total_net_output_bytes"])
        page = asyncio.run(_page(redis_url, redis_prefix, after, limit))
        return page, int(client.info("stats")["total_net_output_bytes"]) - before

    whole = sum(len(m) for p in range(PARTITIONS)
                for m in client.zrange(RedisKeys(redis_prefix, PARTITIONS).listing("deadletters", p), 0, -1))
    for after in (0, 60_000, entries - 50):
        page, sent = sent_during(after, 100)
        expected = list(range(after + 1, min(after + 100, entries) + 1))
        assert [r["position"] for r in page if r["position"] is not None] == expected[:len(page) - (after == 0) * 3]
        # a page of 100 reads at most 100 entries per partition (and its own answers)
        assert sent < PARTITIONS * 100 * 120 + 20_000, (after, sent, whole)
    assert whole > 100 * 120_000 / 2, whole  # the listing itself is megabytes
    tail, _ = sent_during(entries - 5, 100)
    assert [r["position"] for r in tail] == list(range(entries - 4, entries + 1))


def test_conflicts_are_listed_by_position_too(redis_url: str, redis_prefix: str) -> None:
    keys = RedisKeys(redis_prefix, PARTITIONS)
    redis.Redis.from_url(redis_url).set(keys.event("e-late"), 9)
    redis.Redis.from_url(redis_url).set(keys.event("e-early"), 4)

    async def body() -> list[dict[str, Any]]:
        async with RedisViewStore(redis_url, redis_prefix, partitions=PARTITIONS) as store:
            await store.commit_all([
                PartitionCommit(TOPIC, 2, 1, conflicts=[conflict_record(TOPIC, 2, 1, "e-late", "c-1",
                                                                        [(("email", "a@x"), "c-0")])]),
                PartitionCommit(TOPIC, 3, 1, conflicts=[conflict_record(TOPIC, 3, 1, "e-early", "c-2",
                                                                        [(("phone", "+1"), "c-0")])])])
            return await store.listing("conflicts", 0, 10)

    rows = asyncio.run(body())
    assert [(r["event_id"], r["position"]) for r in rows] == [("e-early", 4), ("e-late", 9)]
    assert all(b"a@x" not in orjson.dumps(r) for r in rows)  # no identifier values
