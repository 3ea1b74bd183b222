"""Contact pressure: how often the customer was in contact, as of a time the caller gives.

Business rule: frequency caps and "do not over-solicit" policies count every contact,
human calls and field visits included, not only automated messages. The view keeps a
30-day ledger of contacts (``CustomerView.contacts``); this module counts it over the
last 7 and 30 days before ``at``, per channel and in total, separating contacts the
company initiated from those the customer initiated.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from projections.view.fold import CustomerView, micros

__all__ = ["WINDOWS", "contact_pressure"]

WINDOWS = {"7d": timedelta(days=7), "30d": timedelta(days=30)}


def contact_pressure(view: CustomerView, at: datetime) -> dict[str, dict[str, dict[str, int]]]:
    """``{"7d": {"by_company": {"phone": 2, "all": 3}, "by_customer": {...}}, "30d": ...}``.

    Contacts after ``at`` are not counted (the caller may ask about the past).
    """
    out: dict[str, dict[str, dict[str, int]]] = {}
    now = micros(at)
    for label, width in WINDOWS.items():
        since = now - width // timedelta(microseconds=1)
        counts: dict[str, dict[str, int]] = {"by_company": {"all": 0}, "by_customer": {"all": 0}}
        for mark in view.contacts:
            if since < mark.occurred_at <= now:
                side = counts["by_company" if mark.by_company else "by_customer"]
                side[mark.channel] = side.get(mark.channel, 0) + 1
                side["all"] += 1
        out[label] = {side: dict(sorted(c.items())) for side, c in counts.items()}
    return out
