"""``POST /v1/forms/{form_id}``: a browser form post becomes a ``web_form`` touchpoint.

Accepts ``application/x-www-form-urlencoded`` and ``multipart/form-data`` (text fields
only). The form's public key (field ``_key`` or query ``key``) may only post that form,
and only from the form's allowed origins (CORS allow-list, preflight answered here).
Field ``_event_id`` makes a resubmission idempotent; a field sent twice is refused (422).
A filled honeypot field (``_hp``) is answered like a success but stored nowhere and
counted as ``rejected/spam``.
Answer: 303 to the form's thank-you URL, or JSON when the client asks for JSON (fetch).
"""

from __future__ import annotations

import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from starlette.datastructures import UploadFile

from projections.codec import format_instant
from services import metrics
from services.api.auth import RateLimiter
from services.api.body import read_limited
from services.api.intake import submit
from services.api.responses import JSON
from services.ports import Intake
from services.settings import FormSettings

__all__ = ["form_router"]

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_FORM_BODY = {
    "type": "object", "additionalProperties": {"type": "string", "maxLength": 5000},
    "description": "the form's fields (text only, each once); the form's email and phone fields name the customer",
    "properties": {"_key": {"type": "string", "description": "the form's public key (or query key=)"},
                   "_event_id": {"type": "string", "description": "makes a resubmission idempotent"}},
}


def form_router(platform: Intake, limiter: RateLimiter) -> APIRouter:
    router = APIRouter(tags=["forms"])
    settings = platform.settings

    def form_of(form_id: str) -> FormSettings:
        form = settings.forms.get(form_id)
        if form is None:
            raise HTTPException(404, "no such form")
        return form

    def cors(form: FormSettings, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin is None or origin not in form.origins:
            raise HTTPException(403, "this origin may not post this form")
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    @router.options("/v1/forms/{form_id}", include_in_schema=False)
    async def preflight(form_id: str, request: Request) -> Response:
        headers = cors(form_of(form_id), request)
        headers.update({"Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": "Content-Type, Accept",
                        "Access-Control-Max-Age": "600"})
        return Response(status_code=204, headers=headers)

    @router.post("/v1/forms/{form_id}", status_code=303, openapi_extra={"requestBody": {"required": True, "content": {
                     media: {"schema": _FORM_BODY} for media in _FORM_TYPES}}},
                 responses={202: {"description": "stored (JSON clients)"}, 303: {"description": "stored"},
                            401: {"description": "wrong or missing form key"},
                            403: {"description": "this origin may not post this form"},
                            413: {"description": "the form is too large"},
                            415: {"description": "not a form (urlencoded or multipart)"},
                            422: {"description": "rejected, with field paths"},
                            429: {"description": "too many submissions; retry after Retry-After"}})
    async def post_form(form_id: str, request: Request) -> Response:
        form = form_of(form_id)
        headers = cors(form, request)
        try:
            return await accept(form_id, form, request, headers)
        except HTTPException as error:  # every answer to an allowed origin carries CORS headers
            raise HTTPException(error.status_code, error.detail, {**headers, **(error.headers or {})}) from None

    async def accept(form_id: str, form: FormSettings, request: Request, headers: dict[str, str]) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in _FORM_TYPES:
            raise HTTPException(415, "send a form: urlencoded or multipart", headers=headers)
        wait = limiter.retry_after(f"form:{form_id}:{request.client.host if request.client else ''}")
        if wait:
            raise HTTPException(429, "too many submissions", headers={**headers, "Retry-After": str(int(wait) + 1)})
        await read_limited(request, settings.max_event_bytes)  # caches the body for request.form()
        fields = await _fields(request)
        presented = fields.pop("_key", None) or request.query_params.get("key", "")
        if not hmac.compare_digest(presented.encode(), form.public_key.encode()):
            raise HTTPException(401, "wrong or missing form key", headers=headers)
        wants_json = "application/json" in request.headers.get("accept", "")
        if fields.pop(form.honeypot_field, ""):
            metrics.child(metrics.EVENTS, "web_form", "rejected", "spam").inc()
            return _answer(form, wants_json, {"result": "accepted"}, headers)
        event = _event(form_id, form, fields)
        verdict = (await submit(platform, [event], "", settings.max_event_bytes))[0]
        if verdict["result"] == "rejected":  # the verdict, and the common error shape beside it
            error = {"status": 422, "message": "the form was rejected", "errors": verdict["errors"]}
            return JSON({**verdict, "error": error}, status_code=422, headers=headers)
        return _answer(form, wants_json, verdict, headers)

    return router


async def _fields(request: Request) -> dict[str, str]:
    data = await request.form()
    fields: dict[str, str] = {}
    for name, value in data.multi_items():
        if isinstance(value, UploadFile):
            raise HTTPException(422, [{"path": f"fields.{name}", "message": "file uploads are not accepted"}])
        if name in fields:  # which copy a sender meant is unknowable: refused, like a JSON key given twice
            raise HTTPException(422, [{"path": f"fields.{name}", "message": "a field may be sent only once"}])
        fields[name] = value
    return fields


def _event(form_id: str, form: FormSettings, fields: dict[str, str]) -> dict[str, Any]:
    email, phone = fields.pop(form.email_field, "").strip(), fields.pop(form.phone_field, "").strip()
    return {
        # Namespaced: a public form must not be able to claim another system's event ids.
        "event_id": f"form:{form_id}:{fields.pop('_event_id', '') or uuid.uuid4()}",
        "type": "web_form",
        "occurred_at": format_instant(datetime.now(UTC)),
        "source": form.source,
        "customer": {"emails": [email] if email else [], "phones": [phone] if phone else []},
        "channel": "web",
        "form_id": form_id,
        "fields": {k: v for k, v in fields.items() if not k.startswith("_")},
    }


def _answer(form: FormSettings, wants_json: bool, verdict: dict[str, Any], headers: dict[str, str]) -> Response:
    if wants_json or not form.thank_you_url:
        return JSON(verdict, status_code=202, headers=headers)
    return RedirectResponse(form.thank_you_url, status_code=303, headers=headers)
