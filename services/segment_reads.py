"""What the HTTP API reads of segments (``SegmentSource``), and the embedded implementation.

Both runtimes answer with the same documents: a change is a ``SegmentMembershipChanged``
(schemas/segment/membership_changed/v1.avsc) — ``change_id``, ``segment``, ``version``,
``customer_id``, ``kind`` (entered, exited), ``at`` (ISO instant or null), ``cause``.
A member is (customer id, since µs, stored state), the state read only to export
contact fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, NamedTuple, Protocol

from projections.codec import format_instant
from projections.segments import SegmentSet
from projections.view_state import instant_of
from services import metrics, segment_store
from services.viewstore import ViewStore

__all__ = ["SegmentSource", "ChangePage", "EmbeddedSegments", "change_document", "set_segment_gauges"]


class ChangePage(NamedTuple):
    changes: list[dict[str, Any]]
    next_cursor: str | None


class SegmentSource(Protocol):
    definitions: SegmentSet

    async def counts(self) -> dict[str, int]: ...

    async def window(self, start: int, end: int) -> dict[str, dict[str, int]]:
        """Entries and exits per segment with ``start <= at < end`` (µs)."""
        ...

    def members(self, segment: str) -> AsyncIterator[tuple[str, int | None, bytes]]:
        """Every member: (customer id, since µs, stored state), by customer id."""
        ...

    async def changes(self, after: str | None, limit: int, segment: str | None) -> ChangePage:
        """The entry/exit feed from the cursor ``after`` (``ValueError`` if not one)."""
        ...


def change_document(change_id: str, segment: str, version: int, customer_id: str, kind: str, at: int | None,
                    cause: str) -> dict[str, Any]:
    return {"change_id": change_id, "segment": segment, "version": version, "customer_id": customer_id,
            "kind": kind, "at": None if at is None else format_instant(instant_of(at)), "cause": cause}


def set_segment_gauges(definitions: SegmentSet, counts: dict[str, int]) -> None:
    for s in definitions.segments:
        metrics.child(metrics.SEGMENT_CUSTOMERS, s.id).set(counts.get(s.id, 0))


class EmbeddedSegments:
    """Reads of views.sqlite's segment tables (``services.segment_store``)."""

    def __init__(self, store: ViewStore, definitions: SegmentSet) -> None:
        self.store, self.definitions = store, definitions

    async def counts(self) -> dict[str, int]:
        return await asyncio.to_thread(segment_store.counts, self.store)

    async def window(self, start: int, end: int) -> dict[str, dict[str, int]]:
        return await asyncio.to_thread(segment_store.window, self.store, start, end)

    async def members(self, segment: str) -> AsyncIterator[tuple[str, int | None, bytes]]:
        after = ""
        while True:
            rows = await asyncio.to_thread(segment_store.members, self.store, segment, after=after, limit=1000)
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
        rows = await asyncio.to_thread(segment_store.feed, self.store, after=start, limit=limit, segment=segment)
        docs = [change_document(r["change_id"], r["segment"], r["version"], r["customer_id"], r["kind"], r["at"],
                                r["cause"]) for r in rows]
        return ChangePage(docs, str(rows[-1]["feed"]) if rows else after)
