"""``POST /v1/events``: one touchpoint or a batch, answered per event.

Body: one event object, a JSON list of events, or ``{"events": [...]}``; ≤ 1,000 events,
≤ 1 MiB, ≤ 32 KB per event (settings). One event: 202 accepted, 200 duplicate, 422
rejected (409 when it is only dated ahead of the platform's clock). A batch: 200 with one
result per event (422 when every event was rejected, 409 when each only for its date).
Answers only after the accepted events are committed to the log; storage trouble → 503
with ``Retry-After`` (the sender retries; event ids make the retry safe).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from services import metrics
from services.api.auth import KeyRing, security_of
from services.api.body import read_json
from services.api.intake import submit
from services.api.openapi import TOUCHPOINT_REF, VERDICTS_REF
from services.api.responses import JSON
from services.ports import Intake

__all__ = ["ingest_router"]


def ingest_router(platform: Intake, keys: KeyRing) -> APIRouter:
    router = APIRouter(tags=["ingest"])
    settings = platform.settings
    event_schema = TOUCHPOINT_REF

    @router.post(
        "/v1/events",
        openapi_extra={
            "security": security_of("ingest"),  # authorized in the handler (off FastAPI's dependency solving)
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"anyOf": [  # exclusive: an object, a list, a wrapper
                    event_schema,
                    {"type": "array", "items": event_schema, "minItems": 1, "maxItems": settings.max_batch_events},
                    {"type": "object", "required": ["events"], "additionalProperties": False,
                     "properties": {"events": {"type": "array", "items": event_schema, "minItems": 1,
                                               "maxItems": settings.max_batch_events}}},
                ]}}},
            }
        },
        responses={
            200: {"description": "batch results, or the event was a duplicate",
                  "content": {"application/json": {"schema": VERDICTS_REF}}},
            400: {"description": "malformed or non-strict JSON (a key twice, NaN, not UTF-8)"},
            401: {"description": "missing or unknown API key"},
            403: {"description": "the key lacks the ingest scope"},
            429: {"description": "rate limited; retry after Retry-After"},
            202: {"description": "the event is durably in the log",
                  "content": {"application/json": {"schema": VERDICTS_REF}}},
            413: {"description": "body or event too large"},
            415: {"description": "not application/json"},
            409: {"description": "every event rejected only for being dated ahead of the platform's clock "
                                 "(max_future_seconds); the per-event verdicts beside the error"},
            422: {"description": "rejected, with field paths"},
            503: {"description": "storage unavailable; retry after Retry-After"},
        },
    )
    async def post_events(request: Request) -> JSON:
        started = time.perf_counter()
        keys.authorize(request, "ingest")  # called directly: FastAPI's dependency solving was 9% of CPU here
        body = await read_json(request, settings.max_body_bytes)
        single = isinstance(body, dict) and "events" not in body
        raws: Any = [body] if single else (body["events"] if isinstance(body, dict) else body)
        if not isinstance(raws, list):
            raise HTTPException(422, [{"path": "events", "message": "expected a list of events"}])
        if not single and isinstance(body, dict) and len(body) > 1:  # a typo beside "events" never passes unseen
            raise HTTPException(422, [{"path": name, "message": "a batch is {\"events\": [...]} and nothing else"}
                                      for name in sorted(body) if name != "events"])
        if len(raws) > settings.max_batch_events:  # the contract's maxItems: a 422 like any rule it states
            raise HTTPException(422, [{"path": "events", "message": f"a batch holds at most "
                                                                     f"{settings.max_batch_events} events"}])
        if not raws:
            raise HTTPException(422, [{"path": "events", "message": "the batch is empty"}])
        results = await submit(platform, raws, "" if single else "events", settings.max_event_bytes)
        metrics.INGEST_SECONDS.observe(time.perf_counter() - started)
        counts = {k: sum(r["result"] == k for r in results) for k in ("accepted", "duplicate", "rejected")}
        positions = [r["position"] for r in results if r.get("position")]
        payload = {"position": max(positions, default=None), **counts, "results": results}
        # every event rejected: 422, or 409 when each is well-formed and only ahead of the clock
        refused = 409 if all(r.get("reason") == "in_the_future" for r in results) else 422
        if single:
            status = {"accepted": 202, "duplicate": 200, "rejected": refused}[results[0]["result"]]
            if results[0].get("reason") == "too_large":
                raise HTTPException(413, results[0]["errors"])
        else:
            status = refused if counts["rejected"] == len(results) else 200
        if status in (409, 422):  # the common error shape too, beside the per-event verdicts
            errors = [e for r in results for e in r.get("errors", [])]
            payload["error"] = {"status": status, "message": "every event was rejected", "errors": errors}
        return JSON(payload, status_code=status)

    return router
