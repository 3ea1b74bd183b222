"""Customer value over HTTP: the purchase model, and the portfolio's RFM grid and Pareto curve.

``GET /v1/analytics/rfm``: the quintile cuts (as data values, with the tie rule) and, per
RFM segment and per (R, FM) square, the customers and their revenue; ``GET
/v1/analytics/value``: the named spend figures in ``value_currency`` (total spend, orders,
average order value), the purchases in other currencies (counted, never dropped
silently; read at most every minute), the Pareto curve of revenue (share of revenue
against share of customers, largest first), the share the top 20% hold, and the
lifetime-value distribution (``projections.value.ltv_distribution``). Both read the RFM
cells the runners keep with the views.

``POST /v1/value/refit`` (admin) fits the purchase and spend models on every customer's
history, observed until ``observation_end`` (body ``{"observation_end": RFC 3339 with an
offset}``, optional; default the platform's time, the latest clock tick folded; 409 when
too few customers bought on two days or when no tick was folded and no end given); ``GET
/v1/value/model`` (read) says which model the customer views use; ``GET
/v1/value/cards?format=jsonl|csv&at=&segment=`` (read) streams every customer's value
card, or every member's of a segment (``services.value.export``); ``GET
/v1/value/validation`` (read, embedded) the calibration/holdout table or its chart. Each
customer's card is on the 360° view (``value``), computed at read time from that model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from projections.codec import format_instant
from projections.value.ltv_distribution import ltv_distribution
from projections.value.rfm_cells import TIE_RULE, cut_values, grid, pareto
from projections.view.state import instant_of, micros
from services.api.auth import KeyRing
from services.api.input_rules import Instant
from services.api.responses import JSON
from services.ports import PurchaseLog
from services.segments.changes import SegmentSource
from services.value.export import cards, csv_rows, jsonl
from services.value.job import NotEnoughHistory
from services.value.service import NoPlatformTime, ValueService
from services.value.validation import chart, customer_numbers, holdout

__all__ = ["value_router", "RefitRequest", "currency_figures"]

MONEY = Decimal("0.0001")

class RefitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    observation_end: Instant | None = None


def currency_figures(currency: str, found: dict[str, tuple[int, int, Decimal]]) -> dict[str, Any]:
    """The portfolio's named spend figures in ``currency``, and what other currencies hold:
    the value figures count one currency, so the rest is stated, never silently dropped."""
    customers, orders, spend = found.get(currency, (0, 0, Decimal(0)))
    other = {k: {"customers": c, "orders": n, "total_spend": str(v)} for k, (c, n, v) in sorted(found.items())
             if k != currency}
    return {
        "monetary": {"customers": customers, "orders": orders, "total_spend": str(spend),
                     "average_order_value": str((spend / orders).quantize(MONEY)) if orders else None,
                     "average_spend_per_customer": str((spend / customers).quantize(MONEY)) if customers else None},
        "other_currencies": {"orders": sum(o["orders"] for o in other.values()), "by_currency": other,
                             "note": f"value figures count purchases in {currency} only (setting value_currency, "
                                     "TOUCHSTREAM_VALUE_CURRENCY, default EUR)"},
    }


async def _members(rows: AsyncIterator[tuple[str, int | None, bytes]]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    async for customer_id, _, state in rows:
        yield customer_id, orjson.loads(state)


def value_router(value: ValueService, keys: KeyRing, segments: SegmentSource | None = None,
                 purchases: PurchaseLog | None = None) -> APIRouter:
    router = APIRouter(tags=["value"])

    @router.get("/v1/value/validation", dependencies=[Depends(keys.require("read"))],
                responses={200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}},
                           409: {"description": "too little history on either side of calibration_end, or the "
                                                 "platform's time (no observation_end) not yet past it"}})
    async def validation(calibration_end: Instant, observation_end: Instant | None = None,
                         format: Literal["json", "svg"] = "json") -> Response:  # noqa: A002 - the query parameter
        """The calibration/holdout table (``services.value.validation``): fitted on the
        purchases up to ``calibration_end``, checked on those after, up to
        ``observation_end`` (default: the platform's time); ``format=svg``: the chart."""
        if purchases is None:
            raise HTTPException(501, "this runtime keeps no purchase log to validate on")
        end = micros(observation_end) if observation_end is not None else await value.platform.platform_time()
        start = micros(calibration_end)
        if end is None or start >= end:  # no history after calibration_end to validate on
            raise HTTPException(409, [{"path": "calibration_end", "message":
                                       "the calibration must end before the observation, which is the platform's "
                                       "time (the latest clock tick) unless observation_end says otherwise"
                                       + ("" if end is not None else ": no clock tick yet")}])
        who, at = await purchases.purchase_log()
        try:
            table = await asyncio.to_thread(holdout, customer_numbers(who), at, start, end)
        except ValueError as error:
            raise HTTPException(409, f"the purchase model cannot be validated on this history: {error}") from None
        if format == "svg":
            return Response(chart(table.rows), media_type="image/svg+xml")
        return JSON(table.to_dict())

    @router.post("/v1/value/refit", dependencies=[Depends(keys.require("admin"))],
                 responses={409: {"description": "too few customers bought twice to fit the model, or no "
                                                 "clock tick nor observation_end says when the history ends"}})
    async def refit(body: Annotated[RefitRequest | None, Body()] = None) -> JSON:
        end = body.observation_end if body is not None else None
        try:
            model = await value.refit(None if end is None else micros(end))
        except (NotEnoughHistory, NoPlatformTime) as error:
            raise HTTPException(409, f"the purchase model cannot be fitted yet: {error}") from None
        return JSON(model.summary())

    @router.get("/v1/value/cards", dependencies=[Depends(keys.require("read"))], response_class=StreamingResponse,
                responses={200: {"description": "one value card per customer, streamed", "content": {
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "text/csv": {"schema": {"type": "string"}}}},
                    404: {"description": "no such segment"}})
    async def export(format: Literal["csv", "jsonl"] = "jsonl",  # noqa: A002 - the query parameter's name
                     at: Instant | None = None,
                     segment: Annotated[str | None, Query(max_length=128)] = None) -> StreamingResponse:
        """Every customer's value card (or every member's of ``segment``), streamed, all at one
        time base (``at``, else the platform's time)."""
        if segment is not None and (segments is None or segment not in segments.definitions.by_id):
            raise HTTPException(404, f"no segment '{segment}'")
        every = segment is None or segments is None
        states = value.platform.value_states() if segment is None or segments is None else \
            _members(segments.members(segment))
        _, cuts = await value.portfolio()
        base = await value.time_base(None if at is None else micros(at))
        model, settings = await value.current(), value.platform.settings
        if format == "jsonl":
            body = jsonl(cards(states, model, cuts, base, settings))
        else:
            body = value.platform.value_csv(model, cuts, base) if every else csv_rows(states, model, cuts, base, settings)
        media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
        return StreamingResponse(body, media_type=media,
                                 headers={"Content-Disposition": f'attachment; filename="value-cards.{format}"'})

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
            values = cut_values(cells, cuts)
            body["cuts"] = {
                "last_purchase_day": [format_instant(instant_of(v)) for v in values["last_purchase_day"]],
                "frequency": values["frequency"], "monetary": values["monetary"], "exact": values["exact"],
                "monetary_is": "the mean total spend of the customers in the cut's bucket (their spends within ±1%)",
                "tie_rule": TIE_RULE,
            }
            body.update(grid(cells, cuts))
        return JSON(body)

    @router.get("/v1/analytics/value", dependencies=[Depends(keys.require("read"))])
    async def portfolio(points: Annotated[int, Query(ge=2, le=1000)] = 20) -> JSON:
        cells, _ = await value.portfolio()
        settings = value.platform.settings
        return JSON({"currency": settings.value_currency, **currency_figures(settings.value_currency,
                                                                            await value.currencies()),
                     "pareto": pareto(cells, points),
                     "lifetime_value": ltv_distribution(cells, settings.value_retention_rate,
                                                        settings.value_discount_rate, settings.value_horizon_years)})

    return router
