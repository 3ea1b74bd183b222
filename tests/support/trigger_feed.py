"""A trigger feed held in a list: test data standing in for the engine's feed.

``TriggerFeedStandIn`` implements only ``Platform.triggers`` (and ``draining``), with the
documented meaning: oldest first after an opaque cursor, ``next_cursor`` staying put when
nothing is new, ``ValueError`` for a cursor it did not give. Tests of delivery behaviour
(retries, refusals, expiry, stops, stream resumption) use it to script exactly which
triggers exist and when; they are marked ``platform_stand_in``. The engine's real feed is
exercised by tests/integration/test_webhook_delivery_embedded.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.embedded.platform import CURSORS

__all__ = ["TriggerPage", "TriggerFeedStandIn", "trigger"]


@dataclass(frozen=True, slots=True)
class TriggerPage:
    triggers: list[dict[str, Any]]
    next_cursor: str | None


def trigger(channel: str = "call", *, valid_for: timedelta = timedelta(hours=1), at: datetime | None = None,
            customer_id: str = "c-1") -> dict[str, Any]:
    """A trigger document shaped as the engine publishes it."""
    at = at or datetime.now(UTC).replace(microsecond=0)
    return {
        "trigger_id": str(uuid.uuid4()), "customer_id": customer_id, "channel": channel, "action": "call_back",
        "script": "contact-request-v1", "offer": None,
        "rule": {"id": "callback_after_contact_form", "version": 1, "purpose": "service"},
        "priority": 90, "expected_value": "25", "score": "2250",
        "at": at.isoformat().replace("+00:00", "Z"), "valid_until": (at + valid_for).isoformat().replace("+00:00", "Z"),
        "cause": {"kind": "touchpoint", "id": "evt-123", "type": "web_form"},
        "explanation": {"who": [], "losers": [], "suppressed": [], "consent": None},
    }


def _cursor(index: int) -> str:
    return str(index)


class TriggerFeedStandIn:
    cursors = CURSORS  # the embedded runtime's: a feed cursor is an entry number

    def __init__(self, triggers: list[dict[str, Any]] | None = None):
        self.items: list[dict[str, Any]] = list(triggers or [])
        self.draining = False
        self.reads = 0

    def append(self, *triggers: dict[str, Any]) -> None:
        self.items.extend(triggers)

    def cursor_after(self, trigger_id: str) -> str:
        return _cursor(next(i for i, t in enumerate(self.items) if t["trigger_id"] == trigger_id) + 1)

    async def triggers(self, after: str | None, limit: int, channel: str | None,
                       customer_id: str | None) -> TriggerPage:
        self.reads += 1
        start = 0
        if after is not None:
            start = int(after)
        found, position = [], start
        for position in range(start, len(self.items)):
            item = self.items[position]
            if (channel is None or item["channel"] == channel) and (customer_id is None
                                                                    or item["customer_id"] == customer_id):
                found.append(item)
                if len(found) == limit:
                    break
        else:
            position = len(self.items) - 1
        end = position + 1 if self.items[start:] else start
        return TriggerPage(found, _cursor(end) if end > start or after is not None else None)
