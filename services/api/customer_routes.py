"""Reading customers: the 360° view by id or identifier, the timeline, identity conflicts
and dead letters.

Read-your-writes: pass ``min_position`` (the ``position`` ingest returned) and the read
waits, up to ``read_wait_max_seconds``, until the views include it; past that, 503 with
``Retry-After`` rather than a stale answer presented as fresh. Every answer says the
view position it reflects (``X-Touchstream-Position``).
"""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import AwareDatetime

from projections.pressure import contact_pressure
from projections.view_document import from_state, to_document
from services import metrics
from services.api.auth import KeyRing
from services.api.contracts import normalise_email, normalise_phone
from services.api.responses import JSON
from services.platform import EmbeddedPlatform

__all__ = ["customer_router"]

MinPosition = Annotated[int | None, Query(ge=0, description="wait until the views include this log position")]


def customer_router(platform: EmbeddedPlatform, keys: KeyRing) -> APIRouter:
    router = APIRouter(tags=["customers"], dependencies=[Depends(keys.require("read"))])
    store = platform.views

    async def caught_up(min_position: int | None) -> int:
        if min_position and platform.runner.position < min_position:  # else no thread needed
            started = time.perf_counter()
            reached = await asyncio.to_thread(
                platform.runner.wait_for, min_position, platform.settings.read_wait_max_seconds
            )
            metrics.READ_WAIT_SECONDS.observe(time.perf_counter() - started)
            if not reached:
                raise HTTPException(
                    503, f"views are at position {platform.runner.position}, not yet {min_position}",
                    headers={"Retry-After": "1"},
                )
        return platform.runner.position

    def answer(customer_id: str, position: int, at: datetime | None) -> JSON:
        state = store.state(customer_id)
        if state is None:
            raise HTTPException(404, "no such customer")
        view = from_state(orjson.loads(state))
        document = to_document(view)
        document["contact_pressure"] = contact_pressure(view, at or datetime.now(UTC))
        return JSON(document, headers={"X-Touchstream-Position": str(position)})

    @router.get("/v1/customers/{customer_id}")
    async def get_customer(customer_id: str, min_position: MinPosition = None,
                           at: AwareDatetime | None = None) -> JSON:
        """The 360° view; ``at`` sets the time contact pressure is counted against."""
        position = await caught_up(min_position)
        return answer(customer_id, position, at)

    @router.get("/v1/customers")
    async def find_customer(email: str | None = None, phone: str | None = None,
                            external_id: Annotated[str | None, Query(description="system:id")] = None,
                            min_position: MinPosition = None, at: AwareDatetime | None = None) -> JSON:
        """The 360° view of the customer an identifier belongs to."""
        try:
            if email:
                identifier = ("email", normalise_email(email))
            elif phone:
                identifier = ("phone", normalise_phone(phone))
            elif external_id and ":" in external_id:
                identifier = ("external_id", external_id)
            else:
                raise HTTPException(422, [{"path": "query", "message": "give email, phone or external_id=system:id"}])
        except ValueError as error:
            raise HTTPException(422, [{"path": "query", "message": str(error)}]) from None
        position = await caught_up(min_position)
        owner = store.owners([identifier]).get(identifier)
        if owner is None:
            raise HTTPException(404, "no customer has this identifier")
        return answer(owner, position, at)

    @router.get("/v1/customers/{customer_id}/timeline")
    async def timeline(customer_id: str, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                       cursor: str | None = None, min_position: MinPosition = None) -> JSON:
        """Every touchpoint of the customer from the log, newest event time first, paginated."""
        position = await caught_up(min_position)
        before = _cursor_in(cursor) if cursor else None
        # Up to 500 log records: read off the event loop so other requests keep flowing.
        page = await asyncio.to_thread(store.timeline_positions, customer_id, limit=limit + 1, before=before)
        if not page and before is None and store.state(customer_id) is None:
            raise HTTPException(404, "no such customer")
        more, page = len(page) > limit, page[:limit]
        found = await asyncio.to_thread(platform.log.at_positions, [p for _, p in page])
        records = {r.position: r for r in found}
        events = [{"position": p, **records[p].document()} for _, p in page if p in records]
        payload: dict[str, Any] = {"customer_id": customer_id, "events": events,
                                   "next_cursor": _cursor_out(page[-1]) if more else None}
        return JSON(payload, headers={"X-Touchstream-Position": str(position)})

    @router.get("/v1/identity/conflicts")
    async def conflicts(after: int = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSON:
        """Touchpoints whose identifiers belong to different customers (not merged)."""
        rows = await asyncio.to_thread(store.rows, "identity_conflicts", after=after, limit=limit)
        for row in rows:
            row["identifiers"] = orjson.loads(row.pop("detail"))
        return JSON({"conflicts": rows})

    @router.get("/v1/dead-letters")
    async def dead_letters(after: int = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSON:
        """Log records the projection could not apply, with the reason (replayable)."""
        rows = await asyncio.to_thread(store.rows, "dead_letters", after=after, limit=limit)
        for row in rows:
            row.pop("record")
        return JSON({"dead_letters": rows})

    return router


def _cursor_out(item: tuple[str, int]) -> str:
    return base64.urlsafe_b64encode(f"{item[0]}|{item[1]}".encode()).decode()


def _cursor_in(cursor: str) -> tuple[str, int]:
    try:
        at, position = base64.urlsafe_b64decode(cursor.encode()).decode().rsplit("|", 1)
        return at, int(position)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(422, [{"path": "cursor", "message": "not a cursor this API returned"}]) from None
