"""Customer value over HTTP, on every runtime: the purchase model (BG/NBD) is refitted on
demand from every customer's purchases, and each customer's view then says how likely
they are still a customer and how many purchases to expect in the next 90 days."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api import Api, bearer, iso, purchase, touchpoint, unique

pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC).replace(microsecond=0)


def buys(uid: str, days_ago: list[int]) -> list[dict[str, Any]]:
    return [purchase(f"{uid}-{i}", NOW - timedelta(days=d), {"customer_id": uid}, order_id=f"{uid}-o{i}",
                     amount="30.00") for i, d in enumerate(days_ago)]


def simulated(tag: str, n: int = 150, seed: int = 3) -> list[dict[str, Any]]:
    """Customers who buy and drop out as BG/NBD assumes (rates ~ Gamma(0.8, 4 weeks),
    dropout after each purchase ~ Beta(0.8, 3)), first seen up to two years ago."""
    rng, events = random.Random(seed), []
    for k in range(n):
        rate, dropout = rng.gammavariate(0.8, 1 / 4.0), rng.betavariate(0.8, 3.0)
        age = rng.uniform(0, 100)  # weeks since the first purchase
        weeks_ago, t = [age], 0.0
        while True:
            t += rng.expovariate(rate)
            if t > age:
                break
            weeks_ago.append(age - t)
            if rng.random() < dropout:
                break
        events += buys(f"{tag}-sim-{k}", [round(w * 7) for w in weeks_ago])
    return events


def refit(api: Api, body: Any = None) -> Any:
    return api.client.post("/v1/value/refit", json=body, headers=bearer(api.runtime.keys.admin))


def tick(api: Api, at: datetime) -> int:
    response = api.client.post("/v1/clock/ticks", json={"at": iso(at)}, headers=bearer(api.runtime.keys.admin))
    assert response.status_code == 202, response.text
    return int(response.json()["position"])


def test_the_purchase_model_is_refitted_on_demand_and_every_view_carries_its_figures(api: Api) -> None:
    tag = unique()
    assert refit(api).status_code == 409  # nobody bought twice yet: nothing to fit
    assert api.get("/v1/value/model").status_code == 404
    events = simulated(tag)
    for k in range(5):  # regular buyers, still buying
        events += buys(f"{tag}-loyal-{k}", [5 + k % 7, 40 + k % 7, 75 + k % 7, 110 + k % 7])
    for k in range(5):  # bought often, long ago, then stopped
        events += buys(f"{tag}-gone-{k}", [400 + k % 7, 430 + k % 7, 460 + k % 7, 490 + k % 7])
    for k in range(5):
        events += buys(f"{tag}-once-{k}", [200 + k])
    position = api.ingest(events)["position"]
    api.customer(f"{tag}-loyal-0", min_position=position)

    position = tick(api, NOW)  # the platform's time is the observation end
    api.customer(f"{tag}-loyal-0", min_position=position)
    answer = refit(api)
    assert answer.status_code == 200, answer.text
    model = answer.json()
    assert model["customers"] >= 165 and model["repeat_buyers"] >= 100 and model["converged"] is True
    assert all(v > 0 for v in model["parameters"].values())
    assert model["observation_end"] == iso(NOW) and model["observation_end_source"] == "platform_clock"
    assert model["data_window"]["last_purchase"] <= iso(NOW) and len(model["inputs_fingerprint"]) == 64
    assert api.get("/v1/value/model").json() == model
    again = refit(api, {"observation_end": iso(NOW)})  # the same end, named: the same model
    assert again.status_code == 200 and again.json()["observation_end_source"] == "explicit"
    assert {k: again.json()[k] for k in ("parameters", "inputs_fingerprint", "observation_end")} == \
        {k: model[k] for k in ("parameters", "inputs_fingerprint", "observation_end")}
    for bad in ("2026-01-01", "2026-01-01T00:00:00", 1767225600):
        refused = refit(api, {"observation_end": bad})
        assert refused.status_code == 422, (bad, refused.text)

    at = iso(NOW)
    loyal = api.customer(f"{tag}-loyal-3", at=at)["value"]
    gone = api.customer(f"{tag}-gone-3", at=at)["value"]
    once = api.customer(f"{tag}-once-3", at=at)["value"]
    assert 0.0 < gone["p_alive"] < loyal["p_alive"] <= 1.0
    assert loyal["expected_purchases_90d"] > gone["expected_purchases_90d"] > 0.0
    assert once["p_alive"] == 1.0  # no repeat purchase: the model cannot see them leave
    assert loyal["model_observation_end"] == iso(NOW)
    assert loyal["time_base"] == {"at": iso(NOW), "source": "request"}
    assert api.customer(f"{tag}-loyal-3")["value"]["time_base"] == {"at": iso(NOW), "source": "platform_clock"}

    forbidden = api.client.post("/v1/value/refit", headers=bearer(api.runtime.keys.read))
    assert forbidden.status_code == 403


def test_rfm_scores_segments_and_the_pareto_curve_follow_the_portfolio(api: Api) -> None:
    tag = unique()
    events: list[dict[str, Any]] = []
    for k in range(40):  # a spread of spenders: k-th customer spends (k+1) x 10 a purchase, k % 5 + 1 times
        uid = f"{tag}-{k:02d}"
        events += [purchase(f"{uid}-{i}", NOW - timedelta(days=10 * k + i), {"customer_id": uid},
                            order_id=f"{uid}-o{i}", amount=f"{(k + 1) * 10}.00", margin=f"{k + 1}.00")
                   for i in range(k % 5 + 1)]
    position = api.ingest(events)["position"]
    api.customer(f"{tag}-00", min_position=position)

    best = api.customer(f"{tag}-04", at=iso(NOW))["value"]  # recent, 5 purchases
    worst = api.customer(f"{tag}-35", at=iso(NOW))["value"]  # long ago, 1 purchase
    assert best["rfm"]["frequency"] == 5 and best["rfm"]["scores"]["r"] == 5 and best["rfm"]["scores"]["f"] == 5
    assert worst["rfm"]["frequency"] == 1 and worst["rfm"]["scores"]["r"] == 1 and worst["rfm"]["scores"]["f"] == 1
    assert best["rfm"]["segment"] in ("champions", "loyal") and worst["rfm"]["segment"] in ("lost", "hibernating")
    assert float(best["lifetime_value"]["value"]) > 0

    grid = api.get("/v1/analytics/rfm").json()
    assert grid["customers"] == 40 and grid["currency"] == "EUR"
    assert sum(s["customers"] for s in grid["segments"].values()) == 40
    spent = sum((k + 1) * 10 * (k % 5 + 1) for k in range(40))
    assert sum(float(s["revenue"]) for s in grid["segments"].values()) == spent
    assert sum(q["customers"] for q in grid["squares"]) == 40 and len(grid["cuts"]["frequency"]) == 4
    # the cuts are data values: purchase counts as counts, spend as the customers' spend (within 1%)
    assert grid["cuts"]["frequency"] == [1, 2, 3, 4] and grid["cuts"]["exact"]["frequency"] == [True] * 4
    totals = sorted((k + 1) * 10 * (k % 5 + 1) for k in range(40))
    exact = [totals[int(q * 39)] for q in (0.2, 0.4, 0.6, 0.8)]  # the lower quantile
    assert [float(v) for v in grid["cuts"]["monetary"]] == pytest.approx(exact, rel=0.01)
    assert "strictly below" in grid["cuts"]["tie_rule"]

    value = api.get("/v1/analytics/value", points=10).json()["pareto"]
    assert value["customers"] == 40 and float(value["revenue"]) == spent
    assert value["curve"][0] == {"customers": 0.0, "revenue": 0.0} and value["curve"][-1]["revenue"] == 1.0
    shares = [p["revenue"] for p in value["curve"]]
    assert shares == sorted(shares) and 0.2 < value["top_20_share"] < 1.0

    # the lifetime-value distribution: each customer's revenue as a year's value, the seed
    # formula's factor (retention 0.8, discount 0.1, 5 years) applied; quantiles within 1%
    ltv = api.get("/v1/analytics/value").json()["lifetime_value"]
    q = 0.8 / 1.1
    factor = q * (1 - q**5) / (1 - q)
    assert ltv["customers"] == 40 and ltv["method"] == "revenue_as_yearly_value"
    assert ltv["factor"] == pytest.approx(factor, rel=1e-6)
    revenues = sorted((k + 1) * 10 * (k % 5 + 1) for k in range(40))
    median = revenues[(40 - 1) // 2] * factor  # the lower median, as the histograms answer it
    assert ltv["quantiles"]["p50"] == pytest.approx(median, rel=0.011)
    assert ltv["quantiles"]["p10"] <= ltv["quantiles"]["p50"] <= ltv["quantiles"]["p90"]
    assert sum(c["customers"] for c in ltv["histogram"]) == 40 and ltv["zero_or_less"] == 0
    assert ltv["histogram"][0]["from"] == pytest.approx(revenues[0] * factor, rel=0.011)


def test_spend_figures_are_named_and_purchases_in_other_currencies_are_counted_not_dropped(api: Api) -> None:
    tag = unique()
    day = datetime(2025, 3, 3, 9, tzinfo=UTC)
    orders = [(0, "10.00"), (0, "20.00"), (5, "30.00"), (9, "15.00"), (9, "25.00")]  # three purchase days
    events = [purchase(f"{tag}-e{i}", day + timedelta(days=d, hours=i), {"customer_id": f"{tag}-eur"},
                       order_id=f"{tag}-oe{i}", amount=amount) for i, (d, amount) in enumerate(orders)]
    events.append(purchase(f"{tag}-u0", day, {"customer_id": f"{tag}-usd"}, order_id=f"{tag}-ou0", amount="50.00",
                           currency="USD"))
    position = api.ingest(events)["position"]

    eur = api.customer(f"{tag}-eur", min_position=position, at=iso(day + timedelta(days=10)))["value"]
    assert eur["monetary"] == {"total_spend": "100.0000", "orders": 5, "average_order_value": "20.0000",
                               "mean_repeat_purchase_value": "35.0000",  # (100 − 30 on the first day) / 2 days
                               "refunds": 0, "refunded": "0.0000", "other_currencies": {}}
    assert eur["summary"] == {"frequency": 2.0, "recency": pytest.approx(9 / 7), "T": pytest.approx(10 / 7),
                              "unit": "week"}
    usd = api.customer(f"{tag}-usd", at=iso(day + timedelta(days=10)))["value"]
    assert usd["monetary"]["total_spend"] == "0" and usd["monetary"]["average_order_value"] is None
    assert usd["monetary"]["other_currencies"] == {"USD": {"orders": 1, "total_spend": "50.0000"}}

    portfolio = api.get("/v1/analytics/value").json()
    assert portfolio["monetary"] == {"customers": 1, "orders": 5, "total_spend": "100.0000",
                                     "average_order_value": "20.0000", "average_spend_per_customer": "100.0000"}
    others = portfolio["other_currencies"]
    assert others["orders"] == 1 and others["by_currency"] == {
        "USD": {"customers": 1, "orders": 1, "total_spend": "50.0000"}}
    assert "value_currency" in others["note"]


def without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_ids(v) for k, v in value.items() if not k.endswith(("_id", "_ids"))}
    return [without_ids(v) for v in value] if isinstance(value, list) else value


def test_refunds_net_the_money_and_never_count_as_purchases_in_any_order(api: Api) -> None:
    """Full, partial and unknown-order refunds, one delivered before its order: the
    documented verdicts and figures (docs/VALUE.md, "Refunds")."""
    tag, day = unique(), datetime(2025, 6, 2, 9, tzinfo=UTC)

    def who(name: str) -> dict[str, str]:
        return {"customer_id": f"{tag}-{name}"}

    def refund(event_id: str, when: datetime, name: str, order_id: str, amount: str, **extra: Any) -> dict[str, Any]:
        return touchpoint("refund", event_id, when, customer=who(name), channel="web", order_id=order_id,
                          amount=amount, currency="EUR", **extra)

    bought = purchase(f"{tag}-p", day, who("full"), order_id=f"{tag}-o1", amount="100.00", margin="40.00")
    refunded = refund(f"{tag}-r", day + timedelta(days=3), "full", f"{tag}-o1", "100.00", margin="40.00",
                      reason="returned", lines=[{"sku": "MUG-6", "quantity": 2, "unit_price": "50.00"}])
    # the same two events for another customer, the refund delivered first
    early = {**refund(f"{tag}-r2", day + timedelta(days=3), "early", f"{tag}-o2", "100.00", margin="40.00"),
             "reason": "returned", "lines": refunded["lines"]}
    late_order = purchase(f"{tag}-p2", day, who("early"), order_id=f"{tag}-o2", amount="100.00", margin="40.00")
    answer = api.ingest([bought, refunded, early])
    assert [v["result"] for v in answer["results"]] == ["accepted"] * 3
    api.ingest([late_order])
    answer = api.ingest([
        purchase(f"{tag}-p3", day, who("partial"), order_id=f"{tag}-o3", amount="80.00"),
        refund(f"{tag}-r3", day + timedelta(days=1), "partial", f"{tag}-o3", "30.00"),
        refund(f"{tag}-r4", day, "unknown", f"{tag}-never-sold", "25.00"),  # no such order: accepted, counted
    ])
    position, at = answer["position"], iso(day + timedelta(days=10))

    full = api.customer(f"{tag}-full", min_position=position, at=at)
    eur = full["purchases"]["by_currency"]["EUR"]
    assert full["purchases"]["count"] == 1 and eur == {"count": 1, "revenue": "0.0000", "margin": "0.0000",
                                                       "average_basket": "0.00", "refunds": 1, "refunded": "100.0000"}
    assert full["lifecycle"]["stage"] == "new"  # a refund moves no stage: they bought
    assert full["value"]["monetary"]["total_spend"] == "0.0000" and full["value"]["monetary"]["refunded"] == "100.0000"
    assert full["value"]["summary"]["frequency"] == 0.0  # one purchase day, the refund is none
    assert [e["type"] for e in api.timeline(f"{tag}-full")] == ["refund", "purchase"]  # newest first

    early_view = api.customer(f"{tag}-early", at=at)
    for part in ("purchases", "lifecycle", "value"):  # ids aside (customer, events, transitions)
        assert without_ids(early_view[part]) == without_ids(full[part]), part

    partial = api.customer(f"{tag}-partial", at=at)["purchases"]
    assert (partial["count"], partial["by_currency"]["EUR"]["revenue"], partial["by_currency"]["EUR"]["refunded"]) == (
        1, "50.0000", "30.0000")
    unknown = api.customer(f"{tag}-unknown", at=at)
    assert unknown["purchases"]["count"] == 0 and unknown["lifecycle"]["stage"] == "prospect"
    assert unknown["purchases"]["by_currency"]["EUR"] == {"count": 0, "revenue": "-25.0000", "margin": None,
                                                          "average_basket": None, "refunds": 1, "refunded": "25.0000"}

    negative = api.post_events([purchase(f"{tag}-neg", day, who("full"), order_id=f"{tag}-o9", amount="-5.00")])
    assert negative.status_code == 422, negative.text
    assert "refund" in json.dumps(negative.json())


def test_every_value_card_or_a_segment_s_is_exported_in_one_stream_at_one_time_base(api: Api) -> None:
    tag = unique()
    day = datetime(2025, 3, 3, 9, tzinfo=UTC)
    events = [purchase(f"{tag}-a{i}", day + timedelta(days=3 * i), {"customer_id": f"{tag}-repeat"},
                       order_id=f"{tag}-oa{i}", amount="20.00") for i in range(3)]
    events.append(purchase(f"{tag}-b0", day, {"customer_id": f"{tag}-once"}, order_id=f"{tag}-ob0", amount="70.00"))
    position = api.ingest(events)["position"]
    api.customer(f"{tag}-once", min_position=position)
    at = iso(day + timedelta(days=30))

    lines = [json.loads(line) for line in api.get("/v1/value/cards", at=at).text.splitlines()]
    exported = {line["customer_id"]: line["value"] for line in lines}
    assert exported[f"{tag}-repeat"] == api.customer(f"{tag}-repeat", at=at)["value"]  # the card read alone
    assert {card["time_base"]["at"] for card in exported.values()} == {at}

    members = api.get("/v1/value/cards", format="csv", segment="one_time_buyers", at=at)
    assert members.status_code == 200 and members.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(members.text)))
    assert [r["customer_id"] for r in rows] == [f"{tag}-once"]
    assert rows[0]["total_spend"] == "70.0000" and rows[0]["repeat_purchase_days"] == "0.0"
    assert api.get("/v1/value/cards", segment="no_such_segment").status_code == 404
