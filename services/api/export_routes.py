"""Subject access and portability: everything held about one customer, in one file.

``GET /v1/customers/{id}/export`` (admin scope: it answers a data subject's request, made
to the operator) returns a JSON document (``format`` ``touchstream.subject_access.v1``),
served as an attachment:

* ``customer``: the 360° view as ``GET /v1/customers/{id}`` gives it — identifiers,
  profile, channels, consents in force, lifecycle stage and its history, purchases,
  service cases, satisfaction, next-best-contact state, contact pressure, the value card;
* ``customers``: every customer id shown as this one (merges: docs/IDENTITY.md);
* ``touchpoints``: every touchpoint of the timeline, oldest first, each as stored;
* ``consent_history``: the consent touchpoints among them (what was given or withdrawn,
  when, through which channel);
* ``lifecycle_transitions`` and ``triggers``: every transition and next-best-contact
  trigger about any of ``customers`` — each trigger with its explanation (rule, facts,
  score, the consent in force);
* ``segments``: the ids of the segments the customer is a member of now;
* ``merges``: the merges and undone merges that concern them (embedded runtime).

Built from the same ports on both runtimes. The feeds it reads (transitions, triggers)
are filtered by customer: on the scale-out runtime that is a scan of each stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException

from projections.codec import format_instant
from projections.segments.membership import members_of
from projections.view.document import from_state
from services.api.auth import KeyRing
from services.api.customer_routes import CustomerId, MinPosition, render
from services.api.merge_routes import merge_event
from services.api.responses import JSON
from services.ports import MergeLog, Platform
from services.value.service import ValueService

__all__ = ["export_router", "FORMAT", "all_triggers"]

FORMAT = "touchstream.subject_access.v1"
PAGE = 1000


def export_router(platform: Platform, keys: KeyRing, value: ValueService) -> APIRouter:
    router = APIRouter(tags=["privacy"])
    wait_max = platform.settings.read_wait_max_seconds

    @router.get("/v1/customers/{customer_id}/export", dependencies=[Depends(keys.require("admin"))],
                responses={404: {"description": "no such customer"},
                           409: {"description": "min_position is beyond every position ingest answered"},
                           503: {"description": "the views have not reached min_position yet"}})
    async def export(customer_id: CustomerId, min_position: MinPosition = None) -> JSON:
        """Everything held about the customer (subject access, portability), as one JSON
        file: the 360° view, every touchpoint, consent history, lifecycle transitions,
        triggers with their explanations, segment memberships, merges."""
        caught = await platform.caught_up(min_position, wait_max)
        if caught.beyond:
            raise HTTPException(409, [{"path": "min_position", "message": f"no write was given position "
                                       f"{min_position}: pass a position ingest answered (the views are at "
                                       f"{caught.position})"}])
        if not caught.reached:
            raise HTTPException(503, f"views are at position {caught.position}, not yet {min_position}",
                                headers={"Retry-After": "1"})
        root = platform.shown_as(customer_id)
        state = await platform.state(root)
        if state is None:
            raise HTTPException(404, "no such customer")
        view = from_state(orjson.loads(state))
        document = await render(platform, value, customer_id, view, None)
        group = sorted(platform.merges().group(root)) if isinstance(platform, MergeLog) else [root]
        touchpoints = await _timeline(platform, root)
        payload: dict[str, Any] = {
            "format": FORMAT,
            "generated_at": format_instant(datetime.now(UTC)),
            "position": caught.position,
            "customer_id": root,
            "customers": group,
            "customer": document,
            "touchpoints": touchpoints,
            "consent_history": [t for t in touchpoints if t.get("type") == "consent"],
            "lifecycle_transitions": [t for c in group for t in await _feed(_transitions, platform, c)],
            "triggers": [t for c in group for t in await _feed(_triggers, platform, c)],
            "segments": sorted(members_of(view, platform.segments.definitions)),
            "merges": await _merges(platform, set(group)) if isinstance(platform, MergeLog) else [],
        }
        return JSON(payload, headers={"X-Touchstream-Position": str(caught.position),
                                      "Content-Disposition": f'attachment; filename="customer-{root}.json"'})

    return router


async def _timeline(platform: Platform, customer_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await platform.timeline(customer_id, 500, cursor)
        events.extend(page.events)
        if not page.next_cursor or not page.events:
            break
        cursor = page.next_cursor
    events.reverse()  # the timeline is newest first; a file reads best oldest first
    return events


async def _transitions(platform: Platform, after: str | None, customer_id: str) -> tuple[list[dict[str, Any]],
                                                                                          str | None]:
    page = await platform.transitions(after, PAGE, customer_id)
    return page.transitions, page.next_cursor


async def _triggers(platform: Platform, after: str | None, customer_id: str) -> tuple[list[dict[str, Any]],
                                                                                      str | None]:
    page = await platform.triggers(after, PAGE, None, customer_id)
    return page.triggers, page.next_cursor


Read = Callable[[Platform, str | None, str], Awaitable[tuple[list[dict[str, Any]], str | None]]]


async def _feed(read: Read, platform: Platform, customer_id: str) -> list[dict[str, Any]]:
    """Every item of a cursor feed about one customer: pages until the cursor stops moving."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page, cursor = await read(platform, after, customer_id)
        items.extend(page)
        if cursor is None or cursor == after:
            return items
        after = cursor


async def all_triggers(platform: Platform, customer_id: str) -> list[dict[str, Any]]:
    """Every next-best-contact trigger about the customer, oldest first."""
    return await _feed(_triggers, platform, customer_id)


async def _merges(platform: MergeLog, customers: set[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while rows := await platform.merge_feed(after, PAGE):
        found.extend(merge_event(r) for r in rows if r["survivor"] in customers or r["absorbed"] in customers)
        after = max(r["undone_position"] if r["undone"] else r["position"] for r in rows)
    return found
