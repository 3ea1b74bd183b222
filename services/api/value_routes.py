"""Customer value over HTTP: the purchase model, and the portfolio's RFM grid and Pareto curve.

``GET /v1/analytics/rfm``: the quintile cuts and, per RFM segment and per (R, FM)
square, the customers and their revenue; ``GET /v1/analytics/value``: the Pareto curve of
revenue (share of revenue against share of customers, largest first), the share the
top 20% hold, and the lifetime-value distribution (``projections.value.ltv_distribution``). Both read the RFM cells the runners keep with the views.

``POST /v1/value/refit`` (admin) fits BG/NBD on every customer's purchase history and
stores it (409 when too few customers bought twice); ``GET /v1/value/model`` (read)
says which model the customer views use. Each customer's P(alive) and expected
purchases are on the 360° view (``value``), computed at read time from that model.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from projections.codec import format_instant
from projections.value.ltv_distribution import ltv_distribution
from projections.value.rfm_cells import grid, pareto
from projections.view.state import instant_of
from services.api.auth import KeyRing
from services.api.responses import JSON
from services.value.job import NotEnoughHistory
from services.value.service import ValueService

__all__ = ["value_router"]


def value_router(value: ValueService, keys: KeyRing) -> APIRouter:
    router = APIRouter(tags=["value"])

    @router.post("/v1/value/refit", dependencies=[Depends(keys.require("admin"))],
                 responses={409: {"description": "too few customers bought twice to fit the model"}})
    async def refit() -> JSON:
        try:
            model = await value.refit()
        except NotEnoughHistory as error:
            raise HTTPException(409, f"the purchase model cannot be fitted yet: {error}") from None
        return JSON(model.summary())

    @router.get("/v1/value/model", dependencies=[Depends(keys.require("read"))],
                responses={404: {"description": "no purchase model has been fitted yet"}})
    async def current() -> JSON:
        model = await value.current()
        if model is None:
            raise HTTPException(404, "no purchase model has been fitted yet")
        return JSON(model.summary())

    @router.get("/v1/analytics/rfm", dependencies=[Depends(keys.require("read"))])
    async def rfm() -> JSON:
        cells, cuts = await value.portfolio()
        body: dict[str, Any] = {"currency": value.platform.settings.value_currency,
                                "customers": sum(c.customers for c in cells.values()), "cuts": None,
                                "segments": {}, "squares": []}
        if cuts is not None:
            body["cuts"] = {
                "last_purchase_day": [format_instant(instant_of(int(v))) for v in cuts.last_purchase_at.values],
                "frequency": [round(v, 2) for v in cuts.frequency.values],
                "monetary": [round(v, 2) for v in cuts.monetary.values],
            }
            body.update(grid(cells, cuts))
        return JSON(body)

    @router.get("/v1/analytics/value", dependencies=[Depends(keys.require("read"))])
    async def portfolio(points: Annotated[int, Query(ge=2, le=1000)] = 20) -> JSON:
        cells, _ = await value.portfolio()
        settings = value.platform.settings
        return JSON({"currency": settings.value_currency, "pareto": pareto(cells, points),
                     "lifetime_value": ltv_distribution(cells, settings.value_retention_rate,
                                                        settings.value_discount_rate, settings.value_horizon_years)})

    return router
