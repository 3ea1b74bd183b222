"""Operations: ``/metrics`` (Prometheus), ``/healthz`` (the process answers) and
``/readyz`` (the log answers, the projection runner is alive and not failing, and the
process is not draining — load balancers stop sending traffic otherwise)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.responses import JSON
from services.ports import Health

__all__ = ["ops_router"]


def ops_router(platform: Health) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", response_class=Response, responses={200: {
        "description": "Prometheus text exposition (docs/METRICS.md)",
        "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def prometheus_metrics() -> Response:
        try:
            await platform.refresh_gauges()
        except Exception:  # noqa: BLE001 - a scrape still answers while storage is in trouble
            pass
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/healthz")
    async def healthz() -> JSON:
        return JSON({"status": "ok", "runtime": platform.runtime})

    @router.get("/readyz", responses={503: {"description": "not ready: see checks"}})
    async def readyz() -> JSON:
        started = time.perf_counter()
        state = await platform.readiness()
        body = {"ready": state.ready, "checks": state.checks, "log_position": state.log_position,
                "view_position": state.view_position, "check_seconds": round(time.perf_counter() - started, 6)}
        return JSON(body, status_code=200 if state.ready else 503)

    return router
