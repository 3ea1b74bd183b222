"""Every customer's value card, streamed: ``GET /v1/value/cards?format=jsonl|csv``.

One time base, one model and one set of quintile cuts for the whole export (read when it
starts), so every card in it is computed alike and says at which instant. JSONL carries
the whole card per customer; CSV the figures a spreadsheet or a campaign tool wants, one
flat row each (``FIELDS``). Cards are computed from the stored states as they are scanned
(embedded: in customer-id order; scale-out: Redis' scan order), one customer at a time,
so the memory used does not grow with the portfolio.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import orjson

from projections.value.rfm_population import Quintiles
from projections.view.document import value_view
from services.settings import Settings
from services.value.card import value_cards
from services.value.job import ValueModel
from services.value.service import TimeBase

__all__ = ["FIELDS", "cards", "jsonl", "csv_rows"]

FIELDS = ["customer_id", "at", "currency", "total_spend", "orders", "average_order_value",
          "mean_repeat_purchase_value", "recency_days", "frequency", "r", "f", "m", "segment",
          "repeat_purchase_days", "recency_weeks", "age_weeks", "p_alive", "expected_purchases_90d",
          "model_lifetime_value", "seed_lifetime_value"]


PAGE = 2000  # cards computed together: the model is evaluated once per page


async def cards(states: AsyncIterator[tuple[str, bytes]], model: ValueModel | None, cuts: Quintiles | None,
                base: TimeBase, settings: Settings) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    page: list[tuple[str, bytes]] = []
    async for row in states:
        page.append(row)
        if len(page) >= PAGE:
            for found in _page(page, model, cuts, base, settings):
                yield found
            page.clear()
    for found in _page(page, model, cuts, base, settings):
        yield found


def _page(page: list[tuple[str, bytes]], model: ValueModel | None, cuts: Quintiles | None, base: TimeBase,
          settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    views = [value_view(orjson.loads(raw)) for _, raw in page]
    return [(customer_id, card) for (customer_id, _), card in
            zip(page, value_cards(views, model, cuts, base, settings), strict=True)]


def flat(customer_id: str, card: dict[str, Any]) -> dict[str, Any]:
    rfm, summary, scores = card["rfm"] or {}, card["summary"] or {}, (card["rfm"] or {}).get("scores") or {}
    monetary = card["monetary"]
    return {"customer_id": customer_id, "at": card["time_base"]["at"], "currency": card["currency"],
            **{k: monetary[k] for k in ("total_spend", "orders", "average_order_value", "mean_repeat_purchase_value")},
            "recency_days": rfm.get("recency_days"), "frequency": rfm.get("frequency"), "r": scores.get("r"),
            "f": scores.get("f"), "m": scores.get("m"), "segment": rfm.get("segment"),
            "repeat_purchase_days": summary.get("frequency"), "recency_weeks": summary.get("recency"),
            "age_weeks": summary.get("T"), "p_alive": card["p_alive"],
            "expected_purchases_90d": card["expected_purchases_90d"],
            "model_lifetime_value": (card["model_lifetime_value"] or {}).get("value"),
            "seed_lifetime_value": (card["lifetime_value"] or {}).get("value")}


async def jsonl(rows: AsyncIterator[tuple[str, dict[str, Any]]]) -> AsyncIterator[bytes]:
    chunk: list[bytes] = []
    async for customer_id, card in rows:
        chunk.append(orjson.dumps({"customer_id": customer_id, "value": card}))
        if len(chunk) >= 500:
            yield b"\n".join(chunk) + b"\n"
            chunk.clear()
    if chunk:
        yield b"\n".join(chunk) + b"\n"


async def csv_rows(rows: AsyncIterator[tuple[str, dict[str, Any]]]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, FIELDS, lineterminator="\r\n")
    writer.writeheader()
    async for customer_id, card in rows:
        writer.writerow(flat(customer_id, card))
        if buffer.tell() > 64_000:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
