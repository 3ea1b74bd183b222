"""Next-best-contact figures over HTTP: ``GET /v1/analytics/triggers`` (read).

Per rule and version: triggers fired, candidates suppressed by reason, triggers
delivered (a channel system acknowledged the webhook), reached, not reached, declined,
converted (a touchpoint carrying the trigger id, or a purchase within the attribution
window), per channel and in total, with the conversion and reach rates. The figures are
committed with the views, so they count each decision once whatever crashes happen.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from services.api.auth import KeyRing
from services.api.responses import JSON
from services.nbc.figures import rule_figures
from services.platform import Platform

__all__ = ["contact_analytics_router"]


def contact_analytics_router(platform: Platform, keys: KeyRing) -> APIRouter:
    router = APIRouter(tags=["next best contact"])

    @router.get("/v1/analytics/triggers", dependencies=[Depends(keys.require("read"))])
    async def analytics() -> JSON:
        rules = rule_figures(await platform.contact_figures())
        totals = {k: sum(r[k] for r in rules) for k in ("fired", "delivered", "reached", "converted")}
        return JSON({"rules": rules, "totals": totals})

    return router
