"""Clock ticks on real SQLite: with 1M customers in the deadline index, a tick visits
exactly the customers whose deadline passed (the earliest first, at most the limit), and
the next tick takes the rest."""

from __future__ import annotations

from pathlib import Path

import orjson

from projections.batch import FoldConfig
from projections.codec import format_instant, from_dict
from projections.lifecycle.stages import DAY
from projections.view.document import from_state, to_state
from projections.view.fold import evolve, initial_view
from projections.view.state import instant_of
from services.embedded.eventlog import LoggedTouchpoint
from services.embedded.runner import fold_records
from services.embedded.storage.contacts import dumps
from services.embedded.storage.unit import ViewChanges, ViewStore
from services.view_cache import ViewCache

FAR = 10_000 * DAY


def iso(us: int) -> str:
    return format_instant(instant_of(us))


def tick_record(position: int, at: int) -> LoggedTouchpoint:
    body = {"event_id": f"tick/{iso(at)}", "type": "clock_tick", "at": iso(at), "received_at": iso(at)}
    return LoggedTouchpoint(position, "clock/tick@1", orjson.dumps(body))


def purchase(customer: str, day: int) -> object:
    return from_dict({"event_id": f"{customer}-{day}", "type": "purchase", "occurred_at": iso(day * DAY),
                      "received_at": iso(day * DAY), "source": "test", "customer": {"customer_id": customer},
                      "channel": "store", "order_id": f"o-{customer}-{day}", "amount": "10.0000", "currency": "EUR"})


def test_a_tick_over_a_million_customers_visits_only_those_due(tmp_path: Path) -> None:
    store = ViewStore(tmp_path / "views.sqlite")
    with store.datastore.transaction(commit=True) as c:  # a million customers, none due for decades
        c.executemany("INSERT INTO lifecycle_deadlines VALUES (?, ?)", ((f"idle-{i:07d}", FAR + i) for i in range(1_000_000)))
    due = {}
    for i in range(50):  # fifty new customers: one purchase each, "new" until day 100 + i
        view = evolve(initial_view(f"due-{i:02d}"), purchase(f"due-{i:02d}", 10 + i))
        due[view.customer_id] = view
    store.commit(ViewChanges(position=1, views={c: dumps(to_state(v)) for c, v in due.items()},
                             deadlines={c: v.lifecycle.deadline for c, v in due.items()}, stages={"new": 50}))
    cache = ViewCache(store, 1 << 20)

    nobody = fold_records([tick_record(2, 50 * DAY)], store, cache, FoldConfig())
    assert nobody.visited == 0 and nobody.transitions == [] and nobody.views == {}

    first = fold_records([tick_record(3, 200 * DAY)], store, cache, FoldConfig(tick_limit=20))
    assert first.visited == 20
    assert sorted(first.views) == [f"due-{i:02d}" for i in range(20)]  # the earliest deadlines first
    assert {(t.from_stage, t.to_stage, t.reason) for _, t, _ in first.transitions} == {
        ("new", "declining", "no_repeat_purchase")}
    store.commit(first)

    rest = fold_records([tick_record(4, 200 * DAY)], store, cache, FoldConfig(tick_limit=1000), clock=first.clock)
    assert rest.visited == 30 and sorted(rest.views) == [f"due-{i:02d}" for i in range(20, 50)]
    store.commit(rest)
    assert store.lifecycle.stage_counts() == {"declining": 50}
    assert store.lifecycle.due(200 * DAY, 100) == []
    stages = {from_state(orjson.loads(s)).lifecycle.stage for s in store.customers.states(list(due)).values()}
    assert stages == {"declining"}
