"""Trigger documents: a decided next-best-contact trigger as channel systems read it.

One shape everywhere: the feed (``GET /v1/triggers``), server-sent events, webhooks and
the per-channel Kafka topics (where the Avro contract ``schemas/nbc/trigger/v1.avsc``
carries the explanation as JSON text). Money and scores are decimal strings, instants
ISO 8601 UTC.
"""

from __future__ import annotations

from typing import Any

from projections.codec import format_instant
from projections.nbc.state import Fired, Outcome
from projections.view.state import instant_of

__all__ = ["trigger_document", "outcome_document"]


def _iso(us: int) -> str:
    return format_instant(instant_of(us))


def trigger_document(f: Fired) -> dict[str, Any]:
    return {
        "trigger_id": f.trigger_id,
        "customer_id": f.customer_id,
        "channel": f.channel,
        "action": f.action,
        "script": f.script,
        "offer": f.offer,
        "rule": {"id": f.rule, "version": f.version, "purpose": f.purpose},
        "priority": f.priority,
        "expected_value": str(f.expected_value),
        "score": str(f.score),
        "at": _iso(f.at),
        "valid_until": _iso(f.valid_until),
        "decided_at": _iso(f.decided_at),
        "cause": f.cause,
        "explanation": {
            "rule": f"{f.rule} (v{f.version})",
            "facts": [{"fact": name, "value": value} for name, value in f.facts],
            "score": {"priority": f.priority, "expected_value": str(f.expected_value), "score": str(f.score)},
            "losers": list(f.losers),
            "suppressed": list(f.suppressed),
            "consent": f.consent,
        },
    }


def outcome_document(o: Outcome) -> dict[str, Any]:
    return {"trigger_id": o.trigger_id, "customer_id": o.customer_id, "rule": {"id": o.rule, "version": o.version},
            "channel": o.channel, "outcome": o.outcome, "at": _iso(o.at), "event_id": o.event_id}
