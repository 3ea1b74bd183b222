"""Reading customers: the 360° view by id or identifier, the timeline, identity conflicts
and dead letters.

Read-your-writes: pass ``min_position`` (the ``position`` ingest returned) and the read
waits, up to ``read_wait_max_seconds``, until the views include it; past that, 503 with
``Retry-After`` rather than a stale answer presented as fresh. Every answer says the
view position it reflects (``X-Touchstream-Position``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query

from projections.view.document import contact_document, from_state, to_document
from projections.view.pressure import contact_pressure
from projections.view.state import micros
from services import metrics
from services.api.auth import KeyRing
from services.api.contracts import normalise_email, normalise_phone
from services.api.input_rules import Cursor, Identifier, Instant, Position, Text
from services.api.responses import JSON
from services.ports import CustomerReads
from services.value.card import value_card
from services.value.service import ValueService

__all__ = ["customer_router"]

MinPosition = Annotated[Position | None, Query(description="wait until the views include this log position")]
CustomerId = Annotated[Identifier, Path(description="the customer's id (input rules: identifier)")]
At = Annotated[Instant | None, Query(description="RFC 3339 instant contact pressure is counted against")]


def customer_router(platform: CustomerReads, keys: KeyRing, value: ValueService) -> APIRouter:
    router = APIRouter(tags=["customers"], dependencies=[Depends(keys.require("read"))])
    wait_max = platform.settings.read_wait_max_seconds

    async def caught_up(min_position: int | None) -> int:
        started = time.perf_counter()
        caught = await platform.caught_up(min_position, wait_max)
        if min_position:
            metrics.READ_WAIT_SECONDS.observe(time.perf_counter() - started)
        if not caught.reached:
            raise HTTPException(
                503, f"views are at position {caught.position}, not yet {min_position}",
                headers={"Retry-After": "1"},
            )
        return caught.position

    async def answer(customer_id: str, position: int, at: datetime | None) -> JSON:
        state = await platform.state(customer_id)
        if state is None:
            raise HTTPException(404, "no such customer")
        view = from_state(orjson.loads(state))
        document = to_document(view)
        moment = at or datetime.now(UTC)
        document["contact_pressure"] = contact_pressure(view, moment)
        document["next_best_contact"] = contact_document(view)
        _, cuts = await value.portfolio()
        base = await value.time_base(None if at is None else micros(at))
        document["value"] = value_card(view, await value.current(), cuts, base, platform.settings)
        return JSON(document, headers={"X-Touchstream-Position": str(position)})

    @router.get("/v1/customers/{customer_id}")
    async def get_customer(customer_id: CustomerId, min_position: MinPosition = None, at: At = None) -> JSON:
        """The 360° view; ``at`` sets the time contact pressure is counted against."""
        position = await caught_up(min_position)
        return await answer(customer_id, position, at)

    @router.get("/v1/customers", responses={404: {"description": "no customer has this identifier"}})
    async def find_customer(email: Annotated[Text | None, Query(max_length=320)] = None,
                            phone: Annotated[Text | None, Query(max_length=40)] = None,
                            external_id: Annotated[Text | None, Query(description="system:id")] = None,
                            min_position: MinPosition = None, at: At = None) -> JSON:
        """The 360° view of the customer an identifier belongs to."""
        try:
            if email:
                identifier = ("email", normalise_email(email))
            elif phone:
                identifier = ("phone", normalise_phone(phone))
            elif external_id and ":" in external_id:
                identifier = ("external_id", external_id)
            elif external_id:
                raise ValueError("an external id is given as system:id")
            else:
                raise HTTPException(422, [{"path": "query", "message": "give email, phone or external_id=system:id"}])
        except ValueError as error:
            named = "email" if email else "phone" if phone else "external_id"
            raise HTTPException(422, [{"path": named, "message": str(error)}]) from None
        position = await caught_up(min_position)
        owner = await platform.owner(identifier)
        if owner is None:
            raise HTTPException(404, "no customer has this identifier")
        return await answer(owner, position, at)

    @router.get("/v1/customers/{customer_id}/timeline")
    async def timeline(customer_id: CustomerId, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                       cursor: Cursor | None = None, min_position: MinPosition = None) -> JSON:
        """Every touchpoint of the customer from the log, newest event time first, paginated."""
        position = await caught_up(min_position)
        try:
            page = await platform.timeline(customer_id, limit, cursor)
        except ValueError:
            raise HTTPException(422, [{"path": "cursor", "message": "not a cursor this API returned"}]) from None
        if not page.events and cursor is None and await platform.state(customer_id) is None:
            raise HTTPException(404, "no such customer")
        payload: dict[str, Any] = {"customer_id": customer_id, "events": page.events,
                                   "next_cursor": page.next_cursor}
        return JSON(payload, headers={"X-Touchstream-Position": str(position)})

    @router.get("/v1/identity/conflicts")
    async def conflicts(after: Position = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSON:
        """Touchpoints whose identifiers belong to different customers (not merged)."""
        return JSON({"conflicts": await platform.conflicts(after, limit)})

    @router.get("/v1/dead-letters")
    async def dead_letters(after: Position = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSON:
        """Records the projection could not apply, with the reason (replayable)."""
        return JSON({"dead_letters": await platform.dead_letters(after, limit)})

    return router
