"""From raw submitted events to durable log records, one verdict per event.

Each event is judged on its own: a bad event in a batch is rejected with its reason and
field paths, the good ones are appended (in one group-committed transaction), and the
sender learns, per event, ``accepted`` (with its log position), ``duplicate`` (with the
position of the copy already stored) or ``rejected``. Nothing good is lost because of
something bad next to it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError

from projections.touchpoints import TOUCHPOINT_TYPES
from services import metrics
from services.api.contracts import TOUCHPOINT_ADAPTER, to_canonical
from services.ports import Intake

__all__ = ["judge", "submit", "field_errors", "FUTURE_TOLERANCE"]

FUTURE_TOLERANCE = timedelta(minutes=15)  # default; settings.max_future_seconds


def field_errors(error: ValidationError, prefix: str) -> list[dict[str, str]]:
    out = []
    for item in error.errors(include_url=False):
        loc = [str(p) for p in item["loc"]]
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = [*loc, "type"]  # the discriminator itself is the field at fault
        if loc and loc[0] in TOUCHPOINT_TYPES:
            loc = loc[1:]  # the discriminator's branch name is not a field of the message
        path = prefix + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc)
        out.append({"path": path.lstrip("."), "message": _sentence(item["msg"])})
    return out


def _sentence(message: str) -> str:
    """The rule's own sentence, without pydantic's "Value error, " label."""
    return message.removeprefix("Value error, ")


def judge(raw: Any, index_path: str, max_bytes: int, received_at: datetime,
          future_tolerance: timedelta = FUTURE_TOLERANCE) -> dict[str, Any]:
    """A verdict for one raw event: ``{"document": ...}`` or a rejection."""
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    event_type = raw.get("type") if isinstance(raw, dict) and isinstance(raw.get("type"), str) else "unknown"
    if not isinstance(raw, dict):
        return _rejected(event_id, event_type, "invalid", [{"path": index_path, "message": "an event is a JSON object"}])
    try:
        size = len(orjson.dumps(raw))
    except orjson.JSONEncodeError as error:  # nested deeper than any touchpoint can be, or not Unicode
        problem = ("holds a lone surrogate: not Unicode text" if "surrogate" in str(error)
                   else "holds an integer beyond 64 bits" if "64-bit" in str(error) else "nested too deeply")
        return _rejected(event_id, event_type, "invalid", [{"path": index_path, "message": problem}])
    if size > max_bytes:
        return _rejected(event_id, event_type, "too_large",
                         [{"path": index_path, "message": f"event larger than {max_bytes} bytes"}])
    try:
        model = TOUCHPOINT_ADAPTER.validate_python(raw)
    except ValidationError as error:
        reason = "unknown_type" if _unknown_type(error) else "invalid"
        return _rejected(event_id, event_type, reason, field_errors(error, index_path))
    if model.occurred_at > received_at + future_tolerance:
        # A touchpoint cannot happen in the future; one mistyped year would otherwise
        # become the customer's latest event and push every real contact out of windows.
        path = f"{index_path}.occurred_at" if index_path else "occurred_at"
        # Well-formed (the contract cannot know the time): a conflict with the platform's clock.
        return _rejected(event_id, event_type, "in_the_future", [{"path": path, "message": "occurred_at is more than "
                                                                   f"{int(future_tolerance.total_seconds())} s ahead "
                                                                   "of the platform's clock"}])
    return {"event_id": model.event_id, "type": model.type, "document": to_canonical(model, received_at)}


def _unknown_type(error: ValidationError) -> bool:
    return any(e["type"] in ("union_tag_invalid", "union_tag_not_found") for e in error.errors())


def _rejected(event_id: Any, event_type: str | None, reason: str, errors: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "event_id": event_id if isinstance(event_id, str) else None,
        "type": event_type if event_type in _KNOWN else "unknown",
        "result": "rejected",
        "reason": reason,
        "errors": errors,
    }


_KNOWN = {"call", "email", "visit", "web_form", "purchase", "service_case", "survey", "consent"}


async def submit(platform: Intake, raws: list[Any], prefix: str, max_bytes: int) -> list[dict[str, Any]]:
    """Judge every event, append the good ones durably, return one verdict per event."""
    now = datetime.now(UTC)
    tolerance = timedelta(seconds=platform.settings.max_future_seconds)
    verdicts = [judge(raw, f"{prefix}[{i}]" if prefix else "", max_bytes, now, tolerance) for i, raw in enumerate(raws)]
    good = [v for v in verdicts if "document" in v]
    if good:
        appended = await platform.append([v["document"] for v in good])
        for verdict, (position, duplicate) in zip(good, appended, strict=True):
            del verdict["document"]
            verdict.update(result="duplicate" if duplicate else "accepted", position=position)
    for v in verdicts:
        metrics.child(metrics.EVENTS, v["type"], v["result"], v.get("reason", "")).inc()
    return verdicts
