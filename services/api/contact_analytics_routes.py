"""Next-best-contact figures over HTTP: ``GET /v1/analytics/triggers`` (read).

Per rule and version: triggers fired, candidates suppressed by reason, triggers
delivered (a channel system acknowledged the webhook), reached, not reached, declined,
converted (a touchpoint carrying the trigger id, or a purchase within the attribution
window), per channel and in total, with the conversion and reach rates. The figures are
committed with the views, so they count each decision once whatever crashes happen.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from projections.predicates.facts import CONTACT_CHANNELS
from services.api.auth import KeyRing
from services.api.input_rules import ContactChannel
from services.api.responses import JSON
from services.nbc.figures import rule_figures
from services.ports import TriggerFeed

__all__ = ["contact_analytics_router"]


def contact_analytics_router(platform: TriggerFeed, keys: KeyRing) -> APIRouter:
    router = APIRouter(tags=["next best contact"])

    @router.get("/v1/analytics/triggers", dependencies=[Depends(keys.require("read"))])
    async def analytics() -> JSON:
        rules = rule_figures(await platform.contact_figures())
        totals = {k: sum(r[k] for r in rules) for k in ("fired", "delivered", "reached", "converted")}
        return JSON({"rules": rules, "totals": totals})

    @router.get("/v1/triggers/dead-letters", dependencies=[Depends(keys.require("read"))])
    async def dead_letters(channel: ContactChannel = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> JSON:
        """Triggers a channel's webhook gave up on (newest first), with the last status and
        the reason, for an operator to fix the receiver and replay them."""
        if channel is not None and channel not in CONTACT_CHANNELS:
            raise HTTPException(422, [{"path": "channel", "message": f"{channel!r} is not a contact channel "
                                       f"(one of {', '.join(CONTACT_CHANNELS)})"}])
        return JSON({"dead_letters": await platform.delivery_dead_letters(channel, limit)})

    return router
