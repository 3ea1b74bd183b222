"""Lifecycle stages over HTTP: clock ticks in, the transition feed and analytics out.

* ``POST /v1/clock/ticks`` (admin): append a clock tick (time is data). The scheduler
  does this every ``clock_tick_seconds``; operators and tests may tick explicitly, never
  beyond ``max_future_seconds`` ahead of the platform's clock.
* ``GET /v1/lifecycle/transitions`` (read): the transition feed, oldest first, from a
  cursor; poll with the ``next_cursor`` it returns (it stays put when nothing is new).
* ``GET /v1/analytics/lifecycle?from=&to=`` (read): customers per stage now; for the
  transitions with ``from <= at < to``, the transition matrix and the median dwell in
  each stage left.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from projections.codec import format_instant
from projections.lifecycle.stages import STAGES
from projections.view.state import micros
from services.api.auth import KeyRing
from services.api.body import read_json, read_limited
from services.api.input_rules import Identifier, Instant, WindowEnd, WindowStart, cursor
from services.api.intake import field_errors
from services.api.responses import JSON
from services.ports import LifecycleReads

__all__ = ["lifecycle_router", "lifecycle_summary"]


class TickRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: Instant | None = None  # default: now


def lifecycle_summary(stages: dict[str, int], moves: list[tuple[str, str, int]]) -> dict[str, Any]:
    matrix: dict[str, dict[str, int]] = {}
    dwell: dict[str, list[int]] = {}
    for src, dst, spent in moves:
        row = matrix.setdefault(src, {})
        row[dst] = row.get(dst, 0) + 1
        dwell.setdefault(src, []).append(spent)
    return {
        "stages": {stage: stages.get(stage, 0) for stage in STAGES},
        "customers": sum(stages.values()),
        "transitions": len(moves),
        "matrix": {src: dict(sorted(row.items())) for src, row in sorted(matrix.items())},
        "median_dwell_seconds": {src: round(statistics.median(v) / 1e6, 3) for src, v in sorted(dwell.items())},
    }


async def _tick_body(request: Request) -> TickRequest:
    if not await read_limited(request, _TICK_BYTES):
        return TickRequest()
    try:
        return TickRequest.model_validate(await read_json(request, _TICK_BYTES))
    except ValidationError as error:
        raise HTTPException(422, field_errors(error, "")) from None


_TICK_BYTES = 4096


def lifecycle_router(platform: LifecycleReads, keys: KeyRing) -> APIRouter:
    router = APIRouter(tags=["lifecycle"])
    ahead = timedelta(seconds=platform.settings.max_future_seconds)

    @router.post("/v1/clock/ticks", status_code=202, dependencies=[Depends(keys.require("admin"))],
                 openapi_extra={"requestBody": {"required": False, "content": {"application/json": {
                     "schema": TickRequest.model_json_schema()}}}},
                 responses={400: {"description": "malformed or non-strict JSON"},
                            413: {"description": "a body larger than a tick needs"},
                            409: {"description": "at is further ahead of the platform's clock than "
                                                  "max_future_seconds allows"},
                            422: {"description": "invalid"},
                            415: {"description": "a body that is not application/json"}})
    async def post_tick(request: Request) -> JSON:
        """Append a tick at ``at`` (default: now). The body is read as strictly as an event's."""
        body = await _tick_body(request)
        now = datetime.now(UTC)
        at = (body.at if body.at is not None else now).astimezone(UTC)
        if at > now + ahead:  # a conflict with the platform's clock, not a malformed request
            raise HTTPException(409, [{"path": "at", "message": f"a tick may not be more than "
                                       f"{int(ahead.total_seconds())} s ahead of the platform's clock"}])
        position = await platform.append_tick(at)
        return JSON({"at": format_instant(at), "position": position}, status_code=202)

    feed_cursor = cursor(platform.cursors.feed, platform.cursors.feed_meaning)

    @router.get("/v1/lifecycle/transitions", dependencies=[Depends(keys.require("read"))])
    async def feed(after: str | None = feed_cursor, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   customer_id: Identifier | None = None) -> JSON:
        try:
            page = await platform.transitions(after, limit, customer_id)
        except ValueError as error:
            raise HTTPException(422, [{"path": "after", "message": str(error)}]) from None
        return JSON({"transitions": page.transitions, "next_cursor": page.next_cursor})

    @router.get("/v1/analytics/lifecycle", dependencies=[Depends(keys.require("read"))])
    async def analytics(start: WindowStart = None, end: WindowEnd = None) -> JSON:
        end = end or datetime.now(UTC)
        start = start or end - timedelta(days=30)
        figures = await platform.lifecycle_figures(micros(start), micros(end))
        return JSON({"from": format_instant(start), "to": format_instant(end),
                     **lifecycle_summary(figures.stages, figures.transitions)})

    return router
