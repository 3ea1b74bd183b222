"""Next-best-contact triggers over HTTP: the feed and a server-sent-events stream (read).

* ``GET /v1/triggers?channel=&customer_id=&since=&limit=``: triggers oldest first after
  the cursor ``since``; poll with the ``next_cursor`` returned (it stays put when nothing
  is new). A cursor this API did not give, or an unknown channel: 422.
* ``GET /v1/triggers/stream?channel=&customer_id=&since=``: the same feed as
  ``text/event-stream``. Each trigger is one event (``id:`` the cursor just past it,
  ``event: trigger``, ``data:`` its JSON document); a client reconnecting with
  ``Last-Event-ID`` (browsers do it by themselves) resumes right after the last event it
  saw, which wins over ``since``. While idle the feed is polled every ``poll_seconds`` and
  a comment line is sent every ``heartbeat_seconds`` (proxies keep the connection, the
  server notices a gone client). The stream ends when the client goes, when the storage
  fails (the client reconnects and resumes), and at the first stop signal
  (``platform.draining``), so a graceful stop never waits for streams.

The stream reads one trigger at a time: a page's cursor points past the whole page, and
each event needs its own id for an exact resume.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Protocol

import orjson
import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from starlette.responses import StreamingResponse

from projections.predicates.facts import CONTACT_CHANNELS
from services.api.auth import KeyRing
from services.api.input_rules import ContactChannel, Identifier, cursor
from services.ports import Cursors
from services.api.responses import JSON

__all__ = ["TriggerFeed", "trigger_router", "sse_event"]

log = structlog.get_logger("touchstream.api")


class TriggerFeed(Protocol):
    """What these routes need of ``services.embedded.platform.Platform``."""

    draining: bool
    cursors: Cursors

    async def triggers(self, after: str | None, limit: int, channel: str | None,
                       customer_id: str | None) -> Any: ...  # a TriggerPage: .triggers, .next_cursor


def sse_event(cursor: str | None, trigger: dict[str, Any]) -> bytes:
    head = b"id: %s\n" % cursor.encode() if cursor else b""
    return head + b"event: trigger\ndata: " + orjson.dumps(trigger) + b"\n\n"


def _channel(channel: str | None) -> str | None:
    if channel is not None and channel not in CONTACT_CHANNELS:
        raise HTTPException(422, [{"path": "channel", "message": f"{channel!r} is not a contact channel "
                                   f"(one of {', '.join(CONTACT_CHANNELS)})"}])
    return channel


def trigger_router(platform: TriggerFeed, keys: KeyRing, *, poll_seconds: float = 0.25,
                   heartbeat_seconds: float = 15.0) -> APIRouter:
    router = APIRouter(tags=["triggers"])

    async def page(cursor: str | None, limit: int, channel: str | None, customer_id: str | None) -> Any:
        try:
            return await platform.triggers(cursor, limit, channel, customer_id)
        except ValueError as error:
            raise HTTPException(422, [{"path": "since", "message": str(error)}]) from None

    since_cursor = cursor(platform.cursors.feed, platform.cursors.feed_meaning)
    resume_cursor = cursor(platform.cursors.feed, platform.cursors.feed_meaning, alias="Last-Event-ID", header=True)

    @router.get("/v1/triggers", dependencies=[Depends(keys.require("read"))])
    async def feed(channel: ContactChannel = None, customer_id: Identifier | None = None,
                   since: str | None = since_cursor,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSON:
        found = await page(since, limit, _channel(channel), customer_id)
        return JSON({"triggers": found.triggers, "next_cursor": found.next_cursor})

    @router.get("/v1/triggers/stream", dependencies=[Depends(keys.require("read"))],
                response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                                 "description": "one event per trigger"}})
    async def stream(request: Request, channel: ContactChannel = None, customer_id: Identifier | None = None,
                     since: str | None = since_cursor,
                     last_event_id: str | None = resume_cursor,
                     ) -> StreamingResponse:
        channel = _channel(channel)
        cursor = last_event_id or since
        first = await page(cursor, 1, channel, customer_id)  # a bad cursor is a 422, not a broken stream

        async def events() -> AsyncIterator[bytes]:
            nonlocal cursor
            found, loop = first, asyncio.get_running_loop()
            beat = loop.time()
            yield b"retry: 1000\n\n"  # reconnect after 1 s (the browser's default is 3 to 5 s)
            while not platform.draining:
                for trigger in found.triggers:
                    yield sse_event(found.next_cursor, trigger)
                cursor = found.next_cursor or cursor
                if not found.triggers:
                    if loop.time() - beat >= heartbeat_seconds:
                        beat = loop.time()
                        yield b": heartbeat\n\n"
                    if await request.is_disconnected():
                        return
                    await asyncio.sleep(poll_seconds)
                try:
                    found = await platform.triggers(cursor, 1, channel, customer_id)
                except Exception as error:  # noqa: BLE001 - storage trouble: end; the client resumes
                    log.warning("trigger_stream_read_failed", error=type(error).__name__)
                    return

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
