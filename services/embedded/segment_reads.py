"""The embedded runtime's ``services.segments.changes.SegmentSource``: reads of views.sqlite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from projections.segments.membership import SegmentSet
from services.embedded.storage.unit import ViewStore
from services.segments.changes import ChangePage, change_document

__all__ = ["EmbeddedSegments"]


class EmbeddedSegments:
    """Reads of views.sqlite's segment tables (``services.embedded.storage.segments``)."""

    def __init__(self, store: ViewStore, definitions: SegmentSet) -> None:
        self.store, self.definitions = store, definitions

    async def counts(self) -> dict[str, int]:
        return await asyncio.to_thread(self.store.segments.counts)

    async def window(self, start: int, end: int) -> dict[str, dict[str, int]]:
        return await asyncio.to_thread(self.store.segments.window, start, end)

    async def members(self, segment: str) -> AsyncIterator[tuple[str, int | None, bytes]]:
        after = ""
        while True:
            rows = await asyncio.to_thread(self.store.segments.members, segment, after=after, limit=1000)
            for row in rows:
                yield row
            if len(rows) < 1000:
                return
            after = rows[-1][0]

    async def changes(self, after: str | None, limit: int, segment: str | None) -> ChangePage:
        start = 0
        if after:
            if not after.isdigit():
                raise ValueError("not a cursor this API returned")
            start = int(after)
        rows = await asyncio.to_thread(self.store.segments.feed, after=start, limit=limit, segment=segment)
        docs = [change_document(r["change_id"], r["segment"], r["version"], r["customer_id"], r["kind"], r["at"],
                                r["cause"]) for r in rows]
        return ChangePage(docs, str(rows[-1]["feed"]) if rows else after)
