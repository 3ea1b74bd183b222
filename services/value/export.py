"""Every customer's value card, streamed: ``GET /v1/value/cards?format=jsonl|csv``.

One time base, one model and one set of quintile cuts for the whole export (read when it
starts), so every card in it is computed alike and says at which instant. JSONL carries
the whole card per customer; CSV the figures a spreadsheet or a campaign tool wants, one
flat row each (``FIELDS``), computed by the same functions as the card but without
building it. Cards are computed from the stored states as they are scanned (embedded: in
customer-id order, each state cut to its value fields by SQLite a page ahead; scale-out:
Redis' scan order), a page of customers at a time, so the memory used does not grow with
the portfolio.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

from decimal import Decimal

import orjson

from projections.codec import format_instant
from projections.lifecycle.stages import DAY
from projections.value.purchase_days import DAY_US, mean_repeat_purchase_value
from projections.value.rfm import RfmFigures, segment
from projections.value.rfm_cells import cell_of, scores_of
from projections.value.rfm_population import Quintiles
from projections.view.document import check_format, value_view
from projections.view.state import instant_of
from services.settings import Settings
from services.value.card import MONEY, seed_lifetime_value, value_cards
from services.value.job import ValueModel
from services.value.predictive import Inputs, finite, rounded_ltv, value_columns
from services.value.service import TimeBase

__all__ = ["FIELDS", "PAGE", "cards", "jsonl", "csv_rows", "csv_header", "flat_rows"]

FIELDS = ["customer_id", "at", "currency", "total_spend", "orders", "average_order_value",
          "mean_repeat_purchase_value", "recency_days", "frequency", "r", "f", "m", "segment",
          "repeat_purchase_days", "recency_weeks", "age_weeks", "p_alive", "expected_purchases_90d",
          "model_lifetime_value", "seed_lifetime_value"]


PAGE = 2000  # cards computed together: the model is evaluated once per page
_SEGMENTS = {(r, f, m): segment(r, f, m).value for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}


async def cards(states: AsyncIterator[tuple[str, dict[str, Any]]], model: ValueModel | None, cuts: Quintiles | None,
                base: TimeBase, settings: Settings) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Every customer's whole card (the JSONL export)."""
    async for page in _pages(states):
        views = [value_view(state) for _, state in page]
        for (customer_id, _), card in zip(page, value_cards(views, model, cuts, base, settings), strict=True):
            yield customer_id, card


async def _pages(states: AsyncIterator[tuple[str, dict[str, Any]]]) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    page: list[tuple[str, dict[str, Any]]] = []
    async for row in states:
        page.append(row)
        if len(page) >= PAGE:
            yield page
            page = []
    if page:
        yield page


async def jsonl(rows: AsyncIterator[tuple[str, dict[str, Any]]]) -> AsyncIterator[bytes]:
    chunk: list[bytes] = []
    async for customer_id, card in rows:
        chunk.append(orjson.dumps({"customer_id": customer_id, "value": card}))
        if len(chunk) >= 500:
            yield b"\n".join(chunk) + b"\n"
            chunk.clear()
    if chunk:
        yield b"\n".join(chunk) + b"\n"


async def csv_rows(states: AsyncIterator[tuple[str, dict[str, Any]]], model: ValueModel | None, cuts: Quintiles | None,
                   base: TimeBase, settings: Settings) -> AsyncIterator[bytes]:
    """Every customer's ``FIELDS``, a page of customers at a time, computed as the card
    computes them (the same functions) without building the card itself: the export is
    a million rows, and the card's nested objects would cost more than its figures."""
    yield csv_header()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    async for page in _pages(states):
        writer.writerows(flat_rows(page, model, cuts, base, settings))
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()


def csv_header() -> bytes:
    return (",".join(FIELDS) + "\r\n").encode()  # no field name needs quoting


def flat_rows(page: list[tuple[str, dict[str, Any]]], model: ValueModel | None, cuts: Quintiles | None, base: TimeBase,
              settings: Settings) -> list[list[Any]]:
    """The CSV rows of a page of stored states (or their value fields), in ``FIELDS`` order:
    each figure the card gives under the name it has there (``tests`` compare the two)."""
    currency, at = settings.value_currency, base.at
    when = format_instant(instant_of(at))
    rows: list[list[Any]] = []
    inputs: list[Inputs] = []
    for customer_id, d in page:
        check_format(d)
        purchases, first_at, last_at = d["purchases"], d["first_purchase_at"], d["last_purchase_at"]
        count, first_day, bits, first_spends = d["purchase_days"]
        totals = next((t for t in d["currencies"] if t[0] == currency), None)
        orders, spend = (totals[1], Decimal(totals[2])) if totals is not None else (0, Decimal(0))
        first_spend = next((Decimal(v) for k, v in first_spends if k == currency), Decimal(0))
        repeat = mean_repeat_purchase_value(count, purchases, orders, spend, first_spend)
        last_day = None if first_day is None else first_day + int(bits, 16).bit_length() - 1
        inputs.append((count, None if first_day is None else first_day * DAY_US,
                       None if last_day is None else last_day * DAY_US, None if repeat is None else float(repeat)))
        row = [customer_id, when, currency, str(spend), orders, str((spend / orders).quantize(MONEY)) if orders else None,
               None if repeat is None else str(repeat.quantize(MONEY))]
        if last_at is None:
            row += (None, None, None, None, None, None)
        else:
            row += (round(max(0, at - last_at) / DAY, 3), purchases)
            cell = cell_of(RfmFigures(purchases, last_at, spend))
            if cuts is not None and cell is not None:
                r, f, m = scores_of(cell, cuts)
                row += (r, f, m, _SEGMENTS[r, f, m])
            else:
                row += (None, None, None, None)
        row += (None, None, None, None, None, None)  # the predictive figures, below
        row.append(None if totals is None or not totals[4] or first_at is None
                   else seed_lifetime_value(Decimal(totals[3]), first_at, at, settings)["value"])
        rows.append(row)
    columns = value_columns(model, inputs, at)
    if columns is not None:
        x, t_x, age = columns.x.tolist(), columns.t_x.tolist(), columns.T.tolist()
        alive = None if columns.p_alive is None else columns.p_alive.tolist()
        expected = None if columns.expected_90d is None else columns.expected_90d.tolist()
        ltv = None if columns.ltv is None else columns.ltv.tolist()
        for j, i in enumerate(columns.known):
            rows[i][13:19] = (x[j], t_x[j], age[j], None if alive is None else finite(alive[j]),
                              None if expected is None else finite(expected[j]),
                              None if ltv is None else rounded_ltv(ltv[j]))
    return rows
