"""Operations: ``/metrics`` (Prometheus), ``/healthz`` (the process answers) and
``/readyz`` (the log answers, the projection runner is alive and not failing, and the
process is not draining — load balancers stop sending traffic otherwise)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from projections.codec import instant
from services import metrics
from services.api.responses import JSON
from services.platform import EmbeddedPlatform

__all__ = ["ops_router", "refresh_gauges"]


def refresh_gauges(platform: EmbeddedPlatform) -> None:
    """Lag figures are computed when scraped: log head, view position, oldest pending age."""
    head, position = platform.log.head(), platform.runner.position
    metrics.LOG_POSITION.set(head)
    metrics.PROJECTION_POSITION.set(position)
    metrics.PROJECTION_LAG_EVENTS.set(max(0, head - position))
    age = 0.0
    if head > position:
        pending = platform.log.read(position, 1)
        if pending:
            received = instant(pending[0].document()["received_at"])
            age = max(0.0, (datetime.now(UTC) - received).total_seconds())
    metrics.PROJECTION_LAG_SECONDS.set(age)


def ops_router(platform: EmbeddedPlatform) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", response_class=Response)
    def prometheus_metrics() -> Response:
        try:
            refresh_gauges(platform)
        except Exception:  # noqa: BLE001 - a scrape still answers while storage is in trouble
            pass
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/healthz")
    async def healthz() -> JSON:
        return JSON({"status": "ok", "runtime": platform.runtime})

    @router.get("/readyz")
    def readyz() -> JSON:
        checks: dict[str, str] = {}
        started = time.perf_counter()
        try:
            head = platform.log.head()
            checks["log"] = "ok"
        except Exception as error:  # noqa: BLE001
            head, checks["log"] = 0, f"failing: {type(error).__name__}"
        checks["projection"] = (
            "ok" if platform.runner.alive and platform.runner.failed is None
            else f"failing: {type(platform.runner.failed).__name__}" if platform.runner.failed else "stopped"
        )
        checks["writer"] = "ok" if platform.writer.alive else "stopped"
        checks["draining"] = "yes" if platform.draining else "no"
        ready = all(v == "ok" for k, v in checks.items() if k != "draining") and not platform.draining
        body = {"ready": ready, "checks": checks, "log_position": head, "view_position": platform.runner.position,
                "check_seconds": round(time.perf_counter() - started, 6)}
        return JSON(body, status_code=200 if ready else 503)

    return router
