"""The purchase-model refit on a real view store: the histories SQLite's JSON functions
read are exactly the stored views' figures, the fit is the model fitted on them, and the
value a view shows is the model's answer for that customer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from projections.view.document import from_state, value_view
from services.embedded.eventlog import TouchpointLog
from services.embedded.runner import ProjectionRunner
from services.embedded.storage.unit import ViewStore
from services.value.bgnbd import WEEK_US, fit
from services.value.job import NotEnoughHistory, ValueModel, refit
from services.value.predictive import value_section
from services.value.summary import DAY_US, distinct_rows
from tests.support.value_cards import card_row
from tools.traffic import TrafficOptions, generate

END = 1_767_225_600_000_000  # 2026-01-01 (the traffic covers 2025)


def test_histories_fit_and_view_figures_agree(tmp_path: Path) -> None:
    log, store = TouchpointLog(tmp_path / "log.sqlite"), ViewStore(tmp_path / "views.sqlite")
    events = [{"received_at": e["occurred_at"], **e}
              for e in generate(TrafficOptions(customers=400, events=6000, duplicate_rate=0.0))]
    log.append(events)
    ProjectionRunner(log, store, batch=1000).catch_up()

    with store.datastore.transaction(commit=False) as c:
        c.execute("SELECT state FROM customer_views")
        views = [from_state(orjson.loads(row[0])) for row in c.fetchall()]
    expected = sorted((v.purchase_days.first_day * DAY_US, v.purchase_days.last_day * DAY_US, v.purchase_days.count)
                      for v in views if v.purchase_days.count)  # refunds are no purchase day
    histories = store.customers.purchase_histories("EUR")
    assert sorted(h[:3] for h in histories) == expected and len(expected) > 100

    model = refit(histories, END)
    x = [h[2] - 1 for h in expected]
    t_x = [(h[1] // DAY_US - h[0] // DAY_US) * (DAY_US / WEEK_US) if h[2] > 1 else 0.0 for h in expected]
    T = [(END // DAY_US - h[0] // DAY_US) * (DAY_US / WEEK_US) for h in expected]
    direct = fit(*distinct_rows(x, t_x, T))
    assert model.model == direct and model.customers == len(expected)

    view = next(v for v in views if v.purchase_days.count >= 3)
    shown = value_section(model, view.purchase_days.count, view.first_purchase_at, view.last_purchase_at, END)
    args = (view.purchase_days.count - 1, (view.last_purchase_at // DAY_US - view.first_purchase_at // DAY_US) / 7,
            (END // DAY_US - view.first_purchase_at // DAY_US) / 7)
    assert shown["p_alive"] == round(float(direct.p_alive(*args)), 6)
    expected = direct.expected_purchases_within(90 * 86_400 * 10**6, *args)
    assert shown["expected_purchases_90d"] == round(float(expected), 6)
    store.value.save_model("bgnbd", model.to_json())
    assert store.value.model("bgnbd") == model.to_json()


def test_too_few_repeat_buyers_is_said_not_fitted() -> None:
    with pytest.raises(NotEnoughHistory, match="repeat purchases"):
        refit([(0, 10, 2, 5.0)] * 5 + [(0, 0, 1, None)] * 100, END)
    assert value_section(None, 3, 0, 10, END)["p_alive"] is None


def test_an_exported_page_of_cards_is_each_card_read_alone(tmp_path: Path) -> None:
    from services.settings import Settings
    from services.value.card import value_card, value_cards
    from services.value.service import TimeBase

    log, store = TouchpointLog(tmp_path / "log.sqlite"), ViewStore(tmp_path / "views.sqlite")
    log.append([{"received_at": e["occurred_at"], **e}
                for e in generate(TrafficOptions(customers=300, events=5000, duplicate_rate=0.0))])
    ProjectionRunner(log, store, batch=1000).catch_up()
    model = refit(store.customers.purchase_histories("EUR"), END)
    states = [orjson.loads(raw) for _, raw in store.customers.states_after("", 10_000)]
    assert len(states) > 200 and model.spend is not None
    assert ValueModel.from_json(model.to_json()) == model  # what another API process reads back
    settings, base = Settings(value_currency="EUR"), TimeBase(END, "request")
    alone = [value_card(from_state(d), model, None, base, settings) for d in states]
    assert value_cards([value_view(d) for d in states], model, None, base, settings) == alone
    assert any(card["model_lifetime_value"] and card["model_lifetime_value"]["value"] for card in alone)


def test_the_csv_export_is_the_card_s_figures_and_each_worker_range_the_same_rows(tmp_path: Path) -> None:
    """``flat_rows`` (the CSV export, from the value fields SQLite cuts out) gives every
    figure the card gives; the worker processes' ranges, joined, are the single-process
    export byte for byte, in customer-id order."""
    from projections.value.rfm_cells import quintiles
    from services.embedded.value_export import ParallelCsvExport
    from services.settings import Settings
    from services.value.card import value_cards
    from services.value.export import FIELDS, PAGE, csv_rows, flat_rows
    from services.value.service import TimeBase

    log, store = TouchpointLog(tmp_path / "log.sqlite"), ViewStore(tmp_path / "views.sqlite")
    log.append([{"received_at": e["occurred_at"], **e}
                for e in generate(TrafficOptions(customers=2 * PAGE + 1500, events=16_000, duplicate_rate=0.0))])
    ProjectionRunner(log, store, batch=3000).catch_up()
    model = refit(store.customers.purchase_histories("EUR"), END)
    cuts = quintiles(store.value.rfm_cells())
    settings, base = Settings(value_currency="EUR", data_dir=tmp_path), TimeBase(END, "request")
    full = [(c, orjson.loads(raw)) for c, raw in store.customers.states_after("", 10**6)]
    cut = store.customers.value_states_after("", 10**6)
    assert [c for c, _ in cut] == [c for c, _ in full] == sorted(c for c, _ in full) and len(full) > 2 * PAGE
    cards = value_cards([value_view(d) for _, d in full], model, cuts, base, settings)
    rows = flat_rows(cut, model, cuts, base, settings)
    assert rows == [card_row(c, card) for (c, _), card in zip(full, cards, strict=True)]
    assert {len(r) for r in rows} == {len(FIELDS)}
    assert any(r[18] is not None for r in rows) and any(r[19] is not None for r in rows)  # both lifetime values
    assert any(r[12] is not None for r in rows) and any(r[7] is None for r in rows)  # segments; a non-buyer

    async def collect(chunks: Any) -> bytes:
        return b"".join([chunk async for chunk in chunks])

    async def states() -> Any:
        for row in cut:
            yield row

    single = asyncio.run(collect(csv_rows(states(), model, cuts, base, settings)))
    export = ParallelCsvExport(tmp_path / "views.sqlite", workers=2)
    try:
        parallel = asyncio.run(collect(export.csv(model, cuts, base, settings)))
    finally:
        export.close()
    assert parallel == single and single.count(b"\r\n") == len(full) + 1
