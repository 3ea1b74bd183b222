"""Customer value over HTTP: refit the purchase model now, and read the current one.

``POST /v1/value/refit`` (admin) fits BG/NBD on every customer's purchase history and
stores it (409 when too few customers bought twice); ``GET /v1/value/model`` (read)
says which model the customer views use. Each customer's P(alive) and expected
purchases are on the 360° view (``value``), computed at read time from that model.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from services.api.auth import KeyRing
from services.api.responses import JSON
from services.value.job import NotEnoughHistory
from services.value.service import ValueService

__all__ = ["value_router"]


def value_router(value: ValueService, keys: KeyRing) -> APIRouter:
    router = APIRouter(tags=["value"])

    @router.post("/v1/value/refit", dependencies=[Depends(keys.require("admin"))])
    async def refit() -> JSON:
        try:
            model = await value.refit()
        except NotEnoughHistory as error:
            raise HTTPException(409, f"the purchase model cannot be fitted yet: {error}") from None
        return JSON(model.summary())

    @router.get("/v1/value/model", dependencies=[Depends(keys.require("read"))])
    async def current() -> JSON:
        model = await value.current()
        if model is None:
            raise HTTPException(404, "no purchase model has been fitted yet")
        return JSON(model.summary())

    return router
