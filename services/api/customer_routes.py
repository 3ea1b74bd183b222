"""Reading customers: the 360° view by id or identifier, the timeline, identity conflicts
and dead letters.

Read-your-writes: pass ``min_position`` (the ``position`` ingest returned) and the read
waits, up to ``read_wait_max_seconds``, until the views include it; past that, 503 with
``Retry-After`` rather than a stale answer presented as fresh. Every answer says the
view position it reflects (``X-Touchstream-Position``).
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query

from projections.as_of import as_of_view, own_identifiers
from projections.codec import format_instant, from_dict
from projections.view.document import contact_document, from_state, to_document
from projections.view.fold import CustomerView
from projections.view.pressure import contact_pressure
from projections.view.state import micros
from services import metrics
from services.api.auth import KeyRing
from services.api.contracts import EMAIL_MAX, EMAIL_PATTERN, normalise_email, normalise_phone, phone_schema
from services.api.input_rules import Identifier, Instant, Position, cursor
from services.api.responses import JSON
from services.ports import CustomerReads
from services.value.card import value_card
from services.value.service import ValueService

__all__ = ["customer_router", "customer_document"]

EXTERNAL_ID = r"[A-Za-z0-9][A-Za-z0-9._~@-]{0,63}:[A-Za-z0-9][A-Za-z0-9._~:@-]{0,127}"  # system:id
_EXTERNAL_ID = re.compile(EXTERNAL_ID)
AS_OF_MAX_EVENTS = 100_000  # an as-of read folds the customer's events on the request: bounded
MinPosition = Annotated[Position | None, Query(description="wait until the views include this log position")]
CustomerId = Annotated[Identifier, Path(description="the customer's id (input rules: identifier)")]
At = Annotated[Instant | None, Query(description="RFC 3339 instant contact pressure is counted against")]
AsOf = Annotated[Instant | None, Query(description="the customer as the events that had happened by this instant "
                                                   "describe them, evaluated at it (docs/PRIVACY.md)")]
KnownAt = Annotated[Position | Instant | None, Query(
    description="only the events the platform had received by this instant, or by this log position (late "
                "events excluded; docs/PRIVACY.md)")]


async def customer_document(platform: CustomerReads, value: ValueService, asked: str,
                            at: datetime | None) -> dict[str, Any] | None:
    """The 360° view of the customer ``asked`` is shown as, with contact pressure, next
    best contact and the value card at ``at`` (default: now); None for no such customer."""
    customer_id = platform.shown_as(asked)
    state = await platform.state(customer_id)
    if state is None:
        return None
    return await render(platform, value, asked, from_state(orjson.loads(state)), at)


async def render(platform: CustomerReads, value: ValueService, asked: str, view: CustomerView,
                 at: datetime | None) -> dict[str, Any]:
    """``view``'s document with contact pressure, next best contact and the value card at
    ``at`` (default: now), and ``merged_into`` when ``asked`` was absorbed into it."""
    customer_id = view.customer_id
    document = to_document(view)
    if customer_id != asked:  # absorbed by a merge: the customer it is shown as, said so
        document["merged_into"] = customer_id
    moment = at or datetime.now(UTC)
    document["contact_pressure"] = contact_pressure(view, moment)
    document["next_best_contact"] = contact_document(view)
    _, cuts = await value.portfolio()
    base = await value.time_base(None if at is None else micros(at))
    document["value"] = value_card(view, await value.current(), cuts, base, platform.settings)
    return document


def customer_router(platform: CustomerReads, keys: KeyRing, value: ValueService) -> APIRouter:
    router = APIRouter(tags=["customers"], dependencies=[Depends(keys.require("read"))])
    wait_max = platform.settings.read_wait_max_seconds

    async def caught_up(min_position: int | None) -> int:
        started = time.perf_counter()
        caught = await platform.caught_up(min_position, wait_max)
        if min_position:
            metrics.READ_WAIT_SECONDS.observe(time.perf_counter() - started)
        if caught.beyond:
            raise HTTPException(409, [{"path": "min_position", "message": f"no write was given position {min_position}: "
                                       f"pass a position ingest answered (the views are at {caught.position})"}])
        if not caught.reached:
            raise HTTPException(
                503, f"views are at position {caught.position}, not yet {min_position}",
                headers={"Retry-After": "1"},
            )
        return caught.position

    async def answer(asked: str, position: int, at: datetime | None) -> JSON:
        document = await customer_document(platform, value, asked, at)
        if document is None:
            raise HTTPException(404, "no such customer")
        return JSON(document, headers={"X-Touchstream-Position": str(position)})

    fold_config = platform.settings.fold_config()  # read once: the files it names are read at start

    async def as_of_answer(asked: str, position: int, as_of: datetime | None, known_at: int | datetime | None,
                           at: datetime | None) -> JSON:
        """The customer from their own events up to ``as_of`` and/or known by ``known_at``
        (``projections.as_of``), evaluated at ``as_of`` (else ``known_at``'s instant, else now)."""
        customer_id = platform.shown_as(asked)
        state = await platform.state(customer_id)
        if state is None:
            raise HTTPException(404, "no such customer")
        current = from_state(orjson.loads(state))
        events, cursor = [], None
        while True:  # every event of the customer (and of those merged into it), from the log
            page = await platform.timeline(customer_id, 500, cursor)
            events.extend(page.events)
            if len(events) > AS_OF_MAX_EVENTS:
                raise HTTPException(422, [{"path": "as_of", "message": f"this customer has more than "
                                           f"{AS_OF_MAX_EVENTS} events: too many to fold on a read"}])
            if not page.next_cursor or not page.events:
                break
            cursor = page.next_cursor
        until = as_of or (known_at if isinstance(known_at, datetime) else None) or datetime.now(UTC)
        chosen = []
        for raw in events:
            event = from_dict({k: v for k, v in raw.items() if k != "position"})
            if as_of is not None and event.occurred_at > as_of:
                continue
            if isinstance(known_at, datetime) and event.received_at > known_at:
                continue
            if isinstance(known_at, int) and (raw.get("position") is None or raw["position"] > known_at):
                continue
            chosen.append((raw.get("position") or 0, event))
        view = await asyncio.to_thread(as_of_view, customer_id, chosen, own_identifiers(current), fold_config,
                                       until=micros(until))
        if view is None:
            raise HTTPException(404, "the customer had no event by then")
        document = await render(platform, value, asked, view, at or until)
        document["as_of"] = None if as_of is None else format_instant(as_of)
        document["known_at"] = (None if known_at is None else known_at if isinstance(known_at, int)
                                else format_instant(known_at))
        return JSON(document, headers={"X-Touchstream-Position": str(position)})

    @router.get("/v1/customers/{customer_id}")
    async def get_customer(customer_id: CustomerId, min_position: MinPosition = None, at: At = None,
                           as_of: AsOf = None, known_at: KnownAt = None) -> JSON:
        """The 360° view; ``at`` sets the time contact pressure is counted against. A
        customer a merge absorbed answers with the view of the customer it is shown as
        (200, not a redirect: the same body a lookup by any of its identifiers gives),
        with ``merged_into`` naming that customer. With ``as_of`` and/or ``known_at``: the
        audit view, the customer as their events up to that instant (or known by that
        instant or log position) describe them, folded from the log (docs/PRIVACY.md)."""
        position = await caught_up(min_position)
        if as_of is not None or known_at is not None:
            return await as_of_answer(customer_id, position, as_of, known_at, at)
        return await answer(customer_id, position, at)

    @router.get("/v1/customers", responses={404: {"description": "no customer has this identifier (or none was "
                                                                 "given: email, phone or external_id)"}})
    async def find_customer(
        email: str | None = Query(None, max_length=EMAIL_MAX, json_schema_extra={"pattern": f"^{EMAIL_PATTERN}$"},
                                  description="an email address (input rules: emails)"),
        phone: str | None = Query(None, max_length=40, json_schema_extra=phone_schema,
                                  description="a phone number (input rules: phones; + as %2B)"),
        external_id: str | None = Query(None, max_length=193, json_schema_extra={"pattern": f"^{EXTERNAL_ID}$"},
                                        description="system:id"),
        min_position: MinPosition = None, at: At = None,
    ) -> JSON:
        """The 360° view of the customer an identifier belongs to (the first given of email,
        phone and external_id)."""
        named = "email" if email is not None else "phone" if phone is not None else "external_id"
        try:
            if email is not None:
                identifier = ("email", normalise_email(email))
            elif phone is not None:
                identifier = ("phone", normalise_phone(phone))
            elif external_id is not None:
                if not _EXTERNAL_ID.fullmatch(external_id):
                    raise ValueError("an external id is given as system:id (input rules: identifiers)")
                identifier = ("external_id", external_id)
            else:  # no identifier names no customer
                raise HTTPException(404, "no customer has this identifier: give email, phone or external_id")
        except ValueError as error:
            raise HTTPException(422, [{"path": named, "message": str(error)}]) from None
        position = await caught_up(min_position)
        owner = await platform.owner(identifier)
        if owner is None:
            raise HTTPException(404, "no customer has this identifier")
        return await answer(owner, position, at)

    timeline_cursor = cursor(platform.cursors.timeline, platform.cursors.timeline_meaning)

    @router.get("/v1/customers/{customer_id}/timeline")
    async def timeline(customer_id: CustomerId, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                       cursor: str | None = timeline_cursor, min_position: MinPosition = None) -> JSON:
        """Every touchpoint of the customer from the log, newest event time first, paginated."""
        position = await caught_up(min_position)
        page = await platform.timeline(customer_id, limit, cursor)
        if not page.events and cursor is None and await platform.state(platform.shown_as(customer_id)) is None:
            raise HTTPException(404, "no such customer")
        payload: dict[str, Any] = {"customer_id": platform.shown_as(customer_id), "events": page.events,
                                   "next_cursor": page.next_cursor}
        return JSON(payload, headers={"X-Touchstream-Position": str(position)})

    @router.get("/v1/identity/conflicts")
    async def conflicts(after: Position = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSON:
        """Touchpoints whose identifiers belong to different customers, oldest first. Each
        says the customer every party is shown as now (``shown_as``: merges follow) and
        whether they are all one customer now (``resolved``)."""
        rows = await platform.conflicts(after, limit)
        for row in rows:
            row["shown_as"] = platform.shown_as(row["customer_id"])
            for claim in row["identifiers"]:
                claim["shown_as"] = platform.shown_as(claim["owner"])
            row["resolved"] = all(claim["shown_as"] == row["shown_as"] for claim in row["identifiers"])
        return JSON({"conflicts": rows})

    @router.get("/v1/dead-letters")
    async def dead_letters(after: Position = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSON:
        """Records the projection could not apply, with the reason (replayable)."""
        return JSON({"dead_letters": await platform.dead_letters(after, limit)})

    return router
