"""The value card on a customer's 360° view, computed when the view is read.

* **rfm**: recency (days since the last purchase, at the reader's time), frequency
  (purchases), monetary (revenue in ``value_currency``), their 1–5 scores against the
  portfolio's quintiles (``projections.value.rfm_cells``, kept with the views) and the segment.
* **historical value**: revenue and margin in ``value_currency``.
* **monetary**: the spend figures, each named for what it is, in ``value_currency``:
  ``total_spend`` (what RFM's *monetary* is), ``orders``, ``average_order_value`` (total
  spend / orders) and ``mean_repeat_purchase_value`` (the spend model's *monetary*: the
  spend of each purchase day after the first, averaged over those days; None without a
  repeat day, or when some purchases are in another currency, which it cannot add).
  Purchases in other currencies are never dropped silently: ``other_currencies`` gives
  their orders and spend, per currency.
* **lifetime value**: the seed formula ``Σ_t margin_t · r^t / (1 + d)^t`` over
  ``value_horizon_years`` yearly periods, the margin of a period being the customer's
  historical margin per year of relationship (at least one year); r and d are settings
  (configured, not estimated: the retention rate the data gives is a portfolio figure,
  and d is the cost of capital).
* **model_lifetime_value**: BG/NBD + Gamma-Gamma, discounted as ``lifetimes``'
  ``customer_lifetime_value`` (``services.value.gamma_gamma``), on the terms recorded with
  the model; None before a spend model was fitted. The seed formula stays beside it as
  ``lifetime_value`` (``method: seed_formula``).
* **predictive**: the customer's BG/NBD summary (``summary``: repeat purchase days,
  recency and age in weeks, as ``lifetimes`` computes them), P(alive) and purchases
  expected over 90 days (``services.value.predictive``, for a page of customers at once).

Computed at read time because every figure but the history depends on the time it is
read at or on the whole portfolio, which moves without this customer. Every figure is
computed at one instant, ``time_base`` (the reader's ``at``, else the platform's time:
the latest clock tick; the wall clock only before the first tick), and the card says
which; the model says the observation end it was fitted to (``model_observation_end``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from projections.codec import format_instant
from projections.lifecycle.stages import DAY
from projections.value.ltv import constant_margin_ltv
from projections.value.purchase_days import DAY_US, PurchaseDays, mean_repeat_purchase_value
from projections.value.rfm import segment
from projections.value.rfm_cells import cell_of, rfm_figures, scores_of
from projections.value.rfm_population import Quintiles
from projections.view.fold import CustomerView
from projections.view.state import instant_of
from services.settings import Settings
from services.value.job import ValueModel
from services.value.predictive import Inputs, value_sections
from services.value.service import TimeBase

__all__ = ["value_card", "value_cards", "monetary_figures", "seed_lifetime_value", "MONEY", "YEAR"]

YEAR = 365 * DAY
MONEY = Decimal("0.0001")
CENT = Decimal("0.01")


def mean_repeat_value(view: CustomerView, currency: str) -> Decimal | None:
    totals = dict(view.currencies).get(currency)
    orders, spend = (totals.count, totals.revenue) if totals is not None else (0, Decimal(0))
    days = view.purchase_days
    return mean_repeat_purchase_value(days.count, view.purchases, orders, spend,
                                      dict(days.first_day_spend).get(currency, Decimal(0)))


def monetary_figures(view: CustomerView, currency: str, repeat: Decimal | None) -> dict[str, Any]:
    """The named spend figures; ``repeat``: ``mean_repeat_value(view, currency)``."""
    totals = dict(view.currencies).get(currency)
    orders, spend = (totals.count, totals.revenue) if totals is not None else (0, Decimal(0))
    return {"total_spend": str(spend), "orders": orders,
            "average_order_value": str((spend / orders).quantize(MONEY)) if orders else None,
            "refunds": totals.refunds if totals is not None else 0,
            "refunded": str(totals.refunded if totals is not None else Decimal("0.0000")),
            "mean_repeat_purchase_value": None if repeat is None else str(repeat.quantize(MONEY)),
            "other_currencies": {k: {"orders": t.count, "total_spend": str(t.revenue)}
                                 for k, t in view.currencies if k != currency}}


def value_cards(views: list[CustomerView], model: ValueModel | None, cuts: Quintiles | None, base: TimeBase,
                settings: Settings) -> list[dict[str, Any]]:
    """The cards of many customers at one time base, the model evaluated once for all."""
    currency = settings.value_currency
    repeats = [mean_repeat_value(view, currency) for view in views]
    inputs: list[Inputs] = [_inputs(view.purchase_days, repeat) for view, repeat in zip(views, repeats, strict=True)]
    sections = value_sections(model, inputs, base.at)
    when = format_instant(instant_of(base.at))
    return [_card(view, cuts, base, when, settings, section, repeat)
            for view, section, repeat in zip(views, sections, repeats, strict=True)]


def _inputs(days: PurchaseDays, repeat: Decimal | None) -> Inputs:
    """BG/NBD reads purchase days (refunds are none), taken at the start of the day."""
    first, last = days.first_day, days.last_day
    return (days.count, None if first is None else first * DAY_US, None if last is None else last * DAY_US,
            None if repeat is None else float(repeat))


def value_card(view: CustomerView, model: ValueModel | None, cuts: Quintiles | None, base: TimeBase,
               settings: Settings) -> dict[str, Any]:
    return value_cards([view], model, cuts, base, settings)[0]


def _card(view: CustomerView, cuts: Quintiles | None, base: TimeBase, when: str, settings: Settings,
          section: dict[str, Any], repeat: Decimal | None) -> dict[str, Any]:
    currency, at = settings.value_currency, base.at
    figures = rfm_figures(view, currency)
    totals = dict(view.currencies).get(currency)
    margin = totals.margin if totals is not None and totals.margin_count else None
    card: dict[str, Any] = {
        "time_base": {"at": when, "source": base.source},
        "currency": currency,
        "historical": {"revenue": str(figures.monetary), "margin": None if margin is None else str(margin)},
        "monetary": monetary_figures(view, currency, repeat),
        "rfm": None,
        "lifetime_value": None,
        **section,
    }
    if figures.last_purchase_at is not None:
        rfm: dict[str, Any] = {"recency_days": round(max(0, at - figures.last_purchase_at) / DAY, 3),
                               "frequency": figures.purchases, "monetary": str(figures.monetary),
                               "scores": None, "segment": None}
        cell = cell_of(figures)
        if cuts is not None and cell is not None:
            r, f, m = scores_of(cell, cuts)
            rfm["scores"] = {"r": r, "f": f, "m": m}
            rfm["segment"] = segment(r, f, m).value
        card["rfm"] = rfm
    if margin is not None and view.first_purchase_at is not None:
        card["lifetime_value"] = seed_lifetime_value(margin, view.first_purchase_at, at, settings)
    return card


def seed_lifetime_value(margin: Decimal, first_purchase_at: int, at: int, settings: Settings) -> dict[str, Any]:
    """The seed formula's lifetime value at instant ``at``: the historical ``margin`` per
    year of relationship (at least one year), retained and discounted over the horizon."""
    years = max(1.0, (at - first_purchase_at) / YEAR)
    yearly = Decimal(margin) / Decimal(repr(years))
    ltv = constant_margin_ltv(yearly, settings.value_retention_rate, settings.value_discount_rate,
                              settings.value_horizon_years)
    return {"method": "seed_formula", "value": str(Decimal(repr(ltv)).quantize(CENT)),
            "margin_per_year": str(yearly.quantize(CENT)),
            "retention_rate": settings.value_retention_rate,
            "discount_rate": settings.value_discount_rate,
            "horizon_years": settings.value_horizon_years}
