"""The purchase model on real data, end to end: the CDNOW history (23,570 customers,
69,659 purchases, shipped inside ``lifetimes``) posted through the HTTP ingest, the
clock ticked to 1998-06-30, the model refitted through ``POST /v1/value/refit`` — and
compared with the reference implementation, ``lifetimes``, on the same history.

Repeat purchases are purchase days (orders on one day are one occasion) and T runs to
the platform's time, so the parameters agree with ``BetaGeoFitter`` within 1%, every
customer's (frequency, recency, T) is exactly ``summary_data_from_transaction_data``'s,
and P(alive) on the customers' cards agrees within 1e-3 — on both runtimes: the same
history folded by the scale-out workers gives the same model."""

from __future__ import annotations

import csv
import io
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

from services.value.export import FIELDS
from services.value.job import fingerprint
from services.value.summary import DAY_US, summaries
from services.value.validation import holdout
from tests.support.api import Api, bearer, iso, wait_until
from tests.support.value_cards import card_row

pytestmark = [pytest.mark.e2e]

END = datetime(1998, 6, 30, tzinfo=UTC)
CALIBRATION_END = datetime(1997, 9, 30, tzinfo=UTC)
END_US = int(END.timestamp()) * 1_000_000
BATCH = 1000  # events per request: the ingest's limit


def cdnow() -> pd.DataFrame:
    frame = pd.read_csv(files("lifetimes.datasets") / "CDNOW_master.txt", sep=r"\s+", header=0,
                        names=["customer", "date", "cds", "amount"], dtype={"customer": str, "date": str})
    frame["at"] = pd.to_datetime(frame["date"], format="%Y%m%d").dt.tz_localize(UTC)
    return frame


def events_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"type": "purchase", "event_id": f"cdnow-{i}", "occurred_at": iso(at.to_pydatetime()), "source": "cdnow",
             "channel": "web", "customer": {"customer_id": f"cdnow-{c}"}, "order_id": f"cdnow-o{i}",
             "amount": f"{amount:.2f}", "currency": "USD"}
            for i, (c, at, amount) in enumerate(zip(frame["customer"], frame["at"], frame["amount"], strict=True))]


def test_the_cdnow_history_gives_lifetimes_models_and_summaries_through_the_api(
        start_runtime: Callable[..., Any]) -> None:
    api = Api(start_runtime({"TOUCHSTREAM_VALUE_CURRENCY": "USD"}))  # CDNOW's purchases are in dollars
    frame = cdnow()
    assert len(frame) == 69_659
    events = events_of(frame)
    for start in range(0, len(events), BATCH):
        api.ingest(events[start:start + BATCH])
    tick = api.client.post("/v1/clock/ticks", json={"at": iso(END)}, headers=bearer(api.runtime.keys.admin))
    assert tick.status_code == 202, tick.text
    position = tick.json()["position"]
    wait_until(lambda: api.get("/v1/customers/cdnow-00001", min_position=position).status_code == 200,
               timeout=240, interval=1.0, what="the views folding the whole history")

    answer = api.client.post("/v1/value/refit", headers=bearer(api.runtime.keys.admin))
    assert answer.status_code == 200, answer.text
    model = answer.json()
    assert model["observation_end"] == iso(END) and model["observation_end_source"] == "platform_clock"
    assert model["customers"] == 23_570 and model["customers_with_purchases_after_end"] == 0

    days = pd.DataFrame({"customer": frame["customer"], "day": frame["at"].dt.tz_localize(None),
                         "amount": frame["amount"]})
    theirs = summary_data_from_transaction_data(days, "customer", "day", monetary_value_col="amount",
                                                observation_period_end="1998-06-30", freq="D", freq_multiplier=7)
    orders = frame.groupby("customer").size().sort_values().to_numpy()
    cuts = api.get("/v1/analytics/rfm").json()["cuts"]  # purchase counts' lower quintiles, as data values
    assert cuts["frequency"] == [int(orders[int(q * (len(orders) - 1))]) for q in (0.2, 0.4, 0.6, 0.8)] == [1, 1, 2, 4]
    portfolio = api.get("/v1/analytics/value").json()
    assert portfolio["monetary"]["orders"] == 69_659 and portfolio["other_currencies"]["orders"] == 0
    assert Decimal(portfolio["monetary"]["total_spend"]) == sum(Decimal(f"{a:.2f}") for a in frame["amount"])
    # every customer's inputs, exactly: the fitted rows' fingerprint is the history's
    us = (frame["at"] - pd.Timestamp(0, tz=UTC)) // pd.Timedelta(microseconds=1)
    grouped = pd.DataFrame({"customer": frame["customer"], "us": us, "day": us // DAY_US}).groupby("customer")
    rows = pd.DataFrame({"first": grouped["us"].min(), "last": grouped["us"].max(), "days": grouped["day"].nunique()})
    assert model["inputs_fingerprint"] == fingerprint(rows.to_numpy(dtype=np.int64))
    x, t_x, T = summaries(rows["first"], rows["last"], rows["days"], END_US)
    assert rows.index.tolist() == theirs.index.tolist()
    assert np.array_equal(x, theirs["frequency"].to_numpy())
    assert t_x == pytest.approx(theirs["recency"].to_numpy(), abs=1e-12)
    assert T == pytest.approx(theirs["T"].to_numpy(), abs=1e-12)

    reference = BetaGeoFitter().fit(theirs["frequency"], theirs["recency"], theirs["T"])
    assert model["parameters"] == pytest.approx(dict(reference.params_), rel=0.01)
    assert model["standard_errors"] == pytest.approx(dict(reference.summary["se(coef)"]), rel=0.01)

    # the spend model and the discounted lifetime value, as lifetimes computes them with the same terms
    repeat = theirs[(theirs["frequency"] > 0) & (theirs["monetary_value"] > 0)]
    spend = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    fitted = model["spend_model"]
    assert fitted["parameters"] == pytest.approx(dict(spend.params_), rel=0.01)
    assert fitted["standard_errors"] == pytest.approx(dict(spend.summary["se(coef)"]), rel=0.01)
    assert fitted["customers"] == len(repeat)
    assert fitted["independence"]["correlation_frequency_spend"] == pytest.approx(
        np.corrcoef(repeat["frequency"], repeat["monetary_value"])[0, 1], abs=1e-9)
    terms = model["lifetime_value"]
    assert (terms["months"], terms["monthly_discount_rate"], terms["margin_ratio"]) == (12, 0.01, 1.0)
    assert terms["month_days"] == 30
    in_days = BetaGeoFitter().fit(theirs["frequency"], theirs["recency"] * 7, theirs["T"] * 7)  # freq="D" terms
    clv = spend.customer_lifetime_value(in_days, theirs["frequency"], theirs["recency"] * 7, theirs["T"] * 7,
                                        theirs["monetary_value"], time=12, discount_rate=0.01, freq="D")
    assert terms["portfolio"] == pytest.approx(clv.sum(), rel=0.01)
    args = (theirs["frequency"], theirs["recency"], theirs["T"])
    alive = pd.Series(np.asarray(reference.conditional_probability_alive(*args)), index=theirs.index)
    expected_90d = pd.Series(np.asarray(reference.conditional_expected_number_of_purchases_up_to_time(90 / 7, *args)),
                             index=theirs.index)

    # every customer's card, exported in one stream at the platform's time
    started = time.perf_counter()
    exported = api.get("/v1/value/cards", format="csv")
    seconds = time.perf_counter() - started
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(exported.text), dtype={"customer_id": str}).set_index("customer_id")
    table.index = table.index.str.removeprefix("cdnow-")
    table = table.loc[theirs.index]
    print(f"exported {len(table)} value cards in {seconds:.2f} s ({len(table) / seconds:,.0f} cards/s)")
    assert (table["at"] == iso(END)).all() and len(table) == 23_570
    # each row is the card's figures: the JSONL export (whole cards) row for row
    cards = [json.loads(line) for line in api.get("/v1/value/cards").text.splitlines()]
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == FIELDS and len(rows) == len(cards) + 1
    assert sorted(rows[1:]) == sorted([["" if v is None else str(v) for v in card_row(c["customer_id"], c["value"])]
                                       for c in cards])
    assert np.array_equal(table["repeat_purchase_days"].to_numpy(), theirs["frequency"].to_numpy())
    assert table["recency_weeks"].to_numpy() == pytest.approx(theirs["recency"].to_numpy(), abs=1e-9)
    assert table["age_weeks"].to_numpy() == pytest.approx(theirs["T"].to_numpy(), abs=1e-9)
    assert np.abs(table["p_alive"].to_numpy() - alive.to_numpy()).max() < 1e-3
    assert np.abs(table["expected_purchases_90d"].to_numpy() - expected_90d.to_numpy()).max() < 1e-3
    assert np.abs(table["model_lifetime_value"].to_numpy() / clv.to_numpy() - 1)[clv.to_numpy() > 1].max() < 0.01

    # the cards, one by one, at the platform's time: the same summary, P(alive) and expected purchases
    sample = random.Random(15).sample(theirs.index.tolist(), 50)
    same_day = theirs.index[(theirs["frequency"] == 0)].intersection(
        frame.groupby("customer").size().loc[lambda n: n > 1].index)
    for customer in sample + same_day[:30].tolist():
        card = api.customer(f"cdnow-{customer}")["value"]
        row = theirs.loc[customer]
        assert card["time_base"] == {"at": iso(END), "source": "platform_clock"}
        assert card["summary"]["frequency"] == row["frequency"], customer
        assert card["summary"]["recency"] == pytest.approx(row["recency"], abs=1e-12), customer
        assert card["summary"]["T"] == pytest.approx(row["T"], abs=1e-12), customer
        assert card["p_alive"] == pytest.approx(alive[customer], abs=1e-3), customer
        assert card["expected_purchases_90d"] == pytest.approx(expected_90d[customer], abs=1e-3), customer
        assert card["model_lifetime_value"]["value"] == pytest.approx(clv[customer], rel=0.01, abs=0.01), customer
        repeat_value = card["monetary"]["mean_repeat_purchase_value"]  # lifetimes' monetary_value
        assert (0.0 if repeat_value is None else float(repeat_value)) == pytest.approx(row["monetary_value"],
                                                                                       abs=1e-4), customer

    # the calibration/holdout table, through the API, on the platform's own history: the
    # embedded runtime reads its log, the scale-out one the purchase days its states keep
    # (CDNOW's purchases are dates, so the two are the same table)
    answer = api.get("/v1/value/validation", calibration_end="1997-09-30T00:00:00Z")
    assert answer.status_code == 200, answer.text
    table = answer.json()
    direct = holdout(frame["customer"].astype(int).to_numpy(), us.to_numpy(), int(CALIBRATION_END.timestamp()) * 10**6,
                     END_US)
    assert table == json.loads(json.dumps(direct.to_dict()))
    assert [r["customers"] for r in table["rows"]] == [14_119, 4_442, 2_064, 1_084, 605, 348, 272, 636]
    drawn = api.get("/v1/value/validation", calibration_end="1997-09-30T00:00:00Z", format="svg")
    assert drawn.headers["content-type"].startswith("image/svg+xml") and drawn.text.startswith("<svg")
