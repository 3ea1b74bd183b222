"""Segment entries and exits as both runtimes publish and serve them.

A change is a ``SegmentMembershipChanged`` (schemas/segment/membership_changed/v1.avsc) —
``change_id``, ``segment``, ``version``, ``customer_id``, ``kind`` (entered, exited), ``at``
(ISO instant or null), ``cause``. ``SegmentSource`` is what the HTTP API reads of segments
(counts, members, the feed); a member is (customer id, since µs, stored state), the state
read only to export contact fields.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, NamedTuple, Protocol

from projections.codec import format_instant
from projections.segments.membership import Change, SegmentSet
from projections.view.state import instant_of

__all__ = ["SegmentSource", "ChangePage", "change_document", "change_id"]

_NAMESPACE = uuid.UUID("5e6d3c1a-9b2f-4c8e-a7d4-2f1b0c9e8d7a")


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


def change_id(change: Change, cause: str) -> str:
    """uuid5 of (customer, segment, version, kind, cause): the same change re-derived from
    the same cause (a log position, a partition offset, a definition) has the same id."""
    return str(uuid.uuid5(_NAMESPACE, f"{change.customer_id}\0{change.segment}\0{change.version}\0{change.kind}"
                                      f"\0{cause}"))
