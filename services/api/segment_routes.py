"""Customer segments over HTTP: sizes and movement, member export, the entry/exit feed.

* ``GET /v1/analytics/segments?from=&to=`` (read): each segment's id, version,
  description, members now, and entries and exits with ``from <= at < to`` (default: the
  last 30 days).
* ``GET /v1/segments/{id}/members?format=csv|jsonl`` (read): every member, streamed in
  customer-id order — customer id, since, and the contact fields a campaign needs (email,
  phone, first and last name, language, lifecycle stage). These are personal data: the
  export is a campaign feature behind the read key, and nothing of it is logged or
  counted in metrics.
* ``GET /v1/segments/changes?after=&segment=&limit=`` (read): entries and exits, oldest
  first from a cursor (``next_cursor``; it stays put when nothing is new).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query
from starlette.responses import StreamingResponse

from projections.codec import format_instant
from projections.view.state import instant_of, micros
from services.api.auth import KeyRing
from services.api.input_rules import Text, WindowEnd, WindowStart, cursor
from services.api.responses import JSON
from services.ports import SegmentReads

__all__ = ["segment_router", "EXPORT_FIELDS", "contact_row"]

EXPORT_FIELDS = ("customer_id", "since", "email", "phone", "first_name", "last_name", "language", "lifecycle_stage")


def contact_row(customer_id: str, since: int | None, state: bytes) -> dict[str, Any]:
    """A member's export row, read from the stored state (first email and phone in order)."""
    d = orjson.loads(state)
    profile = {entry[0]: entry[1] for entry in d.get("profile", ())}
    lifecycle = d.get("lifecycle") or [None]
    return {"customer_id": customer_id, "since": None if since is None else format_instant(instant_of(since)),
            "email": next(iter(d.get("emails") or ()), None), "phone": next(iter(d.get("phones") or ()), None),
            "first_name": profile.get("first_name"), "last_name": profile.get("last_name"),
            "language": profile.get("language"), "lifecycle_stage": lifecycle[0]}


def segment_router(platform: SegmentReads, keys: KeyRing) -> APIRouter:
    router = APIRouter(tags=["segments"])
    source = platform.segments

    @router.get("/v1/analytics/segments", dependencies=[Depends(keys.require("read"))])
    async def analytics(start: WindowStart = None, end: WindowEnd = None) -> JSON:
        end = end or datetime.now(UTC)
        start = start or end - timedelta(days=30)
        counts = await source.counts()
        moved = await source.window(micros(start), micros(end))
        rows = [{"id": s.id, "version": s.version, "description": s.description, "members": counts.get(s.id, 0),
                 "entered": moved.get(s.id, {}).get("entered", 0), "exited": moved.get(s.id, {}).get("exited", 0)}
                for s in source.definitions.segments]
        return JSON({"from": format_instant(start), "to": format_instant(end), "segments": rows})

    feed_cursor = cursor(platform.cursors.feed, platform.cursors.feed_meaning)

    @router.get("/v1/segments/changes", dependencies=[Depends(keys.require("read"))])
    async def changes(after: str | None = feed_cursor, segment: Text | None = None,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSON:
        try:
            page = await source.changes(after, limit, segment)
        except ValueError as error:
            raise HTTPException(422, [{"path": "after", "message": str(error)}]) from None
        return JSON({"changes": page.changes, "next_cursor": page.next_cursor})

    @router.get("/v1/segments/{segment_id}/members", dependencies=[Depends(keys.require("read"))],
                response_class=StreamingResponse, responses={200: {
                    "description": "every member, one row or line each",
                    "content": {media: {"schema": {"type": "string"}}
                                for media in ("text/csv", "application/x-ndjson")},
                }})
    async def members(segment_id: Text, format: Literal["csv", "jsonl"] = "jsonl") -> StreamingResponse:  # noqa: A002
        if segment_id not in source.definitions.by_id:
            raise HTTPException(404, f"no segment '{segment_id}'")
        rows = source.members(segment_id)
        body = _csv(rows) if format == "csv" else _jsonl(rows)
        media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
        disposition = f'attachment; filename="{segment_id}.{format}"'
        return StreamingResponse(body, media_type=media, headers={"Content-Disposition": disposition})

    return router


async def _jsonl(rows: AsyncIterator[tuple[str, int | None, bytes]]) -> AsyncIterator[bytes]:
    async for row in rows:
        yield orjson.dumps(contact_row(*row)) + b"\n"


async def _csv(rows: AsyncIterator[tuple[str, int | None, bytes]]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, EXPORT_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    async for row in rows:
        writer.writerow(contact_row(*row))
        if buffer.tell() > 64_000:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
