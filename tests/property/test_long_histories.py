"""Long histories (up to 2,000 events per customer) through ``fold_batch`` directly: cut
into other batches, they give byte-identical states and decisions; delivered late, they
give the same 360° document — lifecycle history and dwell times included."""

from __future__ import annotations

import random
from datetime import timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.batch import FoldConfig, Touch, fold_batch
from projections.lifecycle.stages import DEFAULT, Lifecycle
from projections.nbc.engine import ContactEngine
from projections.touchpoints import CustomerRef, Purchase, Touchpoint
from projections.view.document import to_document, to_state
from projections.view.fold import CustomerView
from services.nbc.rules_file import load_rules
from services.settings import DEFAULT_RULES_FILE
from services.zones import PINNED
from tests.support import touchpoints as tp

REF = CustomerRef(customer_id="c-1", emails=("ana@example.com",))
WITH_RULES = FoldConfig(DEFAULT, ContactEngine(load_rules(DEFAULT_RULES_FILE), PINNED))
VIEW_ONLY = FoldConfig(DEFAULT)
LONG = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def history(seed: int, n: int) -> list[Touchpoint]:
    """``n`` events in event-time order, every type, purchases now and then, days apart or
    minutes; fewer service cases than a view keeps one by one (``CASES_LIMIT``: beyond it, an
    update to a case already folded into the totals counts as a new case)."""
    rng, out, when = random.Random(seed), [], tp.T0
    for i in range(n):
        when += timedelta(minutes=rng.choice((1, 7, 60, 600, 3000, 30_000)))
        kind = rng.randrange(9)
        match kind:
            case 0 | 1:
                out.append(tp.purchase(f"e{i:05d}", when, f"{rng.randint(1, 900)}.{rng.randint(0, 99):02d}", ref=REF))
            case 2:
                out.append(tp.call(f"e{i:05d}", when, rng.choice(("inbound", "outbound")), ref=REF))
            case 3:
                out.append(tp.case(f"e{i:05d}", f"case-{rng.randrange(24)}", rng.choice(("opened", "resolved")), when,
                                   category=rng.choice((None, "complaint")), ref=REF))
            case 4:
                out.append(tp.survey(f"e{i:05d}", when, csat=rng.randint(1, 5), ref=REF))
            case 5:
                out.append(tp.consent(f"e{i:05d}", rng.choice(("granted", "withdrawn")), when, ref=REF))
            case 6:
                out.append(tp.email(f"e{i:05d}", when, rng.choice(("sent", "opened", "clicked")), ref=REF))
            case 7:
                out.append(tp.web_form(f"e{i:05d}", when, {"form_id": "contact", "city": rng.choice(("Lyon", "Nantes"))},
                                       ref=REF))
            case _:
                out.append(tp.visit(f"e{i:05d}", when, ref=REF))
    return out


def folded(events: list[Touchpoint], config: FoldConfig, size: int) -> tuple[CustomerView, list[str]]:
    views: dict[str, CustomerView] = {}
    triggers: list[str] = []
    for start in range(0, len(events), size):
        chunk = [Touch(start + i, e, "c-1") for i, e in enumerate(events[start:start + size])]
        result = fold_batch(views, chunk, config)
        views.update(result.views)
        triggers += [t.trigger_id for t in result.triggers]
    return views["c-1"], triggers


def late_but_purchases_on_time(events: list[Touchpoint], rng: random.Random) -> list[Touchpoint]:
    """Some events other than purchases arrive later than they happened, by any delay
    (offline field sales, delayed forms): every purchase still arrives before anything
    dated after it."""
    order = list(events)
    for _ in range(len(order) // 4):
        i = rng.randrange(len(order))
        if isinstance(order[i], Purchase):
            continue
        order.insert(rng.randint(i, len(order) - 1), order.pop(i))
    return order


def order_free(view: CustomerView) -> bytes:
    lc = view.lifecycle
    stable = view._replace(seen=(), lifecycle=Lifecycle(lc.stage, None, lc.rule, None, lc.deadline, lc.buys,
                                                        lc.interval))
    document = to_document(stable)
    document["lifecycle"] = {k: v for k, v in document["lifecycle"].items() if k not in ("since", "transitions")}
    return orjson.dumps([to_state(stable), document])


@LONG
@given(st.integers(0, 10**6), st.integers(200, 2_000), st.integers(1, 700))
def test_a_long_history_cut_into_other_batches_gives_the_same_bytes_and_decisions(seed: int, n: int,
                                                                                   size: int) -> None:
    events = history(seed, n)
    whole, fired = folded(events, WITH_RULES, n)
    cut, fired_cut = folded(events, WITH_RULES, size)
    assert orjson.dumps(to_state(cut)) == orjson.dumps(to_state(whole))
    assert fired_cut == fired


@LONG
@given(st.integers(0, 10**6), st.integers(200, 2_000), st.integers(1, 700))
def test_late_events_give_the_same_document_dwell_times_included(seed: int, n: int, size: int) -> None:
    events = history(seed, n)
    in_order, _ = folded(events, VIEW_ONLY, n)
    late, _ = folded(late_but_purchases_on_time(events, random.Random(seed)), VIEW_ONLY, size)
    assert to_document(late) == to_document(in_order)


@LONG
@given(st.integers(0, 10**6), st.integers(200, 2_000), st.integers(1, 700))
def test_any_arrival_order_gives_the_same_order_free_view(seed: int, n: int, size: int) -> None:
    events = history(seed, n)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    in_order, _ = folded(events, VIEW_ONLY, n)
    assert order_free(folded(shuffled, VIEW_ONLY, size)[0]) == order_free(in_order)
