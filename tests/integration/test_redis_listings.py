"""Scale-out dead letters and identity conflicts list every entry, however long their
streams: workers append in commit order, the API lists by ingest position, so the whole
stream is read a chunk at a time (real Redis; entries far more than one chunk)."""

from __future__ import annotations

import asyncio
import random

import redis

from services.scaleout.platform import stream_rows
from services.scaleout.redis.keys import dead_letter_record
from services.scaleout.redis.views import RedisViewStore

ENTRIES, CHUNK = 5_000, 700  # the stream is seven chunks and more


def fill(url: str, prefix: str) -> dict[str, int]:
    """Dead letters in commit order, their events at shuffled ingest positions, and a few
    records that never went through ingest (no position). Returns event id -> position."""
    client = redis.Redis.from_url(url)
    positions = list(range(1, ENTRIES + 1))
    random.Random(7).shuffle(positions)
    given: dict[str, int] = {}
    pipe = client.pipeline(transaction=False)
    for n, position in enumerate(positions):
        event_id = f"e{n}"
        given[event_id] = position
        pipe.xadd(f"{prefix}:deadletters", {"record": dead_letter_record("t", n % 4, n, event_id, "unfoldable")})
        pipe.set(f"{prefix}:event:{event_id}", position)
    for n in range(3):  # written by another producer: no position
        pipe.xadd(f"{prefix}:deadletters", {"record": dead_letter_record("t", 0, ENTRIES + n, None, "not a record")})
    pipe.execute()
    return given


def test_every_dead_letter_is_listed_in_position_order_page_after_page(redis_url: str, redis_prefix: str) -> None:
    given = fill(redis_url, redis_prefix)

    async def pages() -> list[list[dict[str, object]]]:
        out, after = [], 0
        async with RedisViewStore(redis_url, redis_prefix) as store:
            while True:
                page = await stream_rows(store, "deadletters", after, 1_000, chunk_size=CHUNK)
                if not page:
                    return out
                out.append(page)
                after = int(page[-1]["position"] or 0)  # type: ignore[call-overload]

    listed = [row for page in asyncio.run(pages()) for row in page]
    unpositioned = [r for r in listed if r["position"] is None]
    positioned = [r for r in listed if r["position"] is not None]
    assert len(unpositioned) == 3 and listed[:3] == unpositioned  # first, on the first page
    assert [r["position"] for r in positioned] == list(range(1, ENTRIES + 1))  # every one, once, in order
    assert all(given[str(r["event_id"])] == r["position"] for r in positioned)
    # the last positions, committed early in the stream, are on the last page
    tail = asyncio.run(_page(redis_url, redis_prefix, ENTRIES - 5))
    assert [r["position"] for r in tail] == list(range(ENTRIES - 4, ENTRIES + 1))


async def _page(url: str, prefix: str, after: int) -> list[dict[str, object]]:
    async with RedisViewStore(url, prefix) as store:
        return await stream_rows(store, "deadletters", after, 100, chunk_size=CHUNK)
