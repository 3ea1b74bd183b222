"""The agent desk's pages (``/desk``): sign-in, search, the customer card, call logging.

Server-rendered with Jinja2 (every value escaped: names and form fields are customer
input) plus one small script (``static/desk.js``: search as you type, keyboard
shortcuts), served by the API process itself on both runtimes. The pages read through the
same ports as the JSON API and write through the same ingest and validation
(``services.api.intake.submit``), so a call logged here is a touchpoint like any other,
read back at once (read-your-writes on the position ingest answered).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from projections.codec import format_instant
from projections.lifecycle.stages import STAGES
from projections.value.rfm_cells import grid
from projections.view.state import micros
from services.api.auth import KeyRing, Principal
from services.api.contracts import normalise_email, normalise_phone
from services.api.customer_routes import EXTERNAL_ID, customer_document
from services.api.export_routes import all_triggers
from services.api.intake import submit
from services.api.lifecycle_routes import lifecycle_summary
from services.desk.charts import bars, grouped_bars, heat
from services.nbc.figures import rule_figures
from services.desk.session import DeskSessions
from services.ports import Platform
from services.value.service import ValueService

__all__ = ["desk_router", "STATIC_DIR"]

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
RULE_SERIES = ("fired", "delivered", "reached", "converted")
LIVE_POLL_SECONDS = 1.0  # how often an open card's stream looks for a change
CALL_OUTCOMES = ("reached", "no_answer", "voicemail", "busy", "callback_requested", "declined")
TRIGGER_OUTCOMES = {"reached": "reached", "not_reached": "no_answer", "declined": "declined"}
_PHONE_CHARS = re.compile(r"[0-9+ ().-]+")
_EXTERNAL = re.compile(EXTERNAL_ID)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:@-]{0,127}")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make the browser send "Origin: null" on POST
    "Cache-Control": "no-store",
}


def desk_router(platform: Platform, keys: KeyRing, value: ValueService) -> APIRouter:
    settings = platform.settings
    secret = settings.desk_session_secret.get_secret_value().encode() if settings.desk_session_secret else None
    sessions = DeskSessions(keys, secret, settings.desk_session_hours)
    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                            trim_blocks=True, lstrip_blocks=True)
    templates.filters["when"] = when
    router = APIRouter(include_in_schema=False)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        principal = sessions.principal(request)
        body = templates.get_template(name).render(
            principal=principal, csrf=sessions.csrf(request) if principal else "",
            can_write=principal is not None and bool({"ingest", "admin"} & principal.scopes), **context)
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    def signed_in(request: Request) -> Principal | None:
        return sessions.principal(request)

    def to_sign_in() -> Response:
        return RedirectResponse("/desk", status_code=303, headers=SECURITY_HEADERS)

    @router.get("/desk")
    async def home(request: Request, q: str = "") -> Response:
        if signed_in(request) is None:
            return page(request, "sign_in.html")
        found = await search(q) if q.strip() else []
        return page(request, "search.html", q=q, results=found, searched=bool(q.strip()))

    @router.post("/desk/sign-in")
    async def sign_in(request: Request, key: str = Form("", max_length=512)) -> Response:
        client = request.client.host if request.client else "?"
        if keys.limiter.retry_after(f"desk-sign-in:{client}"):
            return page(request, "sign_in.html", 429, error="Too many attempts: wait a moment and try again.")
        principal = keys.identify(key.strip())
        if principal is None or not ({"read", "admin"} & principal.scopes):
            return page(request, "sign_in.html", 401, error="This key is unknown, or cannot read customers.")
        response = RedirectResponse("/desk", status_code=303, headers=SECURITY_HEADERS)
        sessions.sign_in(response, request, principal)
        return response

    @router.post("/desk/sign-out")
    async def sign_out(request: Request, csrf: str = Form("", max_length=128)) -> Response:
        response = to_sign_in()
        if sessions.csrf_ok(request, csrf):
            sessions.sign_out(response)
        return response

    @router.get("/desk/search")
    async def search_fragment(request: Request, q: str = "") -> Response:
        """The result list alone (the search box's as-you-type requests)."""
        if signed_in(request) is None:
            return HTMLResponse("", status_code=401, headers=SECURITY_HEADERS)
        return page(request, "results.html", q=q, results=await search(q) if q.strip() else [],
                    searched=bool(q.strip()))

    async def search(q: str) -> list[dict[str, Any]]:
        """Customers a query names: an email, a phone as an agent types it (national format,
        spaces), an external id (system:id) or a customer id."""
        q = q.strip()[:200]
        owners: list[str] = []
        candidates: list[tuple[str, str]] = []
        if "@" in q:
            try:
                candidates.append(("email", normalise_email(q)))
            except ValueError:
                pass
        if _PHONE_CHARS.fullmatch(q) and sum(c.isdigit() for c in q) >= 6:
            try:
                candidates.append(("phone", normalise_phone(re.sub(r"[().]", " ", q).strip())))
            except ValueError:
                pass
        if _EXTERNAL.fullmatch(q):
            candidates.append(("external_id", q))
        for identifier in candidates:
            owner = await platform.owner(identifier)
            if owner is not None:
                owners.append(owner)
        if _ID.fullmatch(q) and await platform.state(platform.shown_as(q)) is not None:
            owners.append(q)
        results: dict[str, dict[str, Any]] = {}
        for owner in owners:
            root = platform.shown_as(owner)
            if root in results:
                continue
            state = await platform.state(root)
            if state is not None:
                results[root] = _summary(root, orjson.loads(state))
        return list(results.values())

    @router.get("/desk/customers/{customer_id}")
    async def card(request: Request, customer_id: str, channel: str = "", kind: str = "",
                   min_position: int | None = None, logged: str = "") -> Response:
        if signed_in(request) is None:
            return to_sign_in()
        if min_position is not None and min_position > 0:
            await platform.caught_up(min_position, settings.read_wait_max_seconds)
        document = await customer_document(platform, value, customer_id, None) if _ID.fullmatch(customer_id) else None
        if document is None:
            return page(request, "not_found.html", 404, customer_id=customer_id)
        root = document["customer_id"]
        timeline = await platform.timeline(root, 200, None)
        events = [e for e in timeline.events if (not channel or e.get("channel") == channel)
                  and (not kind or e.get("type") == kind)]
        triggers = {t["trigger_id"]: t for t in (await all_triggers(platform, root))[-50:]}
        return page(request, "card.html", c=document, events=events, channel=channel, kind=kind,
                    channels=sorted({e.get("channel", "") for e in timeline.events}),
                    kinds=sorted({e.get("type", "") for e in timeline.events}), triggers=triggers,
                    outcomes=CALL_OUTCOMES, logged=logged, errors=[])

    @router.get("/desk/portfolio")
    async def portfolio(request: Request, start: str = Query("", alias="from", max_length=10),
                        end: str = Query("", alias="to", max_length=10)) -> Response:
        """The portfolio over a period: the lifecycle funnel and transition matrix, the RFM
        grid as a heat map, segments, next-best-contact figures per rule — as charts, each
        with its figures in a table."""
        if signed_in(request) is None:
            return to_sign_in()
        try:
            until = _day(end) + timedelta(days=1) if end else datetime.now(UTC)
            since = _day(start) if start else until - timedelta(days=30)
        except ValueError:
            return page(request, "error.html", 422, message="A period is two dates, as YYYY-MM-DD.",
                        back="/desk/portfolio")
        figures = await platform.lifecycle_figures(micros(since), micros(until))
        summary = lifecycle_summary(figures.stages, figures.transitions)
        moves = {(src, dst): float(n) for src, row in summary["matrix"].items() for dst, n in row.items()}
        cells, cuts = await value.portfolio()
        squares = grid(cells, cuts)["squares"] if cuts is not None else []
        rfm = heat({(s["r"], s["fm"]): float(s["customers"]) for s in squares}, (5, 4, 3, 2, 1), (1, 2, 3, 4, 5))
        revenue = {(s["r"], s["fm"]): s["revenue"] for s in squares}
        counts = await platform.segments.counts()
        moved = await platform.segments.window(micros(since), micros(until))
        segments: list[dict[str, Any]] = [
            {"id": s.id, "description": s.description, "members": counts.get(s.id, 0),
             "entered": moved.get(s.id, {}).get("entered", 0), "exited": moved.get(s.id, {}).get("exited", 0)}
            for s in platform.segments.definitions.segments]
        rules = rule_figures(await platform.contact_figures())
        return page(request, "portfolio.html", since=since.date().isoformat(),
                    until=(until - timedelta(days=1)).date().isoformat() if end else until.date().isoformat(),
                    summary=summary, funnel=bars([(s, float(summary["stages"][s])) for s in STAGES], width=300),
                    matrix=heat(moves, STAGES, STAGES), rfm=rfm, revenue=revenue, currency=settings.value_currency,
                    segments=segments, segment_bars=bars([(s["id"], float(s["members"])) for s in segments], width=300),
                    rules=rules, rule_bars=grouped_bars([(f"{r['rule']} v{r['version']}",
                                                          [(k, float(r[k])) for k in RULE_SERIES]) for r in rules]),
                    series=RULE_SERIES)

    @router.get("/desk/customers/{customer_id}/live")
    async def live(request: Request, customer_id: str) -> Response:
        """Server-sent events: ``changed`` whenever the customer's view changes (a touchpoint
        from any channel, a merge, a clock tick moving their stage); the card then reads
        itself again without a reload."""
        if signed_in(request) is None or not _ID.fullmatch(customer_id):
            return HTMLResponse("", status_code=401, headers=SECURITY_HEADERS)
        root = platform.shown_as(customer_id)

        async def events() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            seen, beat = await version(root), loop.time()
            yield b"retry: 2000\n\n"
            while not platform.draining:
                await asyncio.sleep(LIVE_POLL_SECONDS)
                if await request.is_disconnected():
                    return
                try:
                    now = await version(root)
                except Exception:  # noqa: BLE001 - storage trouble: end; the browser reconnects
                    return
                if now != seen:
                    seen, beat = now, loop.time()
                    yield b"event: changed\ndata: {}\n\n"
                elif loop.time() - beat >= 15:
                    beat = loop.time()
                    yield b": heartbeat\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"})

    async def version(customer_id: str) -> str:
        state = await platform.state(platform.shown_as(customer_id))
        return "" if state is None else hashlib.sha256(state).hexdigest()

    @router.post("/desk/customers/{customer_id}/calls")
    async def log_call(request: Request, customer_id: str, csrf: str = Form("", max_length=128),
                       reason: str = Form("", max_length=200), outcome: str = Form("reached", max_length=40),
                       direction: str = Form("inbound", max_length=10), minutes: str = Form("0", max_length=6),
                       seconds: str = Form("0", max_length=6)) -> Response:
        """Record the current call: a call touchpoint through the same ingest and validation."""
        principal = writer(request, csrf, "calls")
        if not isinstance(principal, Principal):
            return principal
        try:
            duration = int(minutes or 0) * 60 + int(seconds or 0)
        except ValueError:
            duration = -1  # refused by the contract, with its own words
        event = call_event(customer_id, principal, direction=direction, outcome=outcome, duration_seconds=duration)
        if reason.strip():
            event["reason"] = reason.strip()
        return await _record(request, customer_id, event, "call")

    @router.post("/desk/customers/{customer_id}/outcomes")
    async def outcome(request: Request, customer_id: str, csrf: str = Form("", max_length=128),
                      trigger_id: str = Form("", max_length=200), result: str = Form("", max_length=20)) -> Response:
        """An outcome button: a call touchpoint carrying the trigger's id."""
        principal = writer(request, csrf, "outcomes")
        if not isinstance(principal, Principal):
            return principal
        event = call_event(customer_id, principal, trigger_id=trigger_id, direction="outbound",
                           outcome=TRIGGER_OUTCOMES.get(result, result))
        return await _record(request, customer_id, event, "outcome")

    def writer(request: Request, csrf: str, what: str) -> Principal | Response:
        """The signed-in agent allowed to record ``what``, or the page saying why not."""
        principal = signed_in(request)
        if principal is None:
            return to_sign_in()
        if not sessions.csrf_ok(request, csrf):
            return page(request, "error.html", 403, message="This form expired: reload the page and try again.")
        if not {"ingest", "admin"} & principal.scopes:
            return page(request, "error.html", 403, message=f"Your key cannot record {what} (it needs the ingest "
                                                            "scope).")
        return principal

    def call_event(customer_id: str, principal: Principal, **fields: Any) -> dict[str, Any]:
        """A call touchpoint made now by the signed-in agent, about the customer on screen."""
        return {"event_id": f"desk-{uuid.uuid4().hex}", "type": "call", "occurred_at": format_instant(datetime.now(UTC)),
                "source": "desk", "channel": "phone", "customer": {"customer_id": platform.shown_as(customer_id)},
                "agent_id": principal.label, **fields}

    async def _record(request: Request, customer_id: str, event: dict[str, Any], what: str) -> Response:
        verdict, = await submit(platform, [event], "", settings.max_event_bytes)
        if verdict["result"] == "rejected":
            messages = [f"{e['path'] or 'call'}: {e['message']}" for e in verdict["errors"]]
            return page(request, "error.html", 422, message=f"The {what} was not recorded.", details=messages,
                        back=f"/desk/customers/{customer_id}")
        return RedirectResponse(f"/desk/customers/{customer_id}?min_position={verdict['position']}&logged={what}",
                                status_code=303, headers=SECURITY_HEADERS)

    return router


def _day(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)


def when(value: Any) -> str:
    """An instant as an agent reads it: "2026-03-05 14:30 UTC" (— for none)."""
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def mount_static(app: Any) -> None:
    app.mount("/desk/static", StaticFiles(directory=STATIC_DIR), name="desk-static")


def _summary(customer_id: str, state: dict[str, Any]) -> dict[str, Any]:
    """What a search result shows of a customer: from the stored state."""
    from projections.view.document import from_state, to_document

    document = to_document(from_state(state))
    profile = document.get("profile") or {}
    name = " ".join(str(profile[k]) for k in ("first_name", "last_name") if profile.get(k)) or profile.get("name")
    return {"customer_id": customer_id, "name": name, "emails": document["identity"]["emails"],
            "phones": document["identity"]["phones"],
            "stage": (document.get("lifecycle") or {}).get("stage"), "last_seen": document.get("last_seen")}
