"""The HTTP API (FastAPI): routes, error shapes, request metrics, platform lifecycle.

Errors always come as ``{"error": {"status": 422, "message": "...", "errors": [{"path",
"message"}]}}``, routing's own 404 and 405 included. Storage trouble is 503 with
``Retry-After``, never a 500 and never a hang (SQLite lock waits are bounded by settings).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from eventsourcing.persistence import PersistenceError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services import metrics
from services.api.auth import KeyRing
from services.api.contact_analytics_routes import contact_analytics_router
from services.api.contracts import set_phone_region
from services.api.customer_routes import customer_router
from services.api.form_routes import form_router
from services.api.ingest_routes import ingest_router
from services.api.lifecycle_routes import lifecycle_router
from services.api.export_routes import export_router
from services.desk.routes import desk_router, mount_static
from services.api.merge_routes import merge_router
from services.ports import MergeLog
from services.api.openapi import install_openapi
from services.api.ops_routes import ops_router
from services.api.responses import JSON
from services.api.segment_routes import segment_router
from services.api.trigger_routes import trigger_router
from services.api.value_routes import value_router
from services.contracts.confluent import RegistryUnavailable
from services.nbc.delivery import Webhooks
from services.ports import Platform, PurchaseLog, StorageUnavailable
from services.scaleout.redis.views import ViewStoreUnavailable
from services.value.service import ValueService

__all__ = ["create_app"]

log = structlog.get_logger("touchstream.api")


class RequestMetrics:
    """Counts and times every request by route template (never by raw path: no ids)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            metrics.child(metrics.HTTP_REQUESTS, label, scope["method"], str(status[0])).inc()
            metrics.child(metrics.HTTP_SECONDS, label, scope["method"]).observe(time.perf_counter() - started)


def _error(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> JSON:
    body: dict[str, Any] = {"status": status}
    if isinstance(detail, list):
        body["message"], body["errors"] = "invalid request", detail
    elif isinstance(detail, dict):  # a refusal with a code: {"code", "message", ...}
        body.update(detail)
    else:
        body["message"] = str(detail)
    return JSON({"error": body}, status_code=status, headers=headers)


def _path(loc: Sequence[Any]) -> str:
    """A parameter's own name (``to``, ``after``, ``customer_id``), a body field's path (``at``)."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("query", "path", "header", "body", "cookie"):
        parts = parts[1:]
    return "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts).lstrip(".") or str(loc[0])


def create_app(platform: Platform, *, manage_platform: bool = True) -> FastAPI:
    settings = platform.settings
    set_phone_region(settings.default_phone_region)
    keys = KeyRing(settings)
    value = ValueService(platform, settings.value_refit_seconds)
    webhooks = Webhooks.for_platform(platform)  # one dispatcher per channel in TOUCHSTREAM_WEBHOOK_URLS

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_platform:
            await platform.start()
        value.start()
        await webhooks.start()
        try:
            yield
        finally:
            await webhooks.stop()
            await value.stop()
            if manage_platform:
                await platform.close()

    # /docs (Swagger UI) and /redoc from assets the fastapi-offline package ships, served by
    # this server: an offline or locked-down install has its docs too, and no page loads a CDN.
    app = FastAPIOffline(
        title="Touchstream",
        version="1.0.0",
        summary="Event-sourced multichannel customer-interaction platform: touchpoints in, 360° views out.",
        lifespan=lifespan,
        default_response_class=JSON,
    )
    app.add_middleware(RequestMetrics)

    @app.exception_handler(HTTPException)  # starlette's: routing's 404 and 405 too, not only our own
    async def http_error(_: Request, exc: HTTPException) -> JSON:
        return _error(exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def query_error(_: Request, exc: RequestValidationError) -> JSON:
        return _error(422, [{"path": _path(e["loc"]), "message": e["msg"].removeprefix("Value error, ")}
                            for e in exc.errors()])

    @app.exception_handler(StorageUnavailable)
    @app.exception_handler(PersistenceError)
    @app.exception_handler(ViewStoreUnavailable)
    @app.exception_handler(RegistryUnavailable)
    async def storage_error(_: Request, exc: Exception) -> JSON:
        log.warning("storage_unavailable", runtime=platform.runtime, error=type(exc).__name__)
        wait = max(1, math.ceil(getattr(exc, "retry_after", None) or 1))
        return _error(503, f"storage unavailable: {type(exc).__name__}", {"Retry-After": str(wait)})

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSON:
        log.error("unexpected_error", error=type(exc).__name__)
        return _error(500, "internal error; nothing was stored by this request unless it was acknowledged")

    app.include_router(ingest_router(platform, keys))
    app.include_router(form_router(platform, keys.limiter))
    app.include_router(customer_router(platform, keys, value))
    app.include_router(export_router(platform, keys, value))
    if isinstance(platform, MergeLog):  # the scale-out runtime keeps no merges yet: its document offers none
        app.include_router(merge_router(platform, keys))
    app.include_router(lifecycle_router(platform, keys))
    app.include_router(contact_analytics_router(platform, keys))
    app.include_router(trigger_router(platform, keys))
    app.include_router(value_router(value, keys, platform.segments,
                                    platform if isinstance(platform, PurchaseLog) else None))
    app.include_router(segment_router(platform, keys))
    app.include_router(ops_router(platform))
    app.include_router(desk_router(platform, keys, value))
    mount_static(app)
    install_openapi(app)
    app.state.platform = platform
    return app
