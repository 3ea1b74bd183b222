"""The fuzzer's one hook (tests/e2e/test_openapi_fuzz.py): a generated ``margin`` never
exceeds its ``amount``, the one rule of the events' contract between two fields, which
a JSON Schema cannot state (the document says it in the field's description)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import schemathesis


def _within(event: Any) -> Any:
    if isinstance(event, dict) and isinstance(event.get("margin"), str) and isinstance(event.get("amount"), str):
        try:
            if Decimal(event["margin"]) > Decimal(event["amount"]):
                return {**event, "margin": event["amount"]}
        except InvalidOperation:
            pass  # not money: a case about something else
    return event


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    if isinstance(body, list):
        return [_within(e) for e in body]
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        return {**body, "events": [_within(e) for e in body["events"]]}
    return _within(body)
