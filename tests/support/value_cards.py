"""A value card's figures under the CSV export's column names, read off the card itself:
what the CSV export (``services.value.export``, which never builds the card) must equal."""

from __future__ import annotations

from typing import Any

__all__ = ["card_row"]


def card_row(customer_id: str, card: dict[str, Any]) -> list[Any]:
    """The card's figures in ``services.value.export.FIELDS`` order."""
    rfm, summary = card["rfm"] or {}, card["summary"] or {}
    scores, monetary = rfm.get("scores") or {}, card["monetary"]
    return [customer_id, card["time_base"]["at"], card["currency"], monetary["total_spend"], monetary["orders"],
            monetary["average_order_value"], monetary["mean_repeat_purchase_value"], rfm.get("recency_days"),
            rfm.get("frequency"), scores.get("r"), scores.get("f"), scores.get("m"), rfm.get("segment"),
            summary.get("frequency"), summary.get("recency"), summary.get("T"), card["p_alive"],
            card["expected_purchases_90d"], (card["model_lifetime_value"] or {}).get("value"),
            (card["lifetime_value"] or {}).get("value")]
